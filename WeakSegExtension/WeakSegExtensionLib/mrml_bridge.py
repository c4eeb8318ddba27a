"""MRML nodes to and from arrays and files, with geometry kept exact. No Qt.

Conventions shared with WeakSegLib (see its ``io`` module):

* arrays are in SimpleITK index order ``(Z, Y, X)``, i.e. ``array[k, j, i]`` is the voxel
  at IJK index ``(i, j, k)`` of the volume node;
* files for the ``weakseg`` command line carry LPS geometry (NRRD/NIfTI as SimpleITK
  writes them), while MRML works in RAS: the two differ by flipping the first two axes;
* a class labelmap holds class codes ``0..K`` (0 = "background") and
  :data:`UNLABELLED` (255) where nothing was drawn; codes are positions in a class list.

Scribble segments are matched to classes **by segment name**, never by their order in the
segmentation. Segments are read through ``vtkSlicerSegmentationsModuleLogic`` and written
as new ``vtkSegment`` objects that own their labelmap, so that adding a result never
touches the voxels of any other segment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtkmodules.util import numpy_support

from WeakSegExtensionLib.errors import WeakSegInputError
from WeakSegExtensionLib.library_contract import BACKGROUND, UNLABELLED

GEOMETRY_TOLERANCE = 1e-3
# Values per voxel of a colour volume WeakSeg reads: RGB, or RGBA whose alpha it drops.
COLOUR_COMPONENTS = (3, 4)
# Files handed to the command line are NRRD: NIfTI stores a one-slice colour volume (a photograph)
# as a 2D image and loses its slice position and 3D direction.
FILE_SUFFIX = ".nrrd"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
IMAGE_LABEL_ATTRIBUTE = "WeakSeg.ImageLabel"
SLICE_LABELS_ATTRIBUTE = "WeakSeg.SliceLabels"


def registerSegmentationConverterRules() -> None:
    """Register the labelmap/surface converter rules that the Segmentations module registers at startup.

    Without them (slicer-core outside the application) a segmentation cannot hold or create
    a binary labelmap. Registering is idempotent: rules already present are kept. Where
    ``GetConverterRules`` (a ``std::vector`` of smart pointers) is not wrapped for Python,
    nothing is done: the application's Segmentations module has registered the rules.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not hasattr(factory, "GetConverterRules"):
        return  # not wrapped for Python in this Slicer; inside the application the rules are registered already
    present = {rule.GetName() for rule in factory.GetConverterRules()}
    for ruleClassName in (
        "vtkBinaryLabelmapToClosedSurfaceConversionRule",
        "vtkClosedSurfaceToBinaryLabelmapConversionRule",
        "vtkClosedSurfaceToFractionalLabelmapConversionRule",
        "vtkFractionalLabelmapToClosedSurfaceConversionRule",
    ):
        ruleClass = getattr(slicer, ruleClassName, None)
        if ruleClass is None:
            continue
        rule = ruleClass()
        if rule.GetName() not in present:
            factory.RegisterConverterRule(rule)


def describeNode(node) -> str:
    """How messages name a node: its class in words and its name as shown in Slicer."""
    if node is None:
        return "no node"
    kind = "segmentation" if node.IsA("vtkMRMLSegmentationNode") else "volume" if node.IsA("vtkMRMLVolumeNode") else "node"
    return f"{kind} '{node.GetName()}'"


# ---------------------------------------------------------------------------------------------
# Geometry


def _matrixToArray(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _arrayToMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


@dataclass(frozen=True)
class VolumeGeometry:
    """A voxel grid: array shape ``(Z, Y, X)`` and the 4x4 matrix from array index ``(x, y, z)`` to RAS mm."""

    shape: tuple[int, int, int]
    ijkToRas: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along I, J, K."""
        return np.linalg.norm(self.ijkToRas[:3, :3], axis=0)

    @property
    def directionsRas(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of I, J, K."""
        return self.ijkToRas[:3, :3] / self.spacing

    def toSitkGeometry(self) -> tuple[tuple, tuple, tuple]:
        """(origin, spacing, direction) in LPS, as SimpleITK's setters take them."""
        origin = RAS_TO_LPS @ self.ijkToRas[:3, 3]
        direction = RAS_TO_LPS @ self.directionsRas
        return tuple(origin), tuple(self.spacing), tuple(direction.ravel())

    @classmethod
    def fromSitkImage(cls, image: sitk.Image) -> "VolumeGeometry":
        """The grid of a 3D SimpleITK image (LPS) expressed in RAS."""
        if image.GetDimension() != 3:
            raise WeakSegInputError(f"image is {image.GetDimension()}D; Slicer volumes are 3D")
        direction = np.array(image.GetDirection()).reshape(3, 3)
        ijkToRas = np.eye(4)
        ijkToRas[:3, :3] = RAS_TO_LPS @ direction @ np.diag(image.GetSpacing())
        ijkToRas[:3, 3] = RAS_TO_LPS @ np.array(image.GetOrigin())
        return cls(tuple(int(n) for n in image.GetSize()[::-1]), ijkToRas)

    def differences(self, other: "VolumeGeometry") -> list[str]:
        """Human-readable list of how ``other`` differs from this grid (empty when they match)."""
        found = []
        if tuple(other.shape) != tuple(self.shape):
            found.append(f"size {other.shape[::-1]} instead of {self.shape[::-1]} voxels")
        scale = max(1.0, float(np.abs(self.ijkToRas).max()))
        for name, mine, theirs in (
            ("spacing", self.spacing, other.spacing),
            ("direction", self.directionsRas, other.directionsRas),
            ("origin", self.ijkToRas[:3, 3], other.ijkToRas[:3, 3]),
        ):
            if not np.allclose(mine, theirs, atol=GEOMETRY_TOLERANCE * scale):
                found.append(f"{name} {np.round(theirs, 4).tolist()} instead of {np.round(mine, 4).tolist()}")
        return found


def checkImageVolume(volumeNode) -> None:
    """Raise :class:`WeakSegInputError` unless ``volumeNode`` is a volume with voxels that WeakSeg reads.

    That is a scalar (grey-level) volume, or a colour vector volume with RGB or RGBA voxels, as
    Slicer loads a photograph (PNG, JPEG); the alpha channel is not used. Labelmaps and volumes
    with other numbers of values per voxel (diffusion, displacement fields) are refused.
    """
    if volumeNode is None:
        raise WeakSegInputError("no input volume selected")
    if not volumeNode.IsA("vtkMRMLScalarVolumeNode") or volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        raise WeakSegInputError(
            f"{describeNode(volumeNode)} is a {volumeNode.GetClassName()}; WeakSeg needs a scalar (grey-level) "
            "or colour volume"
        )
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        raise WeakSegInputError(f"{describeNode(volumeNode)} has no voxels")
    components = imageData.GetNumberOfScalarComponents()
    if components == 1 or (volumeNode.IsA("vtkMRMLVectorVolumeNode") and components in COLOUR_COMPONENTS):
        return
    raise WeakSegInputError(
        f"{describeNode(volumeNode)} has {components} values per voxel; WeakSeg needs a scalar (grey-level) volume "
        "or a colour (RGB) vector volume"
    )


def volumeGeometry(volumeNode) -> VolumeGeometry:
    """The grid of a volume node in its own (parent-transform) coordinates."""
    imageData = volumeNode.GetImageData()
    extent = imageData.GetExtent()
    ijkToRasMatrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRasMatrix)
    ijkToRas = _matrixToArray(ijkToRasMatrix)
    firstVoxel = np.array([extent[0], extent[2], extent[4], 1.0])
    ijkToRas[:, 3] = ijkToRas @ firstVoxel  # array index 0 is the extent's first voxel
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return VolumeGeometry(shape, ijkToRas)


def arrayFromVolumeNode(volumeNode) -> np.ndarray:
    """A copy of the voxels in the volume's own type: ``(Z, Y, X)``, or ``(Z, Y, X, 3)`` for a colour volume.

    A colour volume's channels are red, green, blue; an alpha channel is dropped.
    """
    checkImageVolume(volumeNode)
    geometry = volumeGeometry(volumeNode)
    imageData = volumeNode.GetImageData()
    scalars = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    components = imageData.GetNumberOfScalarComponents()
    if components == 1:
        return scalars.reshape(geometry.shape).copy()
    return scalars.reshape(tuple(geometry.shape) + (components,))[..., :3].copy()


def imageFromArray(array: np.ndarray, geometry: VolumeGeometry) -> sitk.Image:
    """Wrap a ``(Z, Y, X)`` array, or ``(Z, Y, X, C)`` with C values per voxel, as a SimpleITK image with ``geometry`` in LPS."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 4)
    origin, spacing, direction = geometry.toSitkGeometry()
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def imageFromVolumeNode(volumeNode) -> sitk.Image:
    """The volume as a SimpleITK image with its full geometry (spacing, origin, direction) in LPS."""
    return imageFromArray(arrayFromVolumeNode(volumeNode), volumeGeometry(volumeNode))


def updateVolumeNodeFromImage(volumeNode, image: sitk.Image) -> None:
    """Replace the voxels and geometry of ``volumeNode`` with a 3D single-component SimpleITK image."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise WeakSegInputError("image has several values per voxel; expected a scalar image")
    geometry = VolumeGeometry.fromSitkImage(image)
    array = sitk.GetArrayFromImage(image)
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtkArray = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    imageData.GetPointData().SetScalars(vtkArray)
    volumeNode.SetAndObserveImageData(imageData)
    volumeNode.SetIJKToRASMatrix(_arrayToMatrix(geometry.ijkToRas))


def writeImageFile(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image for the command line, compressed (NRRD's gzip encoding, or ``.nii.gz``)."""
    sitk.WriteImage(image, str(path), useCompression=True)


def writeVolumeFile(volumeNode, path: str | os.PathLike) -> None:
    """Write a grey-level or colour volume (NRRD, NIfTI, ... by suffix) with correct LPS geometry."""
    writeImageFile(imageFromVolumeNode(volumeNode), path)


def readLabelmapFile(path: str | os.PathLike, geometry: VolumeGeometry) -> np.ndarray:
    """Read a labelmap the command line wrote for a volume; int32 ``(Z, Y, X)``.

    Raises:
        WeakSegInputError: unreadable, several values per voxel, or not on ``geometry``'s grid.
    """
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise WeakSegInputError(f"{path}: cannot be read as a labelmap ({str(error).strip().splitlines()[-1]})") from None
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise WeakSegInputError(f"{path}: a labelmap must be 3D with one value per voxel")
    differences = geometry.differences(VolumeGeometry.fromSitkImage(image))
    if differences:
        raise WeakSegInputError(f"{path}: labelmap does not lie on the volume's grid: " + "; ".join(differences))
    return sitk.GetArrayFromImage(image).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Segments


def segmentIds(segmentationNode) -> list[str]:
    """The segment IDs of a segmentation node, in display order."""
    return list(segmentationNode.GetSegmentation().GetSegmentIDs())


def segmentNames(segmentationNode) -> list[str]:
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetSegment(segmentId).GetName() for segmentId in segmentIds(segmentationNode)]


def classNamesFromSegmentation(segmentationNode) -> list[str]:
    """The default class list of a scribble segmentation: "background" then the other names, sorted.

    Sorting makes the class codes independent of the order in which segments were added,
    and matches what ``weakseg segment`` does with a ``.seg.nrrd`` given without ``--classes``.
    """
    others = sorted({name for name in segmentNames(segmentationNode) if name.lower() != BACKGROUND})
    return [BACKGROUND] + others


def checkClassNames(classNames: Sequence[str], where: str) -> list[str]:
    """Validate a class list: "background" first, at least one more class, unique, no commas."""
    classNames = [str(name).strip() for name in classNames]
    if len(classNames) < 2 or classNames[0].lower() != BACKGROUND:
        raise WeakSegInputError(f"{where}: class list {classNames} must start with 'background' and name at least one more class")
    if len({name.lower() for name in classNames}) != len(classNames):
        raise WeakSegInputError(f"{where}: class list {classNames} repeats a name")
    for name in classNames:
        if not name or "," in name:
            raise WeakSegInputError(f"{where}: class name {name!r} must be non-empty and hold no comma")
    return classNames


def _segmentVoxels(segmentationNode, segmentId: str) -> tuple[np.ndarray | None, np.ndarray]:
    """A segment's voxels in its own labelmap: bool array ``(Z, Y, X)`` (None if empty) and its index-to-RAS matrix.

    The matrix maps the labelmap's first voxel (array index 0) to RAS.
    """
    labelmap = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentationNode, segmentId, labelmap, False
    ):
        name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
        raise WeakSegInputError(
            f"segment '{name}' of {describeNode(segmentationNode)} has no binary labelmap; "
            "convert the segmentation to binary labelmap in the Segmentations module"
        )
    extent = labelmap.GetExtent()
    imageToWorldMatrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(imageToWorldMatrix)
    imageToWorld = _matrixToArray(imageToWorldMatrix)
    if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5] or labelmap.GetPointData().GetScalars() is None:
        return None, imageToWorld
    imageToWorld[:, 3] = imageToWorld @ np.array([extent[0], extent[2], extent[4], 1.0])
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(shape)
    labelValue = segmentationNode.GetSegmentation().GetSegment(segmentId).GetLabelValue()
    selected = values == labelValue  # a shared labelmap layer holds other segments under other values
    return (selected if selected.any() else None), imageToWorld


def segmentMaskOnGrid(segmentationNode, segmentId: str, geometry: VolumeGeometry, volumeNode=None) -> np.ndarray:
    """A segment as a bool ``(Z, Y, X)`` mask on ``geometry``'s grid, without resampling.

    Raises:
        WeakSegInputError: the segment's labelmap lies on another grid (other spacing or
            direction, or shifted by a fraction of a voxel), or it has voxels outside the grid.
    """
    mask = np.zeros(geometry.shape, dtype=bool)
    selected, imageToWorld = _segmentVoxels(segmentationNode, segmentId)
    if selected is None:
        return mask
    name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
    target = describeNode(volumeNode) if volumeNode is not None else "the volume"
    relation = np.linalg.inv(geometry.ijkToRas) @ imageToWorld
    offset = relation[:3, 3]
    if not np.allclose(relation[:3, :3], np.eye(3), atol=GEOMETRY_TOLERANCE) or not np.allclose(
        offset, np.round(offset), atol=1e-2
    ):
        raise WeakSegInputError(
            f"segment '{name}' of {describeNode(segmentationNode)} was drawn on a different voxel grid than {target}; "
            f"draw the scribbles with {target} as source volume"
        )
    start = np.round(offset).astype(int)[::-1]  # (z, y, x) index of the labelmap's first voxel
    stop = start + np.array(selected.shape)
    low = np.maximum(start, 0)
    high = np.minimum(stop, geometry.shape)
    inside = np.zeros_like(selected)
    if np.all(high > low):
        window = tuple(slice(a - s, b - s) for a, b, s in zip(low, high, start))
        inside[window] = selected[window]
        mask[tuple(slice(a, b) for a, b in zip(low, high))] = selected[window]
    if np.count_nonzero(inside) != np.count_nonzero(selected):
        raise WeakSegInputError(f"segment '{name}' of {describeNode(segmentationNode)} has voxels outside {target}")
    return mask


def segmentationToLabelmap(
    segmentationNode, volumeNode, classNames: Sequence[str], fillValue: int = UNLABELLED
) -> np.ndarray:
    """A class labelmap (uint8 ``(Z, Y, X)``) of ``segmentationNode`` on ``volumeNode``'s grid.

    Every segment is matched to a class by name (case-insensitive), whatever its position
    in the segmentation; voxels in no segment get ``fillValue``.

    Raises:
        WeakSegInputError: a segment name that is not a class, two classes overlapping,
            or segments drawn on another grid.
    """
    classNames = checkClassNames(classNames, describeNode(segmentationNode))
    codeOf = {name.lower(): code for code, name in enumerate(classNames)}
    geometry = volumeGeometry(volumeNode)
    labels = np.full(geometry.shape, fillValue, dtype=np.uint8)
    segmentation = segmentationNode.GetSegmentation()
    for segmentId in segmentIds(segmentationNode):
        name = segmentation.GetSegment(segmentId).GetName()
        if name.lower() not in codeOf:
            raise WeakSegInputError(
                f"segment '{name}' of {describeNode(segmentationNode)} is not one of the classes {classNames}"
            )
        code = codeOf[name.lower()]
        mask = segmentMaskOnGrid(segmentationNode, segmentId, geometry, volumeNode)
        clash = mask & (labels != fillValue) & (labels != code)
        if clash.any():
            other = classNames[int(labels[clash][0])]
            raise WeakSegInputError(
                f"segments '{name}' and '{other}' of {describeNode(segmentationNode)} overlap; "
                "a voxel can belong to one class only"
            )
        labels[mask] = code
    return labels


def orientedImageFromMask(mask: np.ndarray, geometry: VolumeGeometry):
    """A uint8 0/1 ``vtkOrientedImageData`` cropped to the mask's bounding box, or None for an empty mask."""
    present = np.argwhere(mask)
    if not len(present):
        return None
    low, high = present.min(axis=0), present.max(axis=0)
    crop = mask[low[0] : high[0] + 1, low[1] : high[1] + 1, low[2] : high[2] + 1]
    image = slicer.vtkOrientedImageData()
    image.SetExtent(int(low[2]), int(high[2]), int(low[1]), int(high[1]), int(low[0]), int(high[0]))
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = crop.astype(np.uint8).ravel()
    image.SetImageToWorldMatrix(_arrayToMatrix(geometry.ijkToRas))
    return image


def addSegmentFromMask(
    segmentationNode,
    mask: np.ndarray,
    geometry: VolumeGeometry,
    name: str,
    color: Sequence[float],
    tags: dict[str, str] | None = None,
    terminology: str = "",
) -> str:
    """Add a new segment holding ``mask`` (its own labelmap, so no other segment changes); returns its ID."""
    segmentation = segmentationNode.GetSegmentation()
    segmentId = segmentation.GenerateUniqueSegmentID(f"WeakSeg_{name}")
    image = orientedImageFromMask(mask, geometry)
    if image is None:
        segmentation.AddEmptySegment(segmentId, name, list(color))
        segment = segmentation.GetSegment(segmentId)
    else:
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*color)
        segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), image)
    segment.SetNameAutoGenerated(False)
    segment.SetColorAutoGenerated(False)
    for key, value in (tags or {}).items():
        segment.SetTag(key, value)
    if terminology:
        # The tag works in every Slicer version; vtkSegment.SetTerminology (Slicer 5.10+) writes the same tag.
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    if image is not None and not segmentation.AddSegment(segment, segmentId):
        raise WeakSegInputError(f"could not add segment '{name}' to {describeNode(segmentationNode)}")
    return segmentId


def segmentTag(segmentationNode, segmentId: str, key: str) -> str | None:
    """The value of a segment's tag, or None when the segment has no such tag."""
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    if segment is None or not segment.HasTag(key):
        return None
    value = vtk.reference("")
    segment.GetTag(key, value)
    return str(value.get())


# ---------------------------------------------------------------------------------------------
# Image-level labels stored on volume nodes


@dataclass(frozen=True)
class SliceRangeLabel:
    """An image-level label for slices ``first..last`` (K index, both included) of a volume."""

    first: int
    last: int
    label: str


def readImageLabels(volumeNode) -> tuple[str | None, list[SliceRangeLabel]]:
    """The volume-wide label (or None) and the per-slice-range labels stored on a volume node."""
    volumeLabel = volumeNode.GetAttribute(IMAGE_LABEL_ATTRIBUTE) or None
    text = volumeNode.GetAttribute(SLICE_LABELS_ATTRIBUTE)
    if not text:
        return volumeLabel, []
    try:
        ranges = [SliceRangeLabel(int(first), int(last), str(label)) for first, last, label in json.loads(text)]
    except (ValueError, TypeError) as error:
        raise WeakSegInputError(
            f"{describeNode(volumeNode)}: attribute {SLICE_LABELS_ATTRIBUTE} is not a list of [first, last, label] ({error})"
        ) from None
    return volumeLabel, ranges


def writeImageLabels(volumeNode, volumeLabel: str | None, ranges: Sequence[SliceRangeLabel]) -> None:
    """Store image-level labels as node attributes (saved with the scene); None/empty removes them."""
    if volumeLabel:
        volumeNode.SetAttribute(IMAGE_LABEL_ATTRIBUTE, volumeLabel)
    else:
        volumeNode.RemoveAttribute(IMAGE_LABEL_ATTRIBUTE)
    if ranges:
        encoded = json.dumps([[r.first, r.last, r.label] for r in sorted(ranges, key=lambda r: (r.first, r.last))])
        volumeNode.SetAttribute(SLICE_LABELS_ATTRIBUTE, encoded)
    else:
        volumeNode.RemoveAttribute(SLICE_LABELS_ATTRIBUTE)
