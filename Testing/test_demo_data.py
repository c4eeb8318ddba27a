"""The embedded demo case (weakseg.demo_data), built from the MNI template in the nilearn wheel.

Skipped when nilearn is not installed (it is the ``demo`` extra). The case is built
once per module: about a second.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import SimpleITK as sitk

from weakseg import demo_data
from weakseg.weak_labels import UNLABELLED

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nilearn") is None, reason="nilearn is not installed")


@pytest.fixture(scope="module")
def case():
    return demo_data.load_demo_case()


@pytest.fixture(scope="module")
def arrays(case):
    return tuple(sitk.GetArrayFromImage(image) for image in (case.image, case.truth, case.scribbles))


def test_all_three_images_share_one_grid(case):
    for other in (case.truth, case.scribbles):
        assert other.GetSize() == case.image.GetSize()
        assert other.GetSpacing() == pytest.approx(case.image.GetSpacing())
        assert other.GetOrigin() == pytest.approx(case.image.GetOrigin())
        assert other.GetDirection() == pytest.approx(case.image.GetDirection())


def test_geometry_is_the_template_geometry_at_2_mm(case):
    assert case.image.GetSpacing() == pytest.approx((2.0, 2.0, 2.0))
    assert case.image.GetDirection() == pytest.approx((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert case.image.GetDepth() == demo_data.SLAB_SLICES
    centre = case.image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in case.image.GetSize()])
    assert centre[2] == pytest.approx(demo_data.SLAB_CENTRE_MM, abs=2.0)
    assert abs(centre[0]) < 10 and abs(centre[1]) < 30


def test_image_truth_and_names(case, arrays):
    image, truth, _ = arrays
    assert image.dtype == np.float32 and truth.dtype == np.uint8
    assert float(image.max()) > float(image.min())
    assert case.class_names == ["background", "grey matter", "white matter"]
    fractions = [np.mean(truth == code) for code in range(3)]
    assert all(0.15 < fraction < 0.6 for fraction in fractions), fractions
    assert image[truth == 2].mean() > image[truth == 1].mean() > image[truth == 0].mean()
    assert "Fonov" in case.description


def test_scribbles_are_sparse_and_on_every_fourth_slice(arrays):
    _, _, scribbles = arrays
    labelled = scribbles != UNLABELLED
    assert 0.01 <= labelled.mean() <= 0.03
    scribbled_slices = [z for z in range(len(scribbles)) if labelled[z].any()]
    assert scribbled_slices == list(range(1, demo_data.SLAB_SLICES, demo_data.SCRIBBLE_EVERY))


def test_every_class_is_scribbled_on_every_scribbled_slice(arrays):
    _, _, scribbles = arrays
    for z in range(1, len(scribbles), demo_data.SCRIBBLE_EVERY):
        assert set(np.unique(scribbles[z])) == {0, 1, 2, UNLABELLED}


def test_scribbles_agree_with_truth(arrays):
    _, truth, scribbles = arrays
    labelled = scribbles != UNLABELLED
    np.testing.assert_array_equal(scribbles[labelled], truth[labelled])


def test_scribbles_are_deterministic(arrays):
    _, truth, scribbles = arrays
    np.testing.assert_array_equal(demo_data.synthetic_scribbles(truth), scribbles)
    assert not np.array_equal(demo_data.synthetic_scribbles(truth, seed=1), scribbles)


def test_truth_rule():
    grey = np.array([0.1, 0.3, 0.2, 0.6, 0.4])
    white = np.array([0.1, 0.3, 0.5, 0.3, 0.05])
    np.testing.assert_array_equal(demo_data.truth_from_probabilities(grey, white), [0, 1, 2, 1, 0])


def test_growcut_segments_the_demo_case(case, arrays):
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from weakseg.io import LoadedImage
    from weakseg.methods.growcut import segment_growcut
    from weakseg.weak_labels import Scribbles

    image, truth, scribbles = arrays
    loaded = LoadedImage(array=image[np.newaxis], reference=case.image, path="demo")
    result = segment_growcut(loaded, Scribbles(scribbles, case.class_names, "demo"))
    for code in (0, 1, 2):
        overlap = np.count_nonzero((result == code) & (truth == code))
        assert 2 * overlap / (np.count_nonzero(result == code) + np.count_nonzero(truth == code)) > 0.85


def test_missing_nilearn_says_how_to_install(monkeypatch):
    monkeypatch.setattr(demo_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'weakseg\[demo\]'"):
        demo_data.load_demo_case()
