"""The cohort: volumes of the scene with their weak labels, and their export for training.

Each volume can carry

* an image-level label for the whole volume and for slice ranges (a class name or
  :data:`HEALTHY`), stored as node attributes (see :mod:`mrml_bridge`), saved with the scene,
  and imported/exported as CSV;
* a scribble segmentation and/or a full mask segmentation, linked by node references.

:func:`writeTrainingFolder` lays the cohort out as the ``weakseg train`` command expects::

    <case>_image.nrrd        the volume (LPS geometry; grey level or colour)
    <case>_scribble.nrrd     class codes, 255 = unlabelled: the training labels of the case
                             (its full mask when it has one, else its scribbles)
    <case>_label.nrrd        the full mask, every voxel labelled  (volumes with a full mask)
    image_labels.csv         case,label,first_slice,last_slice    (image-level labels)

A full mask is the densest supervision a case can have, so it is also written as the case's
scribbles: ``weakseg train`` learns from ``_scribble`` files and keeps ``_label`` files for
evaluation.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from WeakSegExtensionLib import diagnoses, mrml_bridge
from WeakSegExtensionLib.errors import WeakSegInputError
from WeakSegExtensionLib.library_contract import HEALTHY, LABEL_CSV_NAME_COLUMNS
from WeakSegExtensionLib.library_contract import LABEL_CSV_COLUMNS as CSV_COLUMNS
from WeakSegExtensionLib.mrml_bridge import SliceRangeLabel, describeNode

SCRIBBLES_ROLE = "WeakSegScribbles"
MASK_ROLE = "WeakSegMask"
RESULT_ROLE = "WeakSegResult"
# A volume marked "source (fully segmented)": its mask trains the transfer method's source domain.
SOURCE_ATTRIBUTE = "WeakSeg.Source"
IMAGE_LABELS_FILE = "image_labels.csv"
# The cohort table's columns; :func:`rowCells` gives their texts.
COHORT_COLUMNS = ("Volume", "Image label", "Slice labels", "Scribbles", "Mask", "Source", "Diagnosis",
                  "Predicted diagnosis")


def allowedImageLabels(classNames: Sequence[str]) -> list[str]:
    """Labels a volume or slice range may carry: every class but background, and "healthy"."""
    return list(classNames[1:]) + [HEALTHY]


def checkImageLabel(volumeNode, label: str, classNames: Sequence[str] | None) -> str:
    """Validate one image-level label; returns it stripped."""
    label = str(label).strip()
    if not label or "," in label:
        raise WeakSegInputError(f"{describeNode(volumeNode)}: image label {label!r} must be non-empty and hold no comma")
    if label.lower() == mrml_bridge.BACKGROUND:
        raise WeakSegInputError(f"{describeNode(volumeNode)}: 'background' is not an image label; use '{HEALTHY}'")
    if classNames is not None:
        allowed = allowedImageLabels(classNames)
        match = [name for name in allowed if name.lower() == label.lower()]
        if not match:
            raise WeakSegInputError(f"{describeNode(volumeNode)}: image label {label!r} is not one of {allowed}")
        label = match[0]
    return label


def sliceCount(volumeNode) -> int:
    """Number of slices along K (the array's first axis)."""
    return mrml_bridge.volumeGeometry(volumeNode).shape[0]


def setImageLabel(
    volumeNode,
    label: str | None,
    firstSlice: int | None = None,
    lastSlice: int | None = None,
    classNames: Sequence[str] | None = None,
) -> None:
    """Label a whole volume (no slices given) or slices ``firstSlice..lastSlice`` (K index, inclusive).

    A new slice range replaces the ranges it overlaps. ``label=None`` clears the volume
    label, or the ranges overlapping the given slices.
    """
    mrml_bridge.checkImageVolume(volumeNode)
    volumeLabel, ranges = mrml_bridge.readImageLabels(volumeNode)
    if label is not None:
        label = checkImageLabel(volumeNode, label, classNames)
    if firstSlice is None and lastSlice is None:
        mrml_bridge.writeImageLabels(volumeNode, label, ranges)
        return
    first = int(firstSlice if firstSlice is not None else lastSlice)
    last = int(lastSlice if lastSlice is not None else firstSlice)
    count = sliceCount(volumeNode)
    if not 0 <= first <= last < count:
        raise WeakSegInputError(f"{describeNode(volumeNode)}: slices {first}..{last} are not within 0..{count - 1}")
    mrml_bridge.writeImageLabels(volumeNode, volumeLabel, replaceRange(ranges, first, last, label))


def replaceRange(ranges: Sequence[SliceRangeLabel], first: int, last: int, label: str | None) -> list[SliceRangeLabel]:
    """``ranges`` without those overlapping ``first..last``, plus the new range unless ``label`` is None."""
    kept = [r for r in ranges if r.last < first or r.first > last]
    return kept + ([SliceRangeLabel(first, last, label)] if label is not None else [])


def getImageLabel(volumeNode, sliceIndex: int | None = None) -> str | None:
    """The label of a slice (its range's label, else the volume's) or, without a slice, of the volume."""
    volumeLabel, ranges = mrml_bridge.readImageLabels(volumeNode)
    if sliceIndex is not None:
        for sliceRange in ranges:
            if sliceRange.first <= sliceIndex <= sliceRange.last:
                return sliceRange.label
    return volumeLabel


def labelRows(volumeNodes: Iterable) -> list[dict[str, str]]:
    """CSV rows (``CSV_COLUMNS``) of the image labels of the given volumes, by volume name."""
    rows = []
    for volumeNode in volumeNodes:
        volumeLabel, ranges = mrml_bridge.readImageLabels(volumeNode)
        if volumeLabel:
            rows.append({"case": volumeNode.GetName(), "label": volumeLabel, "first_slice": "", "last_slice": ""})
        for sliceRange in ranges:
            rows.append({
                "case": volumeNode.GetName(), "label": sliceRange.label,
                "first_slice": str(sliceRange.first), "last_slice": str(sliceRange.last),
            })
    return rows


def exportLabels(csvPath: str | os.PathLike, volumeNodes: Iterable) -> int:
    """Write the image labels of ``volumeNodes`` to CSV; returns the number of rows written."""
    rows = labelRows(volumeNodes)
    with open(csvPath, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def importLabels(csvPath: str | os.PathLike, volumeNodes: Sequence, classNames: Sequence[str] | None = None) -> list:
    """Read image labels from CSV onto the volumes named in it; returns the volumes changed.

    The labels a volume had before are replaced by those in the file. Every row is checked
    before any node changes, so a bad file leaves the scene as it was.

    Raises:
        WeakSegInputError: missing columns, a name matching no volume or several, a bad slice
            range, or a label that is not a class or "healthy".
    """
    try:
        with open(csvPath, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            nameColumn = next((column for column in LABEL_CSV_NAME_COLUMNS if column in columns), None)
            if nameColumn is None or "label" not in columns:
                raise WeakSegInputError(f"{csvPath}: missing column(s); expected {list(CSV_COLUMNS)} "
                                        f"(or {' / '.join(LABEL_CSV_NAME_COLUMNS)} for the first)")
            rows = list(reader)
    except OSError as error:
        raise WeakSegInputError(f"{csvPath}: cannot be read ({error.strerror})") from None
    byName: dict[str, list] = {}
    for volumeNode in volumeNodes:
        byName.setdefault(volumeNode.GetName(), []).append(volumeNode)
    planned: dict[str, tuple[object, list]] = {}
    for lineNumber, row in enumerate(rows, start=2):
        name = (row.get(nameColumn) or "").strip()
        where = f"{csvPath}, line {lineNumber}"
        matches = byName.get(name, [])
        if len(matches) != 1:
            problem = "no volume" if not matches else f"{len(matches)} volumes"
            raise WeakSegInputError(f"{where}: {problem} named {name!r} in the scene")
        volumeNode = matches[0]
        label = checkImageLabel(volumeNode, row.get("label") or "", classNames)
        first, last = _sliceRange(row, where, sliceCount(volumeNode))
        planned.setdefault(volumeNode.GetID(), (volumeNode, []))[1].append((label, first, last))
    for volumeNode, entries in planned.values():
        volumeLabel = None
        ranges: list[SliceRangeLabel] = []
        for label, first, last in entries:
            if first is None:
                volumeLabel = label
            else:
                ranges = replaceRange(ranges, first, last, label)
        mrml_bridge.writeImageLabels(volumeNode, volumeLabel, ranges)
    return [volumeNode for volumeNode, _ in planned.values()]


def _sliceRange(row: dict, where: str, count: int) -> tuple[int | None, int | None]:
    texts = [(row.get(column) or "").strip() for column in ("first_slice", "last_slice")]
    if not any(texts):
        return None, None
    try:
        first, last = (int(text) for text in (texts[0] or texts[1], texts[1] or texts[0]))
    except ValueError:
        raise WeakSegInputError(f"{where}: slice numbers {texts} are not whole numbers") from None
    if not 0 <= first <= last < count:
        raise WeakSegInputError(f"{where}: slices {first}..{last} are not within 0..{count - 1}")
    return first, last


@dataclass
class CohortRow:
    """What the cohort table shows for one volume."""

    volumeNode: object
    imageLabel: str | None
    sliceLabels: list[SliceRangeLabel] = field(default_factory=list)
    scribbleNode: object = None
    maskNode: object = None
    isSource: bool = False
    diagnosis: str | None = None

    @property
    def hasSupervision(self) -> bool:
        """True when the volume can take part in training (any label, scribbles, mask or diagnosis)."""
        return bool(self.imageLabel or self.sliceLabels or self.scribbleNode or self.maskNode or self.diagnosis)


def rowCells(row: CohortRow) -> tuple[str, ...]:
    """The texts of the cohort table's columns for one volume (volume, labels, links, diagnoses)."""
    sliceText = "; ".join(f"{r.first}-{r.last}: {r.label}" for r in row.sliceLabels)
    return (row.volumeNode.GetName(), row.imageLabel or "", sliceText, "yes" if row.scribbleNode else "",
            "yes" if row.maskNode else "", "source (fully segmented)" if row.isSource else "", row.diagnosis or "",
            diagnoses.predictedText(row.volumeNode))


def cohortRow(volumeNode) -> CohortRow:
    volumeLabel, ranges = mrml_bridge.readImageLabels(volumeNode)
    return CohortRow(
        volumeNode, volumeLabel, ranges,
        volumeNode.GetNodeReference(SCRIBBLES_ROLE), volumeNode.GetNodeReference(MASK_ROLE),
        volumeNode.GetAttribute(SOURCE_ATTRIBUTE) == "1", diagnoses.diagnosisLabel(volumeNode),
    )


def checkOneClassSet(rows: Sequence[CohortRow]) -> None:
    """Refuse a training that mixes image labels of one class set with scribbles or masks of another.

    Otherwise the classes of both would silently become the model's classes (image label
    "tumor" plus LV/RV scribbles would train a four-class model). One set may contain the
    other (image labels "LV" on some volumes, LV/RV scribbles on others).
    """
    segmentClasses: set[str] = set()
    labelClasses: set[str] = set()
    for row in rows:
        for node in (row.scribbleNode, row.maskNode):
            if node is not None:
                segmentClasses.update(mrml_bridge.segmentNames(node))
        labelClasses.update(label for label in [row.imageLabel] + [r.label for r in row.sliceLabels] if label)
    ignored = (mrml_bridge.BACKGROUND, HEALTHY)
    segmentClasses = {name for name in segmentClasses if name.lower() not in ignored}
    labelClasses = {name for name in labelClasses if name.lower() not in ignored}
    if segmentClasses and labelClasses and not (labelClasses <= segmentClasses or segmentClasses <= labelClasses):
        raise WeakSegInputError(
            f"these volumes mix image labels of the classes {sorted(labelClasses, key=str.lower)} with scribbles "
            f"or masks of the classes {sorted(segmentClasses, key=str.lower)}; train on volumes of one class set "
            "(select them in the cohort table) or relabel them"
        )


def setSource(volumeNode, isSource: bool) -> None:
    """Mark (or unmark) a volume as "source (fully segmented)" for the transfer method."""
    volumeNode.SetAttribute(SOURCE_ATTRIBUTE, "1" if isSource else None)


def splitForTransfer(rows: Sequence[CohortRow]) -> tuple[list[CohortRow], list[CohortRow]]:
    """The transfer method's two domains: source rows (marked, with a full mask) and target rows (image labels).

    Target rows keep their scribbles (the method uses them as pixel labels too) but not a
    mask: a target volume's mask would be its own answer.
    """
    source = [replace(row, scribbleNode=None, imageLabel=None, sliceLabels=[]) for row in rows if row.isSource]
    unmasked = [row.volumeNode.GetName() for row in source if row.maskNode is None]
    if not source:
        raise WeakSegInputError("the transfer method needs source volumes: mark fully segmented volumes as source")
    if unmasked:
        raise WeakSegInputError(f"source volume(s) {', '.join(unmasked)} have no full mask linked")
    target = [replace(row, maskNode=None) for row in rows if not row.isSource and (row.imageLabel or row.sliceLabels)]
    if not target:
        raise WeakSegInputError("the transfer method needs target volumes with image labels (not marked as source)")
    return source, target


def splitForCollaborative(rows: Sequence[CohortRow]) -> list[CohortRow]:
    """The volumes method collaborative trains on: those with a full mask or a diagnosis.

    Scribbles and image-level labels are not used (a masked volume's mask is its training label).
    """
    kept = [replace(row, scribbleNode=None, imageLabel=None, sliceLabels=[]) for row in rows
            if row.maskNode is not None or row.diagnosis]
    if not any(row.maskNode is not None for row in kept):
        raise WeakSegInputError("the collaborative method needs a few volumes with a full mask linked")
    if not any(row.diagnosis for row in kept):
        raise WeakSegInputError("the collaborative method needs volumes with a diagnosis")
    return kept


def cohortClassNames(rows: Sequence[CohortRow]) -> list[str]:
    """Background, then every class named by a segment or an image label of the cohort, sorted."""
    names: set[str] = set()
    for row in rows:
        for node in (row.scribbleNode, row.maskNode):
            if node is not None:
                names.update(mrml_bridge.segmentNames(node))
        for label in [row.imageLabel] + [r.label for r in row.sliceLabels]:
            if label:
                names.add(label)
    names = {name for name in names if name.lower() not in (mrml_bridge.BACKGROUND, HEALTHY)}
    return [mrml_bridge.BACKGROUND] + sorted(names, key=str.lower)


def caseName(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique case name derived from a node name."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "volume"
    candidate, number = base, 2
    while candidate.lower() in taken:
        candidate, number = f"{base}-{number}", number + 1
    taken.add(candidate.lower())
    return candidate


def writeTrainingFolder(rows: Sequence[CohortRow], folder: str | os.PathLike, classNames: Sequence[str]) -> dict[str, object]:
    """Write the cohort for ``weakseg train``; returns case name -> volume node.

    Volumes without any supervision are left out. Every volume is checked (and its labels
    converted) before anything is written.
    """
    folder = Path(folder)
    taken: set[str] = set()
    planned = []
    for row in rows:
        if not row.hasSupervision:
            continue
        mrml_bridge.checkImageVolume(row.volumeNode)
        scribbles = (
            mrml_bridge.segmentationToLabelmap(row.scribbleNode, row.volumeNode, classNames)
            if row.scribbleNode is not None else None
        )
        mask = (
            mrml_bridge.segmentationToLabelmap(row.maskNode, row.volumeNode, classNames, fillValue=0)
            if row.maskNode is not None else None
        )
        if mask is not None:
            scribbles = mask
        for label in [row.imageLabel] + [r.label for r in row.sliceLabels]:
            if label:
                checkImageLabel(row.volumeNode, label, classNames)
        planned.append((caseName(row.volumeNode.GetName(), taken), row, scribbles, mask))
    if not planned:
        raise WeakSegInputError("no volume of the cohort has an image label, scribbles or a mask; nothing to train on")
    folder.mkdir(parents=True, exist_ok=True)
    labelLines = []
    for case, row, scribbles, mask in planned:
        mrml_bridge.writeVolumeFile(row.volumeNode, folder / f"{case}_image{mrml_bridge.FILE_SUFFIX}")
        for suffix, labels in (("scribble", scribbles), ("label", mask)):
            if labels is not None:
                _writeLabelmap(labels, row.volumeNode, folder / f"{case}_{suffix}{mrml_bridge.FILE_SUFFIX}")
        for entry in labelRows([row.volumeNode]):
            labelLines.append({**entry, "case": case})
    with open(folder / IMAGE_LABELS_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(labelLines)
    return {case: row.volumeNode for case, row, _, _ in planned}


def splitForShapePrior(rows: Sequence[CohortRow]) -> tuple[list[CohortRow], list[CohortRow]]:
    """The training method with a shape prior (maag): who trains, whose masks are the prior.

    Volumes with scribbles train, from their scribbles alone; volumes with a full mask and
    no scribbles lend their masks as the unpaired shape prior. A volume with both trains and
    its mask is not used: it would be the answer to its own scribbles.
    """
    training = [replace(row, maskNode=None, imageLabel=None, sliceLabels=[]) for row in rows if row.scribbleNode]
    unpaired = [row for row in rows if row.scribbleNode is None and row.maskNode is not None]
    if not training:
        raise WeakSegInputError("the shape-prior method (maag) trains on scribbles, but no volume of the cohort has any")
    if not unpaired:
        raise WeakSegInputError(
            "the shape-prior method (maag) needs full masks of other volumes (volumes with a mask and no scribbles)"
        )
    return training, unpaired


def splitForShapeGan(rows: Sequence[CohortRow], shapeModel: str) -> tuple[list[CohortRow], list[CohortRow]]:
    """The training method without masks of its images (shape-gan): who trains, whose masks are the shapes.

    Volumes without a full mask train, from their images alone (scribbles and image labels
    are not used); with a ``shapeModel`` (e.g. ``ellipse``) it gives the shapes and every
    such volume trains, otherwise the full masks of the other volumes are the unpaired masks.
    """
    training = [replace(row, scribbleNode=None, imageLabel=None, sliceLabels=[]) for row in rows if row.maskNode is None]
    unpaired = [] if shapeModel else [row for row in rows if row.maskNode is not None]
    if not training:
        raise WeakSegInputError("method shape-gan trains on volumes without a full mask, but every volume has one")
    if not shapeModel and not unpaired:
        raise WeakSegInputError("method shape-gan needs a shape model (e.g. 'ellipse') or full masks of other volumes")
    return training, unpaired


def writeImageFolder(rows: Sequence[CohortRow], folder: str | os.PathLike) -> dict[str, object]:
    """Write the volumes of ``rows`` as ``<case>_image.nrrd`` (no labels); returns case name -> volume node."""
    folder = Path(folder)
    taken: set[str] = set()
    for row in rows:
        mrml_bridge.checkImageVolume(row.volumeNode)
    cases = {caseName(row.volumeNode.GetName(), taken): row.volumeNode for row in rows}
    folder.mkdir(parents=True, exist_ok=True)
    for case, volumeNode in cases.items():
        mrml_bridge.writeVolumeFile(volumeNode, folder / f"{case}_image{mrml_bridge.FILE_SUFFIX}")
    return cases


def writeUnpairedMasks(rows: Sequence[CohortRow], folder: str | os.PathLike, classNames: Sequence[str]) -> list[str]:
    """Write the masks of ``rows`` as ``unpaired-<case>_label.nrrd`` for ``--unpaired-masks``; returns the cases."""
    folder = Path(folder)
    taken: set[str] = set()
    planned = []
    for row in rows:
        mrml_bridge.checkImageVolume(row.volumeNode)
        labels = mrml_bridge.segmentationToLabelmap(row.maskNode, row.volumeNode, classNames, fillValue=0)
        planned.append((f"unpaired-{caseName(row.volumeNode.GetName(), taken)}", row, labels))
    folder.mkdir(parents=True, exist_ok=True)
    for case, row, labels in planned:
        _writeLabelmap(labels, row.volumeNode, folder / f"{case}_label{mrml_bridge.FILE_SUFFIX}")
    return [case for case, _, _ in planned]


def _writeLabelmap(labels: np.ndarray, volumeNode, path: Path) -> None:
    """Write class codes on ``volumeNode``'s grid (its geometry) as a uint8 labelmap file."""
    geometry = mrml_bridge.volumeGeometry(volumeNode)
    mrml_bridge.writeImageFile(mrml_bridge.imageFromArray(labels.astype(np.uint8), geometry), path)
