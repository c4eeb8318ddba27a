"""Image and labelmap input/output through SimpleITK, with geometry kept intact.

Arrays inside WeakSeg follow SimpleITK's index order: a volume is ``(Z, Y, X)``, and an
image with channels is ``(C, Z, Y, X)``. A 2D image is handled as a volume of one slice
(``Z == 1``) and written back as 2D. Every output copies spacing, origin and direction
from the image it was computed from, and is written atomically (temporary file, then
rename) so that an interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from weakseg.atomic import suffix_of, write_atomically
from weakseg.errors import WeakSegInputError
from weakseg.suffixes import PICTURE_SUFFIXES

GEOMETRY_TOLERANCE = 1e-3
# The most values (voxels times components) one image may hold: 1 GiB as float32. Reading
# a larger file would make the float copies the methods work on exhaust a typical
# workstation's memory, so such a file is refused from its header, before any voxel is read.
MAX_IMAGE_VALUES = 256 * 1024 * 1024


@dataclass
class LoadedImage:
    """An image as WeakSeg works on it.

    Attributes:
        array: float32 intensities, shape ``(C, Z, Y, X)``; ``Z == 1`` for 2D images.
        reference: the image as read, the source of geometry for every output.
        path: where it was read from, for error messages.
    """

    array: np.ndarray
    reference: sitk.Image
    path: str

    @property
    def is_2d(self) -> bool:
        return self.reference.GetDimension() == 2

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[1:])  # type: ignore[return-value]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm in array order; 2D images get 1 mm between their single slice."""
        spacing = self.reference.GetSpacing()
        if self.is_2d:
            return (1.0, float(spacing[1]), float(spacing[0]))
        return (float(spacing[2]), float(spacing[1]), float(spacing[0]))


def read_sitk(path: str | os.PathLike) -> sitk.Image:
    """Read any file SimpleITK reads, or a folder holding one DICOM series.

    The header is read first and an image of more than :data:`MAX_IMAGE_VALUES` values
    is refused before its voxels are read.

    Raises:
        WeakSegInputError: the path does not exist, cannot be read as an image, or is too large.
    """
    path = str(path)
    if not os.path.exists(path):
        raise WeakSegInputError(f"{path}: no such file or folder")
    try:
        if os.path.isdir(path):
            return _read_dicom_series(path)
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        _check_size(path, reader.GetSize(), reader.GetNumberOfComponents())
        image = reader.Execute()
    except RuntimeError as error:
        raise WeakSegInputError(f"{path}: cannot be read as an image ({_last_line(error)})") from None
    if suffix_of(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    return image


def image_header(path: str | os.PathLike) -> tuple[tuple[int, ...], int]:
    """Size (x, y[, z, ...]) and components per voxel of an image file, from its header only.

    Raises:
        WeakSegInputError: missing file, or a header SimpleITK cannot read.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise WeakSegInputError(f"{path}: no such file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise WeakSegInputError(f"{path}: cannot be read as an image ({_last_line(error)})") from None
    return tuple(int(size) for size in reader.GetSize()), int(reader.GetNumberOfComponents())


def _last_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else "unknown reason"


def _check_size(path: str, size: tuple[int, ...], components: int) -> None:
    """Refuse an image holding more than :data:`MAX_IMAGE_VALUES` values."""
    values = int(np.prod(size, dtype=np.int64)) * max(1, components)
    if values > MAX_IMAGE_VALUES:
        shape = "x".join(str(s) for s in size) + (f" x {components} components" if components > 1 else "")
        raise WeakSegInputError(
            f"{path}: image too large: {shape} = {values:,} values; WeakSeg reads at most "
            f"{MAX_IMAGE_VALUES:,} (1 GiB as float32); crop or resample it first"
        )


def _check_nifti_complete(path: str) -> None:
    """Refuse a NIfTI file that ends before its voxel data does.

    ITK reads a truncated ``.nii``/``.nii.gz`` without complaint and fills the missing
    voxels with zeros, so the byte count the header promises is checked here.
    """
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            available = len(header) + sum(len(block) for block in iter(lambda: stream.read(1 << 20), b""))
    except (EOFError, OSError, zlib.error):
        raise WeakSegInputError(f"{path}: file is truncated or corrupt (compressed data ends early)") from None
    expected = _nifti_byte_count(header)
    if expected is not None and available < expected:
        raise WeakSegInputError(
            f"{path}: file is truncated: holds {available} of the {expected} bytes its header announces"
        )


def _nifti_byte_count(header: bytes) -> int | None:
    """Header plus voxel bytes announced by a NIfTI-1 or NIfTI-2 header, None if unrecognised."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7:
        return None
    voxels = int(np.prod([max(1, d) for d in dims[1 : dims[0] + 1]], dtype=np.int64))
    return max(offset, 348) + voxels * bitpix // 8


def _read_dicom_series(folder: str) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if not series_ids:
        raise WeakSegInputError(f"{folder}: folder holds no DICOM series")
    if len(series_ids) > 1:
        raise WeakSegInputError(
            f"{folder}: folder holds {len(series_ids)} DICOM series; give a folder with exactly one"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series_ids[0])
    slice_size, components = image_header(files[0])
    _check_size(folder, slice_size[:2] + (len(files),), components)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image to segment.

    Accepts NIfTI, NRRD, MHA and other SimpleITK formats, a DICOM series folder, and
    2D PNG/JPG/BMP (grey or RGB).

    Raises:
        WeakSegInputError: unreadable file, not 2D or 3D, too large, NaN values, or constant intensity.
    """
    if os.path.isfile(path):
        size, _ = image_header(path)
        if len(size) not in (2, 3):
            raise WeakSegInputError(
                f"{path}: image has {len(size)} dimensions (size {'x'.join(map(str, size))}); expected a 2D or 3D "
                "image (extract one time point or channel of a 4D series first)"
            )
    image = read_sitk(path)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    channels = image.GetNumberOfComponentsPerPixel()
    if channels == 1:
        array = array[np.newaxis]
    else:
        array = np.moveaxis(array, -1, 0)
    if image.GetDimension() == 2:
        array = array[:, np.newaxis]
    if channels == 4 and suffix_of(path) in PICTURE_SUFFIXES:
        array = array[:3]
    if suffix_of(path) == ".bmp" and len(array) == 3 and (array == array[:1]).all():
        array = array[:1]  # ITK expands 8-bit palette BMPs to RGB; a grey palette gives three equal channels
    if not np.all(np.isfinite(array)):
        raise WeakSegInputError(f"{path}: image contains NaN or infinite values")
    if float(array.max()) == float(array.min()):
        raise WeakSegInputError(f"{path}: image has constant intensity {float(array.max())}; nothing to segment")
    return LoadedImage(array=np.ascontiguousarray(array), reference=image, path=str(path))


def check_same_channels(channels: int | None, found: int, name: str | os.PathLike) -> int:
    """The channel count of a set of training images: ``found`` for the first (``channels`` None), else checked equal.

    Raises:
        WeakSegInputError: ``name`` has another channel count than the images before it.
    """
    if channels is not None and found != channels:
        raise WeakSegInputError(f"{name}: has {found} channel(s) but earlier images have {channels}")
    return found


def geometry_differences(image: sitk.Image, other: sitk.Image) -> list[str]:
    """Human-readable list of how ``other``'s grid differs from ``image``'s (empty if equal)."""
    if image.GetDimension() != other.GetDimension():
        return [f"{other.GetDimension()}D instead of {image.GetDimension()}D"]
    differences = []
    if image.GetSize() != other.GetSize():
        differences.append(f"size {other.GetSize()} instead of {image.GetSize()}")
    for name in ("Spacing", "Origin", "Direction"):
        expected = np.array(getattr(image, f"Get{name}")())
        found = np.array(getattr(other, f"Get{name}")())
        scale = max(1.0, float(np.abs(expected).max()))
        if not np.allclose(expected, found, atol=GEOMETRY_TOLERANCE * scale):
            differences.append(
                f"{name.lower()} {tuple(np.round(found, 4))} instead of {tuple(np.round(expected, 4))}"
            )
    return differences


def labels_to_image(labels: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a ``(Z, Y, X)`` labelmap as an image with ``reference``'s geometry (2D stays 2D)."""
    labels = np.asarray(labels)
    if labels.dtype not in (np.uint8, np.int16, np.uint16, np.int32):
        labels = labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.int32)
    array = labels[0] if reference.GetDimension() == 2 else labels
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin(reference.GetOrigin())
    image.SetDirection(reference.GetDirection())
    return image


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image atomically; the format follows the suffix (.nii.gz, .nrrd, .mha, .png, ...)."""
    write_atomically(path, lambda temporary: sitk.WriteImage(image, temporary, useCompression=True))


def read_labelmap(path: str | os.PathLike, reference: sitk.Image) -> np.ndarray:
    """Read a labelmap that must lie on ``reference``'s grid; returns int32 ``(Z, Y, X)``.

    Raises:
        WeakSegInputError: unreadable, not integer-valued, or on a different grid.
    """
    labelmap = read_sitk(path)
    if labelmap.GetNumberOfComponentsPerPixel() != 1:
        raise WeakSegInputError(
            f"{path}: a labelmap must have one value per voxel; this file has "
            f"{labelmap.GetNumberOfComponentsPerPixel()} (a vector or colour image)"
        )
    differences = geometry_differences(reference, labelmap)
    if differences:
        raise WeakSegInputError(f"{path}: does not match the image's grid: " + "; ".join(differences))
    array = sitk.GetArrayFromImage(labelmap)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise WeakSegInputError(f"{path}: a labelmap must hold whole numbers")
    array = array.astype(np.int32)
    return array[np.newaxis] if reference.GetDimension() == 2 else array
