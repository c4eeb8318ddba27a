"""Interactive mode (weakseg.methods.interactive) on a small synthetic volume."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic_data import dice
from weakseg.errors import CancelledError
from weakseg.io import read_image
from weakseg.methods.interactive import InteractiveConfig
from weakseg.methods.interactive_unet import propagate_scribbles, region_of_interest, segment_interactive
from weakseg.progress import Progress
from weakseg.weak_labels import UNLABELLED, load_scribbles

FAST = InteractiveConfig(steps=30, channels=(8, 16), max_size=48)


def load(case):
    image = read_image(case.image)
    return image, load_scribbles(case.scribbles, image, ["background", "bright", "dim"])


def test_segments_both_discs_including_the_unscribbled_slice(synthetic_case):
    image, scribbles = load(synthetic_case)
    labels = segment_interactive(image, scribbles, FAST)
    assert labels.shape == image.shape_zyx and labels.dtype == np.uint8
    for code in (1, 2):
        assert dice(labels, synthetic_case.truth, code) > 0.85
        assert dice(labels[-1], synthetic_case.truth[-1], code) > 0.8


def test_scribbled_voxels_keep_their_class(synthetic_case):
    image, scribbles = load(synthetic_case)
    labels = segment_interactive(image, scribbles, FAST)
    drawn = scribbles.labels != UNLABELLED
    np.testing.assert_array_equal(labels[drawn], scribbles.labels[drawn])


def test_same_seed_gives_the_same_result(synthetic_case):
    image, scribbles = load(synthetic_case)
    first = segment_interactive(image, scribbles, FAST, seed=3)
    second = segment_interactive(image, scribbles, FAST, seed=3)
    np.testing.assert_array_equal(first, second)


def test_random_walker_fallback_propagates_scribbled_slices(synthetic_case, monkeypatch):
    image, scribbles = load(synthetic_case)
    import weakseg.methods.growcut as growcut

    def unavailable(*_args, **_kwargs):
        raise ImportError("slicer-core is not installed")

    monkeypatch.setattr(growcut, "segment_growcut", unavailable)
    pseudo = propagate_scribbles(image, scribbles)
    assert (pseudo[-1] == UNLABELLED).all(), "a slice without scribbles has nothing to walk from"
    assert dice(pseudo[:-1], synthetic_case.truth[:-1], 1) > 0.9


def test_region_of_interest_is_the_foreground_box_plus_margin():
    labels = np.full((3, 50, 60), UNLABELLED, dtype=np.uint8)
    labels[1, 20:30, 25:35] = 1
    labels[0, 0, :] = 0
    assert region_of_interest(labels, margin_fraction=0.0, minimum_margin=5) == (slice(0, 3), slice(15, 35), slice(20, 40))
    assert region_of_interest(labels, margin_fraction=0.5, minimum_margin=0)[1] == slice(15, 35)
    assert region_of_interest(labels, margin_fraction=3.0, minimum_margin=0)[1] == slice(0, 50)


def test_progress_is_reported_and_cancel_stops_the_work(synthetic_case):
    image, scribbles = load(synthetic_case)
    seen = []
    segment_interactive(image, scribbles, FAST, Progress(lambda fraction, message: seen.append(fraction)))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    calls = []

    def cancel_after_five() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(CancelledError):
        segment_interactive(image, scribbles, FAST, Progress(None, cancel_after_five))
