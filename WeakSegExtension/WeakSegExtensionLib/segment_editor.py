"""Keeping the module's embedded Segment Editor widget in step with the module. No Qt import.

The widget (``qMRMLSegmentEditorWidget``) is passed in, so tests drive these functions with
a stand-in that follows the same rules. Two rules of Slicer's own source decide the calls:

* ``qMRMLSegmentEditorWidget::setSourceVolumeNode`` logs "failed: need to set segment editor
  and segmentation nodes first" and does nothing when it gets a volume while no segmentation
  node is selected (``Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.cxx``,
  Slicer 5.2 to current). So the source volume is set only once there is a segmentation.
* Slicer's Segment Editor module calls ``setActiveEffect(None)`` when the user leaves it
  (``SegmentEditor.py``, ``exit()``), so that Paint or Erase stops taking the mouse in the
  slice views. An embedded editor must do the same.
"""

from __future__ import annotations


def showInEditor(editor, segmentationNode, sourceVolumeNode) -> None:
    """Point ``editor`` at ``segmentationNode`` and, when there is one, at ``sourceVolumeNode``.

    Calls nothing that is already in place, so a parameter-node change that touches neither
    node (a keystroke in *Classes*) leaves the editor alone.
    """
    if editor.segmentationNode() is not segmentationNode:
        editor.setSegmentationNode(segmentationNode)
    if segmentationNode is None:
        return
    if editor.sourceVolumeNode() is not sourceVolumeNode:
        editor.setSourceVolumeNode(sourceVolumeNode)


def leaveEditor(editor) -> None:
    """Deactivate the active effect and stop observing the views (the module's ``exit()``)."""
    editor.setActiveEffect(None)
    editor.removeViewObservations()
