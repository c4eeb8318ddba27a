"""Tests of weakseg.metrics on small synthetic labelmaps with hand-computed answers."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from weakseg.errors import WeakSegInputError
from weakseg.metrics import ClassScores, dice_per_class, evaluate_labelmaps, format_scores_table

CLASSES = ["background", "organ"]


def volume(array: np.ndarray, spacing_xyz=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing_xyz[: array.ndim])
    return image


def squares():
    """Truth 4x4 = 16 px, prediction 5x4 = 20 px shifted down; overlap 12, image 100 px."""
    truth = np.zeros((10, 10), np.uint8)
    truth[2:6, 2:6] = 1
    prediction = np.zeros((10, 10), np.uint8)
    prediction[3:8, 2:6] = 1
    return prediction, truth


def test_known_overlap_gives_exact_dice_jaccard_sensitivity_specificity():
    prediction, truth = squares()
    scores = evaluate_labelmaps(volume(prediction), volume(truth), CLASSES)
    organ = scores["organ"]
    assert organ.dice == pytest.approx(2 * 12 / (20 + 16))
    assert organ.jaccard == pytest.approx(12 / 24)
    assert organ.sensitivity == pytest.approx(12 / 16)
    assert organ.specificity == pytest.approx((100 - 24) / (100 - 16))
    background = scores["background"]
    assert background.dice == pytest.approx(2 * 76 / (80 + 84))
    assert background.sensitivity == pytest.approx(76 / 84)
    assert background.specificity == pytest.approx(12 / 16)


def test_identical_labelmaps_are_perfect():
    _, truth = squares()
    organ = evaluate_labelmaps(volume(truth), volume(truth), CLASSES)["organ"]
    assert (organ.dice, organ.jaccard, organ.hd95_mm, organ.sensitivity, organ.specificity) == (1, 1, 0, 1, 1)


def single_voxel(position):
    array = np.zeros((8, 8, 8), np.uint8)
    array[position] = 1
    return array


@pytest.mark.parametrize(
    "moved, expected_mm",
    [((5, 3, 3), 2 * 2.0), ((3, 5, 3), 2 * 1.0), ((3, 3, 5), 2 * 1.0)],
    ids=["along z (2 mm voxels)", "along y", "along x"],
)
def test_hd95_is_in_mm_with_anisotropic_spacing(moved, expected_mm):
    spacing_xyz = (1.0, 1.0, 2.0)
    truth = volume(single_voxel((3, 3, 3)), spacing_xyz)
    prediction = volume(single_voxel(moved), spacing_xyz)
    assert evaluate_labelmaps(prediction, truth, CLASSES)["organ"].hd95_mm == pytest.approx(expected_mm)


def brute_force_hd95(prediction: np.ndarray, truth: np.ndarray, spacing_zyx) -> float:
    """Pooled 95th percentile of surface distances by comparing every pair of surface voxels."""

    def surface_mm(mask):
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1, 1:-1].astype(bool)
        all_neighbours_inside = np.ones_like(inner)
        for axis in range(3):
            for step in (-1, 1):
                all_neighbours_inside &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1].astype(bool)
        return np.argwhere(inner & ~all_neighbours_inside) * np.asarray(spacing_zyx)

    a, b = surface_mm(prediction), surface_mm(truth)
    pairwise = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    return float(np.percentile(np.concatenate([pairwise.min(axis=1), pairwise.min(axis=0)]), 95))


def test_hd95_of_shifted_cube_matches_brute_force_in_mm():
    spacing_zyx = (2.0, 1.0, 1.0)
    truth = np.zeros((12, 12, 12), np.uint8)
    truth[2:7, 3:8, 3:8] = 1
    prediction = np.roll(truth, 3, axis=0)
    prediction[:, 3:8, 7] = 0
    image_spacing = tuple(reversed(spacing_zyx))
    hd95 = evaluate_labelmaps(volume(prediction, image_spacing), volume(truth, image_spacing), CLASSES)["organ"].hd95_mm
    assert hd95 == pytest.approx(brute_force_hd95(prediction, truth, spacing_zyx))
    assert 0 < hd95 <= 3 * 2.0


def test_hd95_counts_the_image_border_as_surface():
    truth = np.zeros((6, 10, 10), np.uint8)
    truth[:, :4, :] = 1
    prediction = np.zeros_like(truth)
    prediction[:, :6, 2:] = 1
    spacing_zyx = (3.0, 1.0, 1.0)
    image_spacing = tuple(reversed(spacing_zyx))
    hd95 = evaluate_labelmaps(volume(prediction, image_spacing), volume(truth, image_spacing), CLASSES)["organ"].hd95_mm
    assert hd95 == pytest.approx(brute_force_hd95(prediction, truth, spacing_zyx))


def test_empty_structures_follow_the_documented_conventions():
    empty = np.zeros((6, 6), np.uint8)
    present = empty.copy()
    present[1:3, 1:4] = 1
    both_empty = evaluate_labelmaps(volume(empty), volume(empty), CLASSES)["organ"]
    assert (both_empty.dice, both_empty.jaccard, both_empty.specificity) == (1.0, 1.0, 1.0)
    assert math.isnan(both_empty.hd95_mm) and math.isnan(both_empty.sensitivity)
    missed = evaluate_labelmaps(volume(empty), volume(present), CLASSES)["organ"]
    assert (missed.dice, missed.jaccard, missed.sensitivity, missed.specificity) == (0.0, 0.0, 0.0, 1.0)
    assert math.isnan(missed.hd95_mm)
    invented = evaluate_labelmaps(volume(present), volume(empty), CLASSES)["organ"]
    assert (invented.dice, invented.jaccard) == (0.0, 0.0)
    assert invented.specificity == pytest.approx(1 - 6 / 36)
    assert math.isnan(invented.hd95_mm) and math.isnan(invented.sensitivity)


def test_mismatched_geometry_names_both_inputs():
    prediction, truth = squares()
    moved = volume(prediction)
    moved.SetSpacing((1.0, 2.0))
    with pytest.raises(WeakSegInputError, match=r"pred\.nii\.gz.*gt\.nii\.gz.*spacing"):
        evaluate_labelmaps(moved, volume(truth), CLASSES, prediction_name="pred.nii.gz", truth_name="gt.nii.gz")
    with pytest.raises(WeakSegInputError, match="size"):
        evaluate_labelmaps(volume(prediction[:, :8]), volume(truth), CLASSES)


def test_non_integer_labelmap_is_refused():
    _, truth = squares()
    fractional = sitk.GetImageFromArray(truth.astype(np.float32) * 0.5)
    with pytest.raises(WeakSegInputError, match="whole numbers"):
        evaluate_labelmaps(fractional, volume(truth), CLASSES, prediction_name="soft.nii.gz")


def test_numpy_dice_matches_simpleitk_and_handles_absent_classes():
    prediction, truth = squares()
    dice = dice_per_class(prediction, truth, num_classes=3)
    scores = evaluate_labelmaps(volume(prediction), volume(truth), CLASSES)
    assert dice[:2] == pytest.approx([scores["background"].dice, scores["organ"].dice])
    assert dice[2] == 1.0
    with pytest.raises(WeakSegInputError, match=r"\(10, 10\).*\(10, 9\)"):
        dice_per_class(prediction, truth[:, :9], 2)


def test_numpy_dice_ignores_codes_outside_the_classes():
    prediction = np.array([0, 1, 1, 7, 255])
    truth = np.array([0, 1, 7, 7, 1])
    assert dice_per_class(prediction, truth, 2) == pytest.approx([1.0, 2 * 1 / (2 + 2)])


def test_table_lists_every_class_and_a_foreground_mean():
    scores = {
        "background": ClassScores(0.99, 0.98, 1.0, 0.99, 0.97),
        "RV": ClassScores(0.8, 0.6667, 4.5, 0.75, 0.999),
        "LV": ClassScores(0.0, 0.0, math.nan, math.nan, 0.99),
    }
    table = format_scores_table(scores)
    lines = table.splitlines()
    assert "HD95 (mm)" in lines[0]
    assert lines[2].startswith("background") and "0.9900" in lines[2]
    assert "n/a" in lines[4]
    mean = lines[-1]
    assert mean.startswith("mean (without background)")
    assert mean.split()[-5:] == ["0.4000", "0.3333", "4.5000", "0.7500", "0.9945"]
