"""Smoke tests of every method family on the real data in ``../shared/data`` (CI has it).

Each runs a method briefly on a small piece of real data (one ACDC volume, a few ACDC
volumes, a BraTS slab, the medimgseg ISIC pictures) and checks that it still reaches the Dice a measured run of this
code reached, less a margin: the measured value is in a comment beside each threshold.
They are not benchmarks (the README's tables are); they catch a method that stops learning
on real images while the synthetic tests still pass. Skipped when the data are absent.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from learning_tasks import dice
from weakseg.image_labels import slice_labels_from_mask
from weakseg.io import read_image, read_labelmap
from weakseg.apply import segment_image
from weakseg.cases import list_cases
from weakseg.methods.registry import method_named
from weakseg.methods.scribble_training import train_cohort
from weakseg.methods.scribble_unet import load_cohort_model, predict_volume
from weakseg.methods.imagelabel import ImageLabelConfig
from weakseg.methods.imagelabel_pipeline import LabelledVolume, segment_volume, train_image_label_model
from weakseg.weak_labels import load_scribbles


@contextmanager
def one_torch_thread():
    """Run the block on one torch thread (short real-data trainings depend on the order of float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def config_for_method(method: str, **changes):
    """The settings of the registered method ``method`` with ``changes``."""
    return method_named(method).make_settings(**changes)


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ACDC = DATA / "acdc"
BRATS = DATA / "brats"
ACDC_CLASSES = ["background", "RV", "Myo", "LV"]
VALIDATION = "patient061_frame01"

needs_acdc = pytest.mark.skipif(not ACDC.is_dir(), reason="../shared/data/acdc is not available")
needs_brats = pytest.mark.skipif(not BRATS.is_dir(), reason="../shared/data/brats is not available")


def _acdc_dice(labels: np.ndarray, case: str) -> list[float]:
    image = read_image(ACDC / f"{case}_image.nii.gz")
    truth = read_labelmap(ACDC / f"{case}_label.nii.gz", image.reference)
    return [round(dice(labels, truth, code), 3) for code in (1, 2, 3)]


@needs_acdc
def test_interactive_on_one_acdc_volume():
    image = read_image(ACDC / f"{VALIDATION}_image.nii.gz")
    scribbles = load_scribbles(ACDC / f"{VALIDATION}_scribble.nii.gz", image, ACDC_CLASSES)
    scores = _acdc_dice(segment_image(image, scribbles, "weakseg", steps=60, device_name="cpu"), VALIDATION)
    print("interactive RV, Myo, LV Dice", scores)
    # measured: RV 0.645, Myo 0.759, LV 0.926 (mean 0.777) with 60 steps; grow-cut reaches ~0.86/0.79/0.93 here
    assert np.mean(scores) > 0.7
    assert min(scores) > 0.5


@needs_acdc
def test_cohort_on_a_few_acdc_volumes_predicts_a_validation_volume(tmp_path):
    path = tmp_path / "cohort.pt"
    config = config_for_method("cohort", steps=200, image_size=64, channels=(8, 16, 32, 64), batch_size=8)
    torch.manual_seed(0)
    train_cohort(list_cases(ACDC, "1-3"), path, config, ACDC_CLASSES)
    labels, _ = predict_volume(load_cohort_model(path), read_image(ACDC / f"{VALIDATION}_image.nii.gz"))
    scores = _acdc_dice(labels, VALIDATION)
    print("cohort RV, Myo, LV Dice", scores)
    # measured: RV 0.000, Myo 0.625, LV 0.886 with the default weight average (0.633, 0.891 without
    # it); the RV is not learnt from 3 patients in 200 steps at 64 px
    assert scores[2] > 0.8 and scores[1] > 0.5


def _brats_slab(patient: str) -> tuple[np.ndarray, np.ndarray]:
    """Every fourth axial slice of z 40..147 of a BraTS FLAIR volume, and its whole-tumour mask."""
    flair = sitk.GetArrayFromImage(sitk.ReadImage(str(BRATS / f"brats_2013_{patient}_1_flair.nii.gz")))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(BRATS / f"brats_2013_{patient}_1_label.nii.gz")))
    rows = slice(40, 148, 4)
    return flair[rows][None].astype(np.float32), (label[rows] > 0).astype(np.uint8)


@needs_brats
def test_image_labels_on_brats_slabs():
    classes = ["background", "lesion"]
    volumes = []
    for patient in ("pat0005", "pat0006"):
        image, mask = _brats_slab(patient)
        volumes.append(LabelledVolume(patient, image, slice_labels_from_mask(mask, classes)))
    config = ImageLabelConfig(image_size=64, classifier_channels=(8, 16, 32), segmenter_channels=(8, 16, 32, 64),
                              classifier_steps=150, rounds=2, round_steps=100, batch_size=8, superpixels=100)
    # This small, short configuration depends on the order of float sums: trained with two torch
    # threads it scored 0.000 on this slab (the suite's one thread: 0.658), so the thread count is fixed here.
    with one_torch_thread():
        model = train_image_label_model(volumes, classes, config)
    image, mask = _brats_slab("pat0003")
    labels, _ = segment_volume(model, image, (4.0, 1.0, 1.0))
    score = dice(labels, mask, 1)
    print(f"image-label lesion Dice on the pat0003 slab {score:.3f}")
    assert score > 0.5  # measured: 0.658


ISIC_SAMPLES = DATA / "medimgseg" / "ISIC"


@pytest.mark.skipif(not ISIC_SAMPLES.is_dir(), reason="../shared/data/medimgseg is not available")
def test_cycle_classifier_finds_isic_lesions_on_cohort_intensities():
    """The lesion / healthy classifier of ``cycle`` on the 12 medimgseg ISIC training pictures:
    colour pictures are normalised by the cohort's statistics, and its CAM finds the moles."""
    from weakseg.bench.imagelabel import _medimgseg_splits
    from weakseg.methods.cycle import CycleSettings
    from weakseg.methods.cycle_training import train_cycle_model
    from weakseg.methods.imagelabel_baselines import cam_probabilities

    classes = ["background", "lesion"]
    train, test = _medimgseg_splits(str(ISIC_SAMPLES))["ISIC"]  # the bench's split: val + every other healthy picture
    volumes = [LabelledVolume(case.name, case.array, slice_labels_from_mask(case.truth, classes)) for case in train]
    settings = CycleSettings(image_size=96, gan_steps=1, segmenter_steps=1, crf=False)
    with one_torch_thread():
        model = train_cycle_model(volumes, classes, settings)
    assert model.intensities is not None
    scores = [dice(cam_probabilities(model, case.array).argmax(axis=0), case.truth, 1) for case in test if case.truth.any()]
    print(f"CAM Dice on the 8 ISIC test lesions {np.mean(scores):.3f}")
    assert np.mean(scores) > 0.5  # measured: 0.734; with normalisation="volume" (per picture): 0.016
