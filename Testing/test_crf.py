"""Tests of weakseg.crf: both backends on small synthetic images, shapes, spacing, errors."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from weakseg import crf, crf_torch
from weakseg.crf import CrfParams, pydensecrf_available, refine_with_crf, resolve_mode
from weakseg.errors import WeakSegInputError
from weakseg.metrics import dice_per_class

NEEDS_PYDENSECRF = pytest.mark.skipif(
    not pydensecrf_available(), reason="pydensecrf (pip install pydensecrf2) is not importable here"
)
WINDOWED = replace(CrfParams(), exact_max_voxels=0)
EXACT = replace(CrfParams(), exact_max_voxels=100_000)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One thread: the arrays are tiny, and spare threads only wait on a busy shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def noisy_disk(seed: int = 0, size: int = 48):
    """A bright disk on a dark background, with noisy image and very noisy probabilities.

    Returns image float32 (1, 1, Y, X), probabilities float32 (2, 1, Y, X), truth bool (1, Y, X).
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size]
    truth = (rows - size / 2) ** 2 + (columns - size / 2 + 2) ** 2 < (size / 4) ** 2
    image = truth + rng.normal(0.0, 0.15, truth.shape)
    logits = np.where(truth, 1.0, -1.0) + rng.normal(0.0, 1.2, truth.shape)
    foreground = 1.0 / (1.0 + np.exp(-logits))
    probabilities = np.stack([1.0 - foreground, foreground])[:, np.newaxis]
    return image[np.newaxis, np.newaxis].astype(np.float32), probabilities.astype(np.float32), truth[np.newaxis]


def foreground_dice(probabilities: np.ndarray, truth: np.ndarray) -> float:
    return float(dice_per_class(probabilities.argmax(axis=0), truth.astype(int), 2)[1])


@pytest.mark.parametrize("params", [WINDOWED, EXACT], ids=["torch windowed", "torch exact"])
def test_torch_backend_improves_dice_on_noisy_disk(params):
    image, probabilities, truth = noisy_disk()
    before = foreground_dice(probabilities, truth)
    refined = refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), params, backend="torch")
    assert before < 0.7
    assert foreground_dice(refined, truth) > before + 0.2


@NEEDS_PYDENSECRF
def test_pydensecrf_improves_dice_and_agrees_with_both_torch_paths():
    image, probabilities, truth = noisy_disk(seed=1)
    reference = refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), backend="pydensecrf")
    assert foreground_dice(reference, truth) > foreground_dice(probabilities, truth) + 0.2
    for params in (WINDOWED, EXACT):
        torch_labels = refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), params, backend="torch").argmax(0)
        assert np.mean(torch_labels == reference.argmax(0)) >= 0.95


def test_auto_backend_falls_back_to_torch_without_pydensecrf(monkeypatch):
    image, probabilities, _ = noisy_disk()
    expected = refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), backend="torch")
    monkeypatch.setattr(crf, "pydensecrf_available", lambda: False)
    np.testing.assert_array_equal(refine_with_crf(image, probabilities, (1.0, 1.0, 1.0)), expected)


def random_case(channels: int, classes: int, shape_zyx, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 30.0, (channels, *shape_zyx)).astype(np.float32)
    probabilities = rng.random((classes, *shape_zyx)).astype(np.float32)
    return image, probabilities / probabilities.sum(axis=0)


BACKENDS = ["torch", pytest.param("pydensecrf", marks=NEEDS_PYDENSECRF)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels, classes, shape_zyx", [(1, 4, (3, 20, 24)), (3, 3, (1, 30, 40)), (1, 2, (4, 64, 60))])
def test_output_has_input_shape_and_sums_to_one(backend, channels, classes, shape_zyx):
    image, probabilities = random_case(channels, classes, shape_zyx)
    refined = refine_with_crf(image, probabilities, (2.0, 1.0, 1.0), backend=backend)
    assert refined.shape == probabilities.shape and refined.dtype == np.float32
    assert refined.min() >= 0.0
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-5)


def test_single_class_and_zero_iterations_return_the_input():
    image, probabilities = random_case(1, 3, (2, 8, 8))
    same = refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), replace(CrfParams(), iterations=0))
    np.testing.assert_array_equal(same, probabilities)
    ones = np.ones((1, 2, 8, 8), np.float32)
    np.testing.assert_array_equal(refine_with_crf(image, ones, (1.0, 1.0, 1.0)), ones)


def test_auto_mode_is_slicewise_for_thick_slices():
    assert resolve_mode("auto", (8.0, 1.5, 1.5), (10, 256, 216)) == "2d"
    assert resolve_mode("auto", (2.5, 1.25, 1.0), (10, 256, 216)) == "3d"
    assert resolve_mode("auto", (1.0, 1.0, 1.0), (1, 256, 216)) == "2d"
    assert resolve_mode("3d", (8.0, 1.5, 1.5), (10, 256, 216)) == "3d"


@pytest.mark.parametrize("params", [WINDOWED, EXACT], ids=["windowed", "exact"])
def test_slicewise_refinement_keeps_slices_independent(params):
    image, probabilities = random_case(1, 3, (2, 40, 36))
    changed = probabilities.copy()
    changed[:, 1] = changed[::-1, 1]
    original = refine_with_crf(image, probabilities, (8.0, 1.5, 1.5), params, backend="torch")
    refined = refine_with_crf(image, changed, (8.0, 1.5, 1.5), params, backend="torch")
    np.testing.assert_array_equal(refined[:, 0], original[:, 0])
    assert not np.allclose(refined[:, 1], original[:, 1])


def thin_line():
    """A one-voxel line along X (class 1, p=0.7) across a flat image with class 0 elsewhere (p=0.7)."""
    probabilities = np.full((2, 1, 41, 41), 0.3, np.float32)
    probabilities[0, 0, :, :] = 0.7
    probabilities[:, 0, 20, 5:36] = [[0.3], [0.7]]
    return np.zeros((1, 1, 41, 41), np.float32), probabilities


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_are_in_mm_so_anisotropic_spacing_changes_the_result(backend):
    image, probabilities = thin_line()
    smoothing_only = replace(CrfParams(), appearance_weight=0.0, smoothness_position_mm=2.0, smoothness_weight=3.0)
    across_far = refine_with_crf(image, probabilities, (1.0, 4.0, 1.0), smoothing_only, backend)
    along_far = refine_with_crf(image, probabilities, (1.0, 1.0, 4.0), smoothing_only, backend)
    line = (slice(None), 0, 20, slice(10, 31))
    assert np.all(across_far[line].argmax(axis=0) == 1)
    assert np.all(along_far[line].argmax(axis=0) == 0)


def test_3d_refinement_by_slabs_matches_the_whole_volume(monkeypatch):
    image, probabilities = random_case(1, 3, (9, 30, 26))
    params = replace(CrfParams(), mode="3d", exact_max_voxels=0, appearance_position_mm=2.0)
    whole = refine_with_crf(image, probabilities, (2.0, 1.0, 1.0), params, backend="torch")
    monkeypatch.setattr(crf_torch, "WEIGHT_CACHE_BYTES", 1)
    monkeypatch.setattr(crf_torch, "SLAB_VOXELS", 2 * 30 * 26)
    monkeypatch.setattr(crf_torch, "_cached_mean_field", None)
    slabs = refine_with_crf(image, probabilities, (2.0, 1.0, 1.0), params, backend="torch")
    np.testing.assert_allclose(slabs, whole, atol=1e-6)


def test_wrong_shapes_are_named_in_the_error():
    image, probabilities = random_case(1, 2, (1, 5, 6))
    with pytest.raises(WeakSegInputError, match=r"\(1, 5, 6\).*\(2, 1, 5, 6\)"):
        refine_with_crf(image[0], probabilities, (1.0, 1.0, 1.0))
    with pytest.raises(WeakSegInputError, match=r"\(1, 1, 5, 6\).*\(2, 1, 5, 5\)"):
        refine_with_crf(image, probabilities[..., :5], (1.0, 1.0, 1.0))


def test_bad_values_spacing_backend_and_params_are_refused():
    image, probabilities = random_case(1, 2, (1, 5, 6))
    with pytest.raises(WeakSegInputError, match="sum to 1"):
        refine_with_crf(image, probabilities * 2, (1.0, 1.0, 1.0))
    with pytest.raises(WeakSegInputError, match="spacing"):
        refine_with_crf(image, probabilities, (1.0, 0.0, 1.0))
    with pytest.raises(WeakSegInputError, match="backend"):
        refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), backend="gpu")
    with pytest.raises(WeakSegInputError, match="appearance_intensity"):
        CrfParams(appearance_intensity=0.0)
    with pytest.raises(WeakSegInputError, match="mode"):
        CrfParams(mode="2.5d")
    image[0, 0, 0, 0] = np.nan
    with pytest.raises(WeakSegInputError, match="NaN"):
        refine_with_crf(image, probabilities, (1.0, 1.0, 1.0))


def test_pydensecrf_backend_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(crf, "pydensecrf_available", lambda: False)
    image, probabilities = random_case(1, 2, (1, 5, 6))
    with pytest.raises(WeakSegInputError, match="pydensecrf2"):
        refine_with_crf(image, probabilities, (1.0, 1.0, 1.0), backend="pydensecrf")
