"""Loading scribbles (weakseg.weak_labels): labelmaps and .seg.nrrd, good and bad.

Every refusal must name the scribble file and say what is wrong with it, because the
message is all a user of the command line or of Slicer gets to see.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from weakseg.errors import WeakSegInputError
from weakseg.io import labels_to_image, read_image, write_image
from weakseg.contract import palette_color as default_color
from weakseg.segnrrd import Segment, write_seg_nrrd
from weakseg.weak_labels import UNLABELLED, default_class_names, load_scribbles

CLASSES = ["background", "RV", "Myo", "LV"]
SHAPE = (5, 16, 20)


@pytest.fixture
def image(tmp_path: Path):
    """A 20x16x5 volume with anisotropic spacing and a rotated direction, loaded by WeakSeg."""
    rng = np.random.default_rng(3)
    volume = sitk.GetImageFromArray(rng.random(SHAPE, dtype=np.float32))
    volume.SetSpacing((1.4, 1.4, 8.0))
    volume.SetOrigin((-20.0, 15.0, 3.0))
    volume.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / "image.nii.gz"
    sitk.WriteImage(volume, str(path))
    return read_image(path)


def scribble_array(codes=(0, 1, 2, 3)) -> np.ndarray:
    """uint8 ``(Z, Y, X)``: a short stroke of each code in ``codes`` on slice 2, 255 elsewhere."""
    labels = np.full(SHAPE, UNLABELLED, dtype=np.uint8)
    for row, code in enumerate(codes):
        labels[2, 2 + 3 * row, 3:12] = code
    return labels


def write_scribbles(path: Path, labels: np.ndarray, reference: sitk.Image) -> Path:
    write_image(labels_to_image(labels, reference), path)
    return path


def assert_refused(path: Path, image, problem: str, class_names=None) -> None:
    """``load_scribbles`` must raise naming ``path`` and matching ``problem`` (a regex)."""
    with pytest.raises(WeakSegInputError, match=problem) as error:
        load_scribbles(path, image, class_names)
    assert str(path) in str(error.value)


# --- labelmap scribbles -----------------------------------------------------------------------


def test_labelmap_scribbles_load_with_names_and_counts(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "scribble.nii.gz", scribble_array(), image.reference)
    scribbles = load_scribbles(path, image, CLASSES)
    assert scribbles.labels.dtype == np.uint8 and scribbles.labels.shape == SHAPE
    assert scribbles.class_names == CLASSES
    assert scribbles.counts() == {"background": 9, "RV": 9, "Myo": 9, "LV": 9}
    assert scribbles.path == str(path)


def test_labelmap_without_class_names_gets_default_names(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "scribble.nrrd", scribble_array((0, 2)), image.reference)
    scribbles = load_scribbles(path, image)
    assert scribbles.class_names == default_class_names(3) == ["background", "class_1", "class_2"]
    assert scribbles.num_classes == 3


def _moved(reference: sitk.Image, change: str) -> sitk.Image:
    """A labelmap grid that differs from ``reference`` in one respect."""
    if change == "size":
        grid = sitk.Image(21, 16, 5, sitk.sitkUInt8)
        grid.SetSpacing(reference.GetSpacing())
        grid.SetOrigin(reference.GetOrigin())
        grid.SetDirection(reference.GetDirection())
        return grid
    grid = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(reference)
    if change == "spacing":
        grid.SetSpacing((1.4, 1.4, 10.0))
    elif change == "origin":
        grid.SetOrigin((-20.0, 15.0, 11.0))
    elif change == "direction":
        grid.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return grid


@pytest.mark.parametrize("change", ["size", "spacing", "origin", "direction"])
def test_scribbles_on_another_grid_are_refused(tmp_path: Path, image, change: str):
    grid = _moved(image.reference, change)
    labels = np.full(grid.GetSize()[::-1], UNLABELLED, dtype=np.uint8)
    labels[2, 2, 3:12], labels[2, 5, 3:12] = 0, 1
    path = write_scribbles(tmp_path / f"scribble_{change}.nii.gz", labels, grid)
    assert_refused(path, image, rf"does not match the image's grid: .*{change}")


def test_scribbles_without_any_label_are_refused(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "empty.nii.gz", np.full(SHAPE, UNLABELLED, np.uint8), image.reference)
    assert_refused(path, image, "contains no scribbles", CLASSES)


def test_scribbles_of_one_class_are_refused(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "only_background.nii.gz", scribble_array((0,)), image.reference)
    assert_refused(path, image, "only class 'background' is scribbled; at least two classes", CLASSES)


def test_scribbles_without_background_are_refused(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "no_background.nii.gz", scribble_array((1, 2, 3)), image.reference)
    assert_refused(path, image, "no background scribbles", CLASSES)


def test_code_beyond_the_classes_is_refused(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "too_many.nii.gz", scribble_array((0, 1, 5)), image.reference)
    assert_refused(path, image, r"holds class code 5 but only 4 classes were given", CLASSES)


def test_value_that_is_neither_code_nor_unlabelled_is_refused(tmp_path: Path, image):
    labels = scribble_array().astype(np.int16)
    labels[0, 0, 0] = 300
    path = write_scribbles(tmp_path / "odd_value.nrrd", labels, image.reference)
    assert_refused(path, image, "value 300 is neither a class code", CLASSES)


def test_bad_class_list_is_refused(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "scribble.nii.gz", scribble_array(), image.reference)
    assert_refused(path, image, "must start with 'background'", ["RV", "background"])
    assert_refused(path, image, "repeats a name", ["background", "RV", "rv"])


def _picture(tmp_path: Path):
    """A 20x16 grey PNG loaded by WeakSeg."""
    path = tmp_path / "slice.png"
    sitk.WriteImage(sitk.GetImageFromArray((np.arange(16 * 20).reshape(16, 20) % 251).astype(np.uint8)), str(path))
    return read_image(path)


def test_3d_scribbles_for_a_2d_image_are_refused(tmp_path: Path):
    picture = _picture(tmp_path)
    volume = sitk.GetImageFromArray(np.full((3, 16, 20), UNLABELLED, np.uint8))
    path = tmp_path / "scribble3d.nii.gz"
    sitk.WriteImage(volume, str(path))
    assert_refused(path, picture, "3D instead of 2D")


def test_scribbles_for_a_2d_image_load_as_one_slice(tmp_path: Path):
    picture = _picture(tmp_path)
    labels = np.full((16, 20), UNLABELLED, np.uint8)
    labels[2, 2:9], labels[9, 4:15] = 0, 1
    path = tmp_path / "scribble.png"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))
    scribbles = load_scribbles(path, picture, ["background", "lesion"])
    assert scribbles.labels.shape == (1, 16, 20)
    assert scribbles.counts() == {"background": 7, "lesion": 11}


def test_garbage_scribble_file_is_named(tmp_path: Path, image):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"\x00garbage" * 50))
    assert_refused(path, image, "cannot be read as an image", CLASSES)


def test_truncated_scribble_file_is_named(tmp_path: Path, image):
    path = write_scribbles(tmp_path / "cut.nii.gz", scribble_array(), image.reference)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, image, "truncated|cannot be read as an image", CLASSES)


def test_missing_scribble_file_is_named(tmp_path: Path, image):
    assert_refused(tmp_path / "absent.nii.gz", image, "no such file", CLASSES)


# --- .seg.nrrd scribbles ----------------------------------------------------------------------


def _write_segments(path: Path, image, names_and_codes: list[tuple[str, int]]) -> Path:
    """A .seg.nrrd whose segment ``name`` holds the voxels of ``scribble_array()`` == ``code``.

    Segments are written in the order given, with label values 1, 2, ... in that order,
    so the file's order and values say nothing about the classes; only names do.
    """
    source = scribble_array()
    labels = np.zeros(SHAPE, dtype=np.uint8)
    segments = []
    for value, (name, code) in enumerate(names_and_codes, start=1):
        labels[source == code] = value
        segments.append(Segment(name, value, default_color(value)))
    write_seg_nrrd(path, labels, image.reference, segments)
    return path


def test_segments_in_shuffled_order_map_by_name(tmp_path: Path, image):
    shuffled = [("LV", 3), ("background", 0), ("Myo", 2), ("RV", 1)]
    path = _write_segments(tmp_path / "scribbles.seg.nrrd", image, shuffled)
    scribbles = load_scribbles(path, image, CLASSES)
    np.testing.assert_array_equal(scribbles.labels, scribble_array())
    assert scribbles.class_names == CLASSES


def test_segment_names_match_classes_ignoring_case(tmp_path: Path, image):
    lower_case = [("myo", 2), ("Background", 0), ("rv", 1), ("lv", 3)]
    path = _write_segments(tmp_path / "scribbles.seg.nrrd", image, lower_case)
    np.testing.assert_array_equal(load_scribbles(path, image, CLASSES).labels, scribble_array())


def test_segments_without_class_list_get_background_then_sorted_names(tmp_path: Path, image):
    path = _write_segments(tmp_path / "scribbles.seg.nrrd", image, [("zeta", 1), ("background", 0), ("alpha", 2)])
    scribbles = load_scribbles(path, image)
    assert scribbles.class_names == ["background", "alpha", "zeta"]
    expected = np.full(SHAPE, UNLABELLED, np.uint8)
    source = scribble_array()
    expected[source == 0], expected[source == 2], expected[source == 1] = 0, 1, 2
    np.testing.assert_array_equal(scribbles.labels, expected)


def test_unknown_segment_name_is_refused(tmp_path: Path, image):
    path = _write_segments(tmp_path / "scribbles.seg.nrrd", image, [("background", 0), ("RV", 1), ("Aorta", 2)])
    assert_refused(path, image, r"segment 'Aorta' is not one of the classes", CLASSES)


def test_segments_without_background_are_refused(tmp_path: Path, image):
    path = _write_segments(tmp_path / "scribbles.seg.nrrd", image, [("RV", 1), ("LV", 3)])
    assert_refused(path, image, "no segment named 'background'")


def test_overlapping_segments_are_refused(tmp_path: Path, image):
    labels = np.zeros(SHAPE + (2,), dtype=np.uint8)
    labels[2, 2, 3:12, 0] = 1
    labels[2, 2, 8:15, 1] = 1
    layered = sitk.GetImageFromArray(labels, isVector=True)
    layered.CopyInformation(image.reference)
    for index, name in enumerate(["background", "RV"]):
        layered.SetMetaData(f"Segment{index}_Name", name)
        layered.SetMetaData(f"Segment{index}_LabelValue", "1")
        layered.SetMetaData(f"Segment{index}_Layer", str(index))
    path = tmp_path / "overlap.seg.nrrd"
    sitk.WriteImage(layered, str(path))
    assert_refused(path, image, "segment 'RV' overlaps another class's scribbles", CLASSES)


def test_seg_nrrd_on_another_grid_is_refused(tmp_path: Path, image):
    other = sitk.Image(image.reference.GetSize(), sitk.sitkFloat32)
    other.CopyInformation(image.reference)
    other.SetSpacing((1.0, 1.0, 1.0))
    source = scribble_array((0, 1))
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[source == 0], labels[source == 1] = 1, 2
    path = tmp_path / "elsewhere.seg.nrrd"
    segments = [Segment("background", 1, default_color(1)), Segment("RV", 2, default_color(2))]
    write_seg_nrrd(path, labels, other, segments)
    assert_refused(path, image, "spacing/direction", CLASSES)
