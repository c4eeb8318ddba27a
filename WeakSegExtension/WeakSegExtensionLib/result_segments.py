"""Write segmentation results into an output segmentation node, with a way back.

A result becomes one segment per class (background excepted), named after the class,
coloured per class, with standard terminology where the class name is a known
structure (colours and codes from the library's contract, :mod:`library_contract`).
Every such segment is tagged as created by WeakSeg for a given volume. Writing
a new result for that volume replaces only those tagged segments; the user's own segments
(scribbles included) are never touched. The replaced segments are kept aside so that
:meth:`ResultHistory.undo` can restore the node as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import slicer

from WeakSegExtensionLib import library_contract, mrml_bridge
from WeakSegExtensionLib.library_contract import classColor
from WeakSegExtensionLib.errors import WeakSegInputError

SOURCE_TAG = "WeakSeg.Source"
SOURCE_VALUE = "WeakSeg"
VOLUME_TAG = "WeakSeg.VolumeID"
CLASS_TAG = "WeakSeg.Class"
METHOD_TAG = "WeakSeg.Method"

def classTerminology(className: str) -> str:
    """A serialized terminology entry for known structures ("" when the name is not one)."""
    known = library_contract.classTerminology(className)
    if known is None:
        return ""
    context, categoryScheme, categoryValue, categoryMeaning, typeScheme, typeValue, typeMeaning = known
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        context, categoryValue, categoryScheme, categoryMeaning, typeValue, typeScheme, typeMeaning, "", "", "",
        "Anatomic codes - DICOM master list", "", "", "", "", "", "",
    )


@dataclass
class SegmentationResult:
    """Class codes computed for one volume, on that volume's grid.

    Attributes:
        volumeNode: the volume the result belongs to.
        labels: int ``(Z, Y, X)``; 0 is background, ``c`` is ``classNames[c]``.
        classNames: class list, background first.
        method: what produced it ("weakseg", "growcut", or a model file name).
    """

    volumeNode: object
    labels: np.ndarray
    classNames: list[str]
    method: str

    def voxelCounts(self) -> dict[str, int]:
        return {name: int(np.count_nonzero(self.labels == code)) for code, name in enumerate(self.classNames)}


def isWeakSegSegment(segmentationNode, segmentId: str, volumeNode=None) -> bool:
    """True for segments this extension created (for ``volumeNode`` when given)."""
    if mrml_bridge.segmentTag(segmentationNode, segmentId, SOURCE_TAG) != SOURCE_VALUE:
        return False
    return volumeNode is None or mrml_bridge.segmentTag(segmentationNode, segmentId, VOLUME_TAG) == volumeNode.GetID()


def writeSegments(result: SegmentationResult, segmentationNode) -> list[str]:
    """Add one tagged segment per non-background class of ``result``; returns the new segment IDs.

    A class whose name is already used by a segment of the node (the user's, or WeakSeg's for
    another volume) gets the name "<class> (WeakSeg)", so that segment names stay unique.
    """
    geometry = mrml_bridge.volumeGeometry(result.volumeNode)
    if tuple(result.labels.shape) != tuple(geometry.shape):
        raise WeakSegInputError(
            f"result of shape {result.labels.shape} does not fit {mrml_bridge.describeNode(result.volumeNode)} {geometry.shape}"
        )
    taken = {name.lower() for name in mrml_bridge.segmentNames(segmentationNode)}
    added = []
    for code, className in enumerate(result.classNames):
        if code == 0:
            continue
        name = className if className.lower() not in taken else f"{className} (WeakSeg)"
        tags = {SOURCE_TAG: SOURCE_VALUE, VOLUME_TAG: result.volumeNode.GetID(), CLASS_TAG: className, METHOD_TAG: result.method}
        added.append(
            mrml_bridge.addSegmentFromMask(
                segmentationNode, result.labels == code, geometry, name, classColor(className, code), tags,
                classTerminology(className),
            )
        )
    return added


@dataclass
class _UndoStep:
    """What one write changed: segments moved aside (with their former positions) and segments added."""

    removed: object = field(default_factory=lambda: slicer.vtkSegmentation())
    removedPositions: list[tuple[str, int]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


class ResultHistory:
    """Writes results into output segmentation nodes and remembers how to undo each write."""

    def __init__(self):
        self._steps: dict[str, tuple[object, list[_UndoStep]]] = {}

    def _stepsOf(self, segmentationNode) -> list[_UndoStep]:
        """The undo steps of a node; steps recorded for another node that had the same ID are dropped."""
        key = segmentationNode.GetID() or str(id(segmentationNode))
        node, steps = self._steps.get(key, (None, []))
        if node is not segmentationNode:
            steps = []
            self._steps[key] = (segmentationNode, steps)
        return steps

    def write(self, result: SegmentationResult, segmentationNode) -> list[str]:
        """Replace this volume's earlier WeakSeg segments in ``segmentationNode`` with ``result``.

        Returns the IDs of the segments added.
        """
        step = _UndoStep()
        segmentation = segmentationNode.GetSegmentation()
        wasModifying = segmentationNode.StartModify()
        try:
            for position, segmentId in enumerate(mrml_bridge.segmentIds(segmentationNode)):
                if isWeakSegSegment(segmentationNode, segmentId, result.volumeNode):
                    step.removedPositions.append((segmentId, position))
            for segmentId, _ in step.removedPositions:
                step.removed.CopySegmentFromSegmentation(segmentation, segmentId, True)
            step.added = writeSegments(result, segmentationNode)
        finally:
            segmentationNode.EndModify(wasModifying)
        self._stepsOf(segmentationNode).append(step)
        return step.added

    def canUndo(self, segmentationNode) -> bool:
        return bool(segmentationNode is not None and self._stepsOf(segmentationNode))

    def undo(self, segmentationNode) -> bool:
        """Undo the last write into ``segmentationNode``; False when there is nothing to undo."""
        if not self.canUndo(segmentationNode):
            return False
        step = self._stepsOf(segmentationNode).pop()
        segmentation = segmentationNode.GetSegmentation()
        wasModifying = segmentationNode.StartModify()
        try:
            for segmentId in step.added:
                if segmentation.GetSegment(segmentId) is not None:
                    segmentation.RemoveSegment(segmentId)
            for segmentId, position in step.removedPositions:
                segmentation.CopySegmentFromSegmentation(step.removed, segmentId, True)
                if position < segmentation.GetNumberOfSegments():
                    segmentation.SetSegmentIndex(segmentId, position)
        finally:
            segmentationNode.EndModify(wasModifying)
        return True

    def clear(self) -> None:
        """Forget every undo step (when the scene is closed)."""
        self._steps.clear()
