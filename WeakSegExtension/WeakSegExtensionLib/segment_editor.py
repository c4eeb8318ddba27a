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

EDITOR_NODE_TAG = "WeakSegSegmentEditor"


def editorParameterNode(scene):
    """The module's own Segment Editor parameter node in ``scene`` (made on first use), so that the
    Segment Editor module's node, and what the user chose there, is not disturbed."""
    node = scene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
        node.UnRegister(None)
        node.SetSingletonTag(EDITOR_NODE_TAG)
        node = scene.AddNode(node)
    return node


def embedEditor(editor, scene) -> None:
    """Set up ``editor`` as the module embeds it: its own parameter node, no node selectors, Paint and Erase only.

    The module chooses the segmentation and the volume (:func:`showInEditor`), so the editor's
    own selectors and its "switch to Segmentations" button are hidden.
    """
    editor.setMRMLSegmentEditorNode(editorParameterNode(scene))
    editor.setMRMLScene(scene)
    editor.segmentationNodeSelectorVisible = False
    editor.sourceVolumeNodeSelectorVisible = False
    editor.switchToSegmentationsButtonVisible = False
    editor.unorderedEffectsVisible = False
    editor.setEffectNameOrder(["Paint", "Erase"])


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
