"""The per-volume appearance refinement on small synthetic volumes (no training involved)."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.errors import WeakSegInputError
from weakseg.methods.appearance import (
    AppearanceParams,
    class_posterior,
    extend_along_slices,
    foreground_region,
    refine_with_appearance,
)


def _volume(depth: int = 3, size: int = 48, radius: float = 10.0, seed: int = 0):
    """``(1, Z, Y, X)`` noisy tissue with a bright disc on every slice, the disc mask, and a coarse score.

    The score is a wide blob (radius 1.6 x the disc's) peaking at the disc's centre, like a CAM
    or a network that found the lesion but spills past its edge.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    distance = np.hypot(rows - size / 2, cols - size / 2)
    disc = np.broadcast_to(distance <= radius, (depth, size, size))
    image = rng.normal(0.0, 0.3, (depth, size, size)) + 2.0 * disc
    score = np.broadcast_to(np.clip(1.0 - distance / (1.6 * radius), 0.0, 1.0), (depth, size, size))
    return image[None].astype(np.float32), disc, score[None].astype(np.float32)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_edges_follow_intensity_not_the_coarse_score():
    image, disc, score = _volume()
    params = AppearanceParams(seed=0.9, gate=0.1)
    refined = refine_with_appearance(image, score, np.ones((1, 3), bool), foreground_region(image), params)
    assert _dice(score[0] > 0.5, disc) < 0.8
    assert _dice(refined[0] > 0.5, disc) > 0.95
    outside_gate = score[0] <= params.gate
    assert np.all(refined[0][outside_gate] == 0)


def test_a_network_prediction_that_spills_past_the_lesion_is_redrawn_on_its_edge():
    """refine_prediction: the prediction step of both image-label methods (imagelabel, cycle)."""
    from weakseg.methods.prediction_refinement import refine_prediction

    image, disc, _ = _volume()
    rows, cols = np.mgrid[:48, :48]
    distance = np.hypot(rows - 24, cols - 24)
    # sure at the centre, still > 0.5 out to 1.6 x the disc's radius: a network that grew the lesion
    network = np.broadcast_to(np.clip(1.25 - distance / 21.0, 0.0, 1.0), disc.shape)[None]
    probabilities = np.concatenate([1.0 - network, network]).astype(np.float32)
    sharpened = refine_prediction(image, probabilities, (1.0, 1.0, 1.0), AppearanceParams(), crf=False)
    assert _dice(probabilities.argmax(axis=0) == 1, disc) < 0.6
    assert _dice(sharpened.argmax(axis=0) == 1, disc) > 0.95
    np.testing.assert_allclose(sharpened.sum(axis=0), 1.0, atol=1e-5)
    unchanged = refine_prediction(image, probabilities, (1.0, 1.0, 1.0), None, crf=False)
    np.testing.assert_array_equal(unchanged, probabilities)


def test_slices_not_allowed_to_show_the_class_get_nothing():
    image, _, score = _volume()
    allowed = np.array([[True, False, True]])
    refined = refine_with_appearance(image, score, allowed, foreground_region(image), AppearanceParams())
    assert np.all(refined[0, 1] == 0)
    assert refined[0, 0].max() > 0.5 and refined[0, 2].max() > 0.5


def test_a_class_without_seeds_keeps_its_score():
    image, _, score = _volume()
    weak = score * 0.5
    refined = refine_with_appearance(image, weak, np.ones((1, 3), bool), foreground_region(image),
                                     AppearanceParams(seed=0.9))
    np.testing.assert_array_equal(refined, weak)


def test_posterior_prior_shifts_the_decision():
    image, disc, _ = _volume()
    region = np.ones(disc.shape, bool)
    even = class_posterior(image, disc, ~disc, region, prior=0.5)
    sceptical = class_posterior(image, disc, ~disc, region, prior=0.01)
    assert np.all(sceptical <= even + 1e-6)
    assert np.count_nonzero(sceptical > 0.5) < np.count_nonzero(even > 0.5)


def test_bad_shapes_and_values_are_named():
    image, _, score = _volume()
    with pytest.raises(WeakSegInputError, match="appearance refinement needs"):
        refine_with_appearance(image, score[:, :2], np.ones((1, 3), bool), foreground_region(image), AppearanceParams())
    with pytest.raises(WeakSegInputError, match="gate"):
        AppearanceParams(gate=1.5)
    with pytest.raises(WeakSegInputError, match="prior"):
        AppearanceParams(prior=1.0)


def test_lesion_is_followed_into_empty_end_slices_and_stops_where_it_ends():
    size = 32
    rows, cols = np.mgrid[:size, :size]
    radii = [0, 3, 6, 9, 9, 6, 3, 0]
    lesion = np.stack([np.hypot(rows - 16, cols - 16) <= radius if radius else np.zeros((size, size), bool)
                       for radius in radii])
    found = lesion.copy()
    found[[1, 2, 6]] = False
    bright_elsewhere = np.zeros_like(lesion)
    bright_elsewhere[:, :3, :3] = True
    extended = extend_along_slices(found, lesion | bright_elsewhere)
    np.testing.assert_array_equal(extended, lesion)


def test_following_slices_is_part_of_the_refinement():
    image, disc, score = _volume(depth=5)
    score = score.copy()
    score[0, [0, 4]] = 0.0
    allowed = np.array([[False, True, True, True, False]])
    region = foreground_region(image)
    plain = refine_with_appearance(image, score, allowed, region, AppearanceParams())
    followed = refine_with_appearance(image, score, allowed, region, AppearanceParams(), follow_slices=True)
    assert np.all(plain[0, [0, 4]] == 0)
    assert _dice(followed[0] > 0.5, disc) > 0.95
