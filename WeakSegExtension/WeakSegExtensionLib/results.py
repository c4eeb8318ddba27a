"""Write segmentation results into an output segmentation node, with a way back.

A result becomes one segment per class (background excepted), named after the class,
coloured per class, with standard terminology where the class name is a known
structure. Every such segment is tagged as created by WeakSeg for a given volume. Writing
a new result for that volume replaces only those tagged segments; the user's own segments
(scribbles included) are never touched. The replaced segments are kept aside so that
:meth:`ResultHistory.undo` can restore the node as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import slicer

from WeakSegExtensionLib import mrml_bridge
from WeakSegExtensionLib.errors import WeakSegInputError

SOURCE_TAG = "WeakSeg.Source"
SOURCE_VALUE = "WeakSeg"
VOLUME_TAG = "WeakSeg.VolumeID"
CLASS_TAG = "WeakSeg.Class"
METHOD_TAG = "WeakSeg.Method"

PALETTE = (
    (0.89, 0.10, 0.11),
    (0.22, 0.49, 0.72),
    (0.30, 0.69, 0.29),
    (0.60, 0.31, 0.64),
    (1.00, 0.50, 0.00),
    (1.00, 1.00, 0.20),
    (0.65, 0.34, 0.16),
    (0.97, 0.51, 0.75),
)

_ANATOMY = ("Segmentation category and type - 3D Slicer General Anatomy list", "123037004", "SCT", "Anatomical Structure")
_ALTERED = ("Segmentation category and type - 3D Slicer General Anatomy list", "49755003", "SCT", "Morphologically Altered Structure")

# Known class names (lower case) -> (category, SNOMED CT code, meaning, colour). Other names get a palette colour.
KNOWN_STRUCTURES = {
    "rv": (_ANATOMY, "53085002", "Right ventricle", (0.71, 0.29, 0.31)),
    "right ventricle": (_ANATOMY, "53085002", "Right ventricle", (0.71, 0.29, 0.31)),
    "myo": (_ANATOMY, "74281007", "Myocardium", (0.81, 0.57, 0.47)),
    "myocardium": (_ANATOMY, "74281007", "Myocardium", (0.81, 0.57, 0.47)),
    "lv": (_ANATOMY, "87878005", "Left ventricle", (0.87, 0.47, 0.42)),
    "left ventricle": (_ANATOMY, "87878005", "Left ventricle", (0.87, 0.47, 0.42)),
    "tumor": (_ALTERED, "108369006", "Neoplasm", (0.56, 0.93, 0.56)),
    "tumour": (_ALTERED, "108369006", "Neoplasm", (0.56, 0.93, 0.56)),
    "lesion": (_ALTERED, "52988006", "Lesion", (0.69, 0.48, 0.39)),
}


def classColor(className: str, code: int) -> tuple[float, float, float]:
    """The display colour of a class: its structure's colour if known, else a palette colour by code."""
    known = KNOWN_STRUCTURES.get(className.lower())
    return known[3] if known else PALETTE[(code - 1) % len(PALETTE)]


def classTerminology(className: str) -> str:
    """A serialized terminology entry for known structures ("" when the name is not one)."""
    known = KNOWN_STRUCTURES.get(className.lower())
    if not known:
        return ""
    (context, categoryValue, scheme, categoryMeaning), typeValue, typeMeaning, _ = known
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        context, categoryValue, scheme, categoryMeaning, typeValue, "SCT", typeMeaning, "", "", "",
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
