"""The pseudo-label generator on small synthetic images (no training involved)."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.errors import WeakSegInputError
from weakseg.methods.pseudo_labels import PseudoLabelParams, confident_pixels, dataset_cutoffs, make_pseudo_labels
from weakseg.weak_labels import UNLABELLED


def _disc(size: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _blurred(mask: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(mask.astype(np.float32), sigma)
    return blurred / blurred.max()


def test_healthy_image_is_all_background():
    image = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    activations = np.ones((2, 32, 32), dtype=np.float32)
    labels = make_pseudo_labels(image, activations, present=[])
    assert labels.dtype == np.uint8
    assert np.all(labels == 0)


def test_absent_class_is_never_labelled():
    size = 48
    first, second = _disc(size, (14, 14), 7), _disc(size, (34, 34), 7)
    image = (first * 1.0 + second * 2.0)[None].astype(np.float32)
    activations = np.stack([_blurred(first, 2), _blurred(second, 2)])
    labels = make_pseudo_labels(image, activations, present=[1], params=PseudoLabelParams(superpixels=30))
    assert not np.any(labels == 2)
    assert np.any(labels == 1)
    assert np.all(labels[second] != 1)


def test_thresholds_are_balanced_per_class():
    """A faint class keeps the same share of its pixels as a strong one."""
    size = 64
    strong, faint = _disc(size, (16, 16), 10), _disc(size, (46, 46), 10)
    noise = np.random.default_rng(0).uniform(0.0, 0.4, size=(size, size))
    activations = np.stack([
        np.where(strong, np.linspace(0.8, 1.0, size)[None], noise),
        np.where(faint, np.linspace(0.52, 0.6, size)[None], noise),
    ])
    params = PseudoLabelParams(foreground_fraction=0.5, background_fraction=0.5, superpixels=0)
    labels = confident_pixels(activations.astype(np.float32), [1, 2], params)
    strong_share = np.count_nonzero(labels == 1) / np.count_nonzero(strong)
    faint_share = np.count_nonzero(labels == 2) / np.count_nonzero(faint)
    assert strong_share == pytest.approx(0.5, abs=0.1)
    assert faint_share == pytest.approx(0.5, abs=0.1)
    background_share = np.count_nonzero(labels == 0) / np.count_nonzero(~(strong | faint))
    assert background_share == pytest.approx(0.5, abs=0.05)
    assert np.count_nonzero(labels == UNLABELLED) > 0


def test_superpixels_snap_labels_to_the_object_edge():
    """A misplaced activation disc becomes a label that follows the bright square's edges."""
    size = 64
    square = np.zeros((size, size), dtype=bool)
    square[20:44, 20:44] = True
    rng = np.random.default_rng(1)
    image = (square * 1.0 + 0.05 * rng.normal(size=(size, size)))[None].astype(np.float32)
    shifted = _disc(size, (32, 38), 12).astype(np.float32)[None]
    params = PseudoLabelParams(foreground_fraction=1.0, background_fraction=1.0, superpixels=60, compactness=0.1)
    labels = make_pseudo_labels(image, shifted, present=[1], params=params)
    pixelwise = confident_pixels(shifted, [1], params)
    assert np.count_nonzero((pixelwise == 1) & ~square) > 50, "the disc pokes out of the square"
    assert np.count_nonzero((labels == 1) & ~square) <= 5
    assert np.count_nonzero((pixelwise == 0) & square) > 100, "and misses part of it"
    assert np.count_nonzero((labels == 0) & square) == 0
    assert np.count_nonzero(labels == 1) > 0.4 * np.count_nonzero(square)


def test_uncertain_band_is_unlabelled():
    size = 48
    disc = _disc(size, (24, 24), 10)
    image = disc[None].astype(np.float32)
    labels = make_pseudo_labels(image, _blurred(disc, 3)[None], present=[1],
                                params=PseudoLabelParams(superpixels=0, foreground_fraction=0.5))
    assert np.any(labels == UNLABELLED) and np.any(labels == 1) and np.any(labels == 0)
    assert labels[24, 24] == 1 and labels[0, 0] == 0


def test_bad_inputs_are_named():
    with pytest.raises(WeakSegInputError, match="same size"):
        make_pseudo_labels(np.zeros((1, 8, 8)), np.zeros((1, 9, 9)), [1])
    with pytest.raises(WeakSegInputError, match="present classes"):
        make_pseudo_labels(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), [2])
    with pytest.raises(WeakSegInputError, match="vote"):
        PseudoLabelParams(vote=1.5)


def test_dataset_class_balance_keeps_a_fixed_share_of_each_class_over_all_images():
    """CBST's rule (Zou et al., ECCV 2018): one cut-off per class over the set, not per image."""
    params = PseudoLabelParams(threshold=0.5, foreground_fraction=0.5, background_fraction=1.0, superpixels=0)
    bright = np.zeros((1, 4, 5), dtype=np.float32)
    bright[0, :2] = np.linspace(0.90, 0.99, 10).reshape(2, 5)
    faint = np.zeros((1, 4, 5), dtype=np.float32)
    faint[0, :2] = np.linspace(0.60, 0.69, 10).reshape(2, 5)
    cutoffs = dataset_cutoffs([bright, faint], [[1], [1]], params)
    assert 0.69 < cutoffs[1] < 0.90
    image = np.zeros((1, 4, 5), dtype=np.float32)
    by_set = [make_pseudo_labels(image, maps, [1], params, cutoffs) for maps in (bright, faint)]
    by_image = [make_pseudo_labels(image, maps, [1], params) for maps in (bright, faint)]
    assert [int((labels == 1).sum()) for labels in by_set] == [10, 0]  # half of all lesion pixels: the bright ones
    assert [int((labels == 1).sum()) for labels in by_image] == [5, 5]  # half of each image's
    assert all((labels[2:] == 0).all() for labels in by_set)  # background kept whole (fraction 1)
    assert dataset_cutoffs([bright], [[]], params) == {}  # a healthy image takes no part
