"""Connected-component clean-up (weakseg.components): the filters and the data-driven choice between them."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.components import keep_largest_components, one_piece_keeps_scribbles
from weakseg.contract import UNLABELLED

def largest_components_reference(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The plain computation: label each class over the whole volume, keep its largest component."""
    from skimage.measure import label as connected_components

    result = labels.copy()
    for code in range(1, num_classes):
        mask = labels == code
        if mask.any():
            components = connected_components(mask, connectivity=mask.ndim)
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            result[mask & (components != sizes.argmax())] = 0
    return result


@pytest.mark.parametrize("shape", [(12, 30, 40), (50, 60)])
def test_largest_components_equal_the_whole_volume_computation(shape):
    rng = np.random.default_rng(3)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[rng.random(shape) < 0.05] = 2  # many small components of class 2
    labels[-3:, -3:] = 2
    labels[(slice(2, 7),) * len(shape)] = 1  # a big block
    labels[(7,) * len(shape)] = 1  # touches the block's corner only: part of it (full connectivity)
    labels[(9,) * len(shape)] = 1  # a separate voxel: removed
    result = keep_largest_components(labels, 4)  # class 3 absent
    assert np.array_equal(result, largest_components_reference(labels, 4))
    assert result[(7,) * len(shape)] == 1 and result[(9,) * len(shape)] == 0



def heart_like_labels() -> np.ndarray:
    """Classes 1 and 2 touch (one object); class 3 has a small true part touching them and a larger false blob apart."""
    labels = np.zeros((4, 40, 40), dtype=np.uint8)
    labels[:, 4:20, 4:20] = 1
    labels[:, 8:16, 20:24] = 2
    labels[:, 10:14, 24:27] = 3  # true: 4x4x3 = 48 voxels, touching class 2
    labels[:, 30:35, 30:35] = 3  # false: 4x5x5 = 100 voxels, apart from the object
    return labels


def test_one_piece_keeps_the_true_part_that_the_per_class_filter_drops():
    labels = heart_like_labels()
    per_class = keep_largest_components(labels, 4)
    assert per_class[:, 30:35, 30:35].all() and not (per_class[:, 10:14, 24:27] == 3).any()
    one_piece = keep_largest_components(labels, 4, one_piece=True)
    assert (one_piece[:, 10:14, 24:27] == 3).all() and not one_piece[:, 30:35, 30:35].any()
    assert np.array_equal(one_piece[:, :25, :25], labels[:, :25, :25])


def scribbles_on(labels: np.ndarray, points: dict[int, tuple]) -> np.ndarray:
    scribbles = np.full(labels.shape, UNLABELLED, dtype=np.uint8)
    scribbles[:, 0, :] = 0
    for code, where in points.items():
        scribbles[where] = code
    return scribbles


def test_one_piece_is_chosen_when_the_classes_form_one_object():
    labels = heart_like_labels()
    scribbles = scribbles_on(labels, {1: np.s_[:, 10, 6:18], 2: np.s_[:, 12, 21:23], 3: np.s_[:, 12, 25]})
    adopt, record = one_piece_keeps_scribbles([labels], [scribbles], 4)
    kept = record["scribbled_voxels_kept"]
    assert adopt and record["one_piece"] is True
    assert kept["one_piece"] == 4 * (12 + 2 + 1) and kept["per_class"] == 4 * (12 + 2)


def test_one_piece_is_refused_for_separate_structures():
    labels = np.zeros((4, 40, 40), dtype=np.uint8)
    labels[:, 4:20, 4:20] = 1  # e.g. one kidney
    labels[:, 24:36, 24:36] = 2  # the other, apart
    scribbles = scribbles_on(labels, {1: np.s_[:, 10, 6:18], 2: np.s_[:, 30, 26:34]})
    adopt, record = one_piece_keeps_scribbles([labels], [scribbles], 3)
    assert not adopt and record["one_piece"] is False
    assert record["scribbled_voxels_kept"] == {"per_class": 4 * (12 + 8), "one_piece": 4 * 12}
    assert np.array_equal(keep_largest_components(labels, 3), labels)


def test_one_foreground_class_keeps_the_per_class_filter():
    labels = np.zeros((2, 20, 20), dtype=np.uint8)
    labels[:, 2:8, 2:8] = 1
    scribbles = scribbles_on(labels, {1: np.s_[:, 4, 3:7]})
    assert one_piece_keeps_scribbles([labels], [scribbles], 2)[0] is False
