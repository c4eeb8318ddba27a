"""Reading image-level labels CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weakseg.errors import WeakSegInputError
from weakseg.image_labels import read_image_labels, slice_labels_from_mask

CLASSES = ["background", "tumour", "oedema"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_ranges_override_the_volume_label(tmp_path):
    path = _write(tmp_path, "image,slices,label\ncase01,,Tumour\ncase01,0-1,healthy\ncase01,3,tumour;oedema\nimg.png,,healthy\n")
    labels = read_image_labels(path, CLASSES)
    per_slice = labels["case01"].per_slice(5)
    assert per_slice == [frozenset(), frozenset(), {"tumour"}, {"tumour", "oedema"}, {"tumour"}]
    assert labels["img.png"].per_slice(1) == [frozenset()]


def test_slicer_cohort_format(tmp_path):
    path = _write(tmp_path, "case,label,first_slice,last_slice\nvol,tumour,2,3\n")
    assert read_image_labels(path)["vol"].per_slice(5) == [None, None, {"tumour"}, {"tumour"}, None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,slices,label\ncase,0-3,tumour\ncase,3-4,healthy\n", "line 3: slices 3-4 .* overlap slices 0-3"),
        ("image,slices,label\ncase,,tumour\ncase,,healthy\n", "line 3: 'case' already has a whole-image label"),
        ("image,slices,label\ncase,4-2,tumour\n", "line 2: slice range '4-2' starts after it ends"),
        ("image,slices,label\ncase,a-b,tumour\n", "line 2: slices 'a-b'"),
        ("image,slices,label\ncase,,liver\n", "line 2: label 'liver' is not one of"),
        ("image,slices,label\ncase,,background\n", "'background' is not an image label"),
        ("image,slices,label\ncase,,\n", "line 2: the label is empty"),
        ("name,label\ncase,tumour\n", "needs a header"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(WeakSegInputError, match=message) as raised:
        read_image_labels(path, CLASSES)
    assert str(path) in str(raised.value)


def test_range_beyond_the_volume(tmp_path):
    labels = read_image_labels(_write(tmp_path, "image,slices,label\ncase,2-9,tumour\n"), CLASSES)
    with pytest.raises(WeakSegInputError, match="beyond its 5 slices"):
        labels["case"].per_slice(5)


def test_slice_labels_from_mask():
    mask = np.zeros((3, 4, 4), dtype=np.int32)
    mask[1, 0, 0] = 1
    mask[2, 1, 1] = 2
    mask[2, 2, 2] = 1
    assert slice_labels_from_mask(mask, CLASSES) == [frozenset(), {"tumour"}, {"tumour", "oedema"}]
