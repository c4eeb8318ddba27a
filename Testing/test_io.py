"""Reading, writing and checking images, labelmaps and .seg.nrrd files (weakseg.io, weakseg.segnrrd).

Everything is made in ``tmp_path``; no shared data is needed. Geometry checks use a
non-identity direction and anisotropic spacing so that any axis swap or dropped
geometry shows.
"""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import weakseg
from weakseg.engine import load_checkpoint, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.io import (
    geometry_differences,
    labels_to_image,
    read_image,
    read_labelmap,
    suffix_of,
    write_atomically,
    write_image,
)
from weakseg.contract import palette_color as default_color
from weakseg.segnrrd import Segment, read_seg_nrrd, write_seg_nrrd

SPACING = (0.7, 0.9, 2.5)
ORIGIN = (12.0, -30.5, 4.25)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def make_volume(size=(12, 10, 6), seed: int = 0) -> sitk.Image:
    """A float32 volume of random intensities, ``size`` in (x, y, z), with odd geometry."""
    rng = np.random.default_rng(seed)
    array = rng.normal(100.0, 20.0, size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    return image


def two_box_labels(shape=(6, 10, 12)) -> np.ndarray:
    """uint8 ``(Z, Y, X)`` labels with a block of 1 (24 voxels) and a block of 2 (40 voxels)."""
    labels = np.zeros(shape, dtype=np.uint8)
    labels[1:3, 2:5, 3:7] = 1
    labels[3:5, 5:9, 6:11] = 2
    return labels


def assert_same_geometry(image: sitk.Image, reference: sitk.Image) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)


# --- reading images ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_volume_formats_round_trip_values_and_geometry(tmp_path: Path, suffix: str):
    image = make_volume()
    path = tmp_path / f"volume{suffix}"
    sitk.WriteImage(image, str(path))
    loaded = read_image(path)
    assert loaded.array.shape == (1, 6, 10, 12)
    assert loaded.array.dtype == np.float32
    assert not loaded.is_2d
    assert loaded.spacing_zyx == pytest.approx(SPACING[::-1])
    np.testing.assert_allclose(loaded.array[0], sitk.GetArrayFromImage(image), rtol=1e-6)
    assert_same_geometry(loaded.reference, image)


def _picture(rgb: bool) -> np.ndarray:
    y, x = np.mgrid[0:20, 0:30]
    grey = ((x * 7 + y * 3) % 256).astype(np.uint8)
    return np.stack([grey, 255 - grey, grey // 2], axis=-1) if rgb else grey


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".jpg"])
@pytest.mark.parametrize("rgb", [False, True])
def test_pictures_read_as_one_slice_volumes(tmp_path: Path, suffix: str, rgb: bool):
    path = tmp_path / f"picture{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(_picture(rgb), isVector=rgb), str(path))
    loaded = read_image(path)
    assert loaded.is_2d
    assert loaded.array.shape == ((3 if rgb else 1), 1, 20, 30)
    assert loaded.shape_zyx == (1, 20, 30)
    assert loaded.spacing_zyx[0] == 1.0
    if suffix != ".jpg":
        expected = np.moveaxis(_picture(rgb), -1, 0) if rgb else _picture(rgb)[np.newaxis]
        np.testing.assert_array_equal(loaded.array[:, 0], expected)


def test_rgba_png_drops_alpha(tmp_path: Path):
    rgba = np.concatenate([_picture(True), np.full((20, 30, 1), 255, np.uint8)], axis=-1)
    path = tmp_path / "rgba.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(path))
    assert read_image(path).array.shape == (3, 1, 20, 30)


def _write_dicom_series(volume: sitk.Image, folder: Path, series_uid: str) -> None:
    """One CT-like DICOM file per slice, with the tags GDCM needs to sort and place slices."""
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = volume.GetDirection()
    row_and_column = (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])
    orientation = "\\".join(f"{v:.6f}" for v in row_and_column)
    for z in range(volume.GetDepth()):
        slice_image = volume[:, :, z]
        tags = {
            "0008|0060": "CT",
            "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(z + 1),
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.6f}" for v in volume.TransformIndexToPhysicalPoint((0, 0, z))),
            "0018|0050": f"{volume.GetSpacing()[2]:.6f}",
            "0008|0018": f"{series_uid}.{z + 1}",
        }
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_folder_is_read_with_its_geometry(tmp_path: Path):
    volume = sitk.Cast(sitk.Round(make_volume()), sitk.sitkInt16)
    _write_dicom_series(volume, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.2")
    loaded = read_image(tmp_path / "series")
    assert loaded.array.shape == (1, 6, 10, 12)
    np.testing.assert_array_equal(loaded.array[0], sitk.GetArrayFromImage(volume))
    assert_same_geometry(loaded.reference, volume)


def test_folder_with_two_dicom_series_is_refused(tmp_path: Path):
    volume = sitk.Cast(sitk.Round(make_volume()), sitk.sitkInt16)
    _write_dicom_series(volume[:, :, :3], tmp_path / "mixed", "1.2.826.0.1.3680043.2.1125.3")
    (tmp_path / "other").mkdir()
    _write_dicom_series(volume[:, :, 3:], tmp_path / "other", "1.2.826.0.1.3680043.2.1125.4")
    for name in os.listdir(tmp_path / "other"):
        os.replace(tmp_path / "other" / name, tmp_path / "mixed" / f"b_{name}")
    with pytest.raises(WeakSegInputError, match=r"mixed.*2 DICOM series"):
        read_image(tmp_path / "mixed")


def test_folder_without_dicom_is_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(WeakSegInputError, match="no DICOM series") as error:
        read_image(tmp_path)
    assert str(tmp_path) in str(error.value)


# --- bad images -------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path):
    path = tmp_path / "absent.nii.gz"
    with pytest.raises(WeakSegInputError, match="no such file") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_garbage_file_is_named(tmp_path: Path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    with pytest.raises(WeakSegInputError, match="cannot be read as an image") as error:
        read_image(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_is_named(tmp_path: Path, suffix: str):
    """ITK fills a cut NIfTI with zeros without complaint; WeakSeg must refuse it."""
    path = tmp_path / f"cut{suffix}"
    sitk.WriteImage(make_volume(size=(40, 40, 20)), str(path), useCompression=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeakSegInputError, match="truncated|cannot be read as an image") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_complete_nifti_passes_the_truncation_check(tmp_path: Path):
    path = tmp_path / "whole.nii"
    sitk.WriteImage(make_volume(), str(path))
    with open(path, "ab") as stream:
        stream.write(b"\0" * 16)
    assert read_image(path).array.shape == (1, 6, 10, 12)


def test_nan_image_is_refused(tmp_path: Path):
    array = sitk.GetArrayFromImage(make_volume())
    array[2, 3, 4] = np.nan
    path = tmp_path / "nan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(WeakSegInputError, match="NaN") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_constant_image_is_refused(tmp_path: Path):
    path = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image(8, 8, 4, sitk.sitkInt16) + 7, str(path))
    with pytest.raises(WeakSegInputError, match="constant intensity") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_four_dimensional_image_is_refused(tmp_path: Path):
    path = tmp_path / "series4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([make_volume(), make_volume(seed=1)]), str(path))
    with pytest.raises(WeakSegInputError, match="4 dimensions") as error:
        read_image(path)
    assert str(path) in str(error.value)


# --- writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_written_labels_keep_the_image_geometry(tmp_path: Path, suffix: str):
    reference = make_volume()
    path = tmp_path / "out" / f"labels{suffix}"
    write_image(labels_to_image(two_box_labels(), reference), path)
    written = sitk.ReadImage(str(path))
    assert_same_geometry(written, reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), two_box_labels())
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_labels_of_a_picture_are_written_as_2d(tmp_path: Path):
    picture = tmp_path / "picture.png"
    sitk.WriteImage(sitk.GetImageFromArray(_picture(True), isVector=True), str(picture))
    loaded = read_image(picture)
    labels = np.zeros(loaded.shape_zyx, dtype=np.uint8)
    labels[0, 5:10, 8:20] = 1
    write_image(labels_to_image(labels, loaded.reference), tmp_path / "labels.png")
    written = sitk.ReadImage(str(tmp_path / "labels.png"))
    assert written.GetDimension() == 2
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels[0])


def test_failed_write_leaves_no_file(tmp_path: Path):
    target = tmp_path / "result.nii.gz"

    def write_half_then_fail(temporary: str) -> None:
        Path(temporary).write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, write_half_then_fail)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path):
    target = tmp_path / "result.nrrd"
    target.write_bytes(b"previous result")

    def disk_full(temporary: str) -> None:
        Path(temporary).write_bytes(b"par")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, disk_full)
    assert sorted(os.listdir(tmp_path)) == ["result.nrrd"]
    assert target.read_bytes() == b"previous result"


def test_unwritable_format_leaves_no_temporary_file(tmp_path: Path):
    with pytest.raises(RuntimeError):
        write_image(make_volume(), tmp_path / "result.unknownformat")
    assert os.listdir(tmp_path) == []


def test_suffix_of_knows_double_suffixes():
    assert suffix_of("a/b/Case.NII.GZ") == ".nii.gz"
    assert suffix_of("seg.Seg.nrrd") == ".seg.nrrd"
    assert suffix_of("plain.nrrd") == ".nrrd"
    assert suffix_of("picture.PNG") == ".png"


# --- labelmaps and geometry checks -------------------------------------------------------------


def test_geometry_differences_name_each_difference():
    reference = make_volume()
    assert geometry_differences(reference, make_volume(seed=1)) == []
    other = make_volume(size=(12, 10, 7))
    other.SetSpacing((1.0, 0.9, 2.5))
    other.SetOrigin((0.0, 0.0, 0.0))
    other.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    found = " | ".join(geometry_differences(reference, other))
    for word in ("size", "spacing", "origin", "direction"):
        assert word in found
    assert geometry_differences(reference, other[:, :, 0]) == ["2D instead of 3D"]


def test_read_labelmap_checks_grid_and_values(tmp_path: Path):
    reference = make_volume()
    good = tmp_path / "good.nrrd"
    write_image(labels_to_image(two_box_labels(), reference), good)
    labels = read_labelmap(good, reference)
    assert labels.dtype == np.int32 and labels.shape == (6, 10, 12)

    shifted = labels_to_image(two_box_labels(), reference)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    write_image(shifted, tmp_path / "shifted.nrrd")
    with pytest.raises(WeakSegInputError, match=r"shifted\.nrrd: does not match the image's grid: origin"):
        read_labelmap(tmp_path / "shifted.nrrd", reference)

    fractional = sitk.GetImageFromArray(two_box_labels().astype(np.float32) * 0.5)
    fractional.CopyInformation(reference)
    write_image(fractional, tmp_path / "fractional.nrrd")
    with pytest.raises(WeakSegInputError, match=r"fractional\.nrrd: a labelmap must hold whole numbers"):
        read_labelmap(tmp_path / "fractional.nrrd", reference)


# --- Slicer segmentation files ----------------------------------------------------------------

SEGMENTS = [Segment("liver", 1, default_color(1)), Segment("kidney", 2, default_color(2))]


def test_seg_nrrd_round_trip_by_name(tmp_path: Path):
    reference = make_volume()
    path = tmp_path / "result.seg.nrrd"
    write_seg_nrrd(path, two_box_labels(), reference, SEGMENTS)
    assert sorted(os.listdir(tmp_path)) == ["result.seg.nrrd"]
    masks = read_seg_nrrd(path, reference)
    assert list(masks) == ["liver", "kidney"]
    np.testing.assert_array_equal(masks["liver"], two_box_labels() == 1)
    np.testing.assert_array_equal(masks["kidney"], two_box_labels() == 2)
    written = sitk.ReadImage(str(path))
    assert_same_geometry(written, reference)
    assert written.GetMetaData("Segment0_Extent") == "3 6 2 4 1 2"


def test_seg_nrrd_of_a_picture_is_a_one_slice_volume(tmp_path: Path):
    picture = sitk.GetImageFromArray(_picture(False))
    picture.SetSpacing((0.5, 0.25))
    labels = np.zeros((1, 20, 30), dtype=np.uint8)
    labels[0, 2:6, 3:9] = 1
    path = tmp_path / "picture.seg.nrrd"
    write_seg_nrrd(path, labels, picture, SEGMENTS[:1])
    assert sitk.ReadImage(str(path)).GetSize() == (30, 20, 1)
    np.testing.assert_array_equal(read_seg_nrrd(path, picture)["liver"], labels == 1)


def test_cropped_seg_nrrd_is_placed_on_the_image_grid(tmp_path: Path):
    reference = make_volume()
    path = tmp_path / "full.seg.nrrd"
    write_seg_nrrd(path, two_box_labels(), reference, SEGMENTS)
    full = sitk.ReadImage(str(path))
    cropped = full[3:11, 2:9, 1:5]
    for key in full.GetMetaDataKeys():
        cropped.SetMetaData(key, full.GetMetaData(key))
    cropped_path = tmp_path / "cropped.seg.nrrd"
    sitk.WriteImage(cropped, str(cropped_path))
    masks = read_seg_nrrd(cropped_path, reference)
    np.testing.assert_array_equal(masks["kidney"], two_box_labels() == 2)


def test_plain_nrrd_is_not_a_segmentation(tmp_path: Path):
    path = tmp_path / "plain.seg.nrrd"
    sitk.WriteImage(labels_to_image(two_box_labels(), make_volume()), str(path))
    with pytest.raises(WeakSegInputError, match=r"plain\.seg\.nrrd: not a Slicer segmentation"):
        read_seg_nrrd(path, make_volume())


def test_seg_nrrd_with_repeated_names_is_refused(tmp_path: Path):
    path = tmp_path / "twice.seg.nrrd"
    write_seg_nrrd(path, two_box_labels(), make_volume(), [SEGMENTS[0], Segment("liver", 2, default_color(2))])
    with pytest.raises(WeakSegInputError, match=r"twice\.seg\.nrrd: two segments are named 'liver'"):
        read_seg_nrrd(path, make_volume())


def test_seg_nrrd_loads_in_slicer_as_named_segments(tmp_path: Path):
    """Slicer's own reader (slicer-core MRML) must see the segment names and voxels WeakSeg wrote."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    from vtkmodules.util import numpy_support

    reference = make_volume()
    path = tmp_path / "for_slicer.seg.nrrd"
    write_seg_nrrd(path, two_box_labels(), reference, SEGMENTS)

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1

    segmentation = node.GetSegmentation()
    found = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        labelmap = slicer.vtkOrientedImageData()
        assert node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
        voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
        found[segmentation.GetSegment(segment_id).GetName()] = int(np.count_nonzero(voxels))
        assert labelmap.GetSpacing() == pytest.approx(SPACING)
    assert found == {"liver": 24, "kidney": 40}


def test_model_file_records_the_versions_of_the_software_that_trained_it(tmp_path: Path):
    save_checkpoint(tmp_path / "model.pt", torch.nn.Linear(2, 1), None, 1, {"kind": "test"})
    software = load_checkpoint(tmp_path / "model.pt")["software"]
    assert software["weakseg"] == weakseg.__version__ and software["torch"] == torch.__version__
    assert software["numpy"] == np.__version__
    assert software["SimpleITK"] == sitk.Version.VersionString()
    assert software["python"] == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_keep_the_users_umask(tmp_path: Path, umask: int):
    previous = os.umask(umask)
    try:
        write_image(make_volume(), tmp_path / "image.nii.gz")
        write_seg_nrrd(tmp_path / "result.seg.nrrd", two_box_labels(), make_volume(),
                       [Segment("a", 1, (1.0, 0.0, 0.0)), Segment("b", 2, (0.0, 1.0, 0.0))])
        save_checkpoint(tmp_path / "model.pt", torch.nn.Linear(2, 1), None, 1, {"kind": "test"})
    finally:
        os.umask(previous)
    for name in ("image.nii.gz", "result.seg.nrrd", "model.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
