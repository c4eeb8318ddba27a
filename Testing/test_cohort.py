"""Cohort mode (weakseg.methods.cohort) on tiny synthetic cohorts made here.

Volumes of 3x32x32 hold two blob classes (a bright disk, a dark square) on noise, with
short scribbles in each blob and along the border for the background. Networks are tiny
(image size 32, 4-16 channels) so the whole file runs in seconds on one CPU core.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from learning_tasks import two_blob_case
from weakseg.engine import save_checkpoint
from weakseg.errors import CancelledError, WeakSegInputError
from weakseg.io import labels_to_image, read_image
from weakseg.cases import list_cases, parse_split
from weakseg.methods.scribble_settings import CohortConfig
from weakseg.methods.scribble_training import train_cohort
from weakseg.methods.scribble_unet import adapt_to_scribbles, load_cohort_model, predict_volume
from weakseg.data import outside_scribbles as _outside_scribbles
from weakseg.models import UNet2D
from weakseg.progress import Progress
from weakseg.weak_labels import UNLABELLED, Scribbles, load_scribbles

CLASSES = ["background", "disk", "square"]
TINY = dict(image_size=32, channels=(4, 8, 16), batch_size=6, learning_rate=5e-3, checkpoint_every=5, seed=1)


def write_volume(array: np.ndarray, path: Path, spacing=(1.5, 1.5, 6.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 2.0))
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A folder of 4 training cases (case001-004) and one held-out case (case005, 28x40)."""
    folder = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    for number in range(1, 6):
        shape = (3, 28, 40) if number == 5 else (3, 32, 32)
        image, label, scribbles = two_blob_case(rng, shape)
        write_volume(image, folder / f"case{number:03d}_image.nii.gz")
        write_volume(label, folder / f"case{number:03d}_label.nii.gz")
        write_volume(scribbles, folder / f"case{number:03d}_scribble.nrrd")
    return folder


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    """A model trained for 60 steps on case001-004, with the losses it reported."""
    path = tmp_path_factory.mktemp("model") / "cohort.pt"
    losses = []
    progress = Progress(lambda fraction, message: "loss" in message and losses.append(float(message.split()[-1])))
    config = CohortConfig(steps=60, **TINY)
    train_cohort(list_cases(cohort, "1-4"), path, config, CLASSES, progress)
    return path, losses


def dice(prediction, truth, code):
    return 2 * np.sum((prediction == code) & (truth == code)) / max(1, np.sum(prediction == code) + np.sum(truth == code))


# ----------------------------------------------------------------------------- cases


def test_parse_split_ranges_and_prefixes():
    selected = parse_split("001-060")
    assert selected("patient001_frame01") and selected("patient060_frame12")
    assert not selected("patient061_frame01") and not selected("nodigits")
    either = parse_split("patient061_frame01, 70")
    assert either("patient061_frame01") and either("patient070_frame09")
    assert not either("patient061_frame12")
    assert parse_split(None)("anything") and parse_split("")("anything")
    with pytest.raises(WeakSegInputError, match="starts after"):
        parse_split("060-001")
    with pytest.raises(WeakSegInputError, match="empty item"):
        parse_split("001-010,,x")


def test_list_cases_finds_files_and_split(cohort):
    cases = list_cases(cohort)
    assert [case.name for case in cases] == [f"case{n:03d}" for n in range(1, 6)]
    assert cases[0].scribble_path.endswith("case001_scribble.nrrd")
    assert cases[0].label_path.endswith("case001_label.nii.gz")
    assert [case.name for case in list_cases(cohort, "2-3")] == ["case002", "case003"]
    assert [case.name for case in list_cases(cohort, "case005")] == ["case005"]
    with pytest.raises(WeakSegInputError, match="selects none"):
        list_cases(cohort, "100-200")


def test_list_cases_errors_name_the_folder(tmp_path):
    with pytest.raises(WeakSegInputError, match="no images found"):
        list_cases(tmp_path)
    write_volume(np.ones((2, 8, 8), np.float32), tmp_path / "a_image.nii.gz")
    with pytest.raises(WeakSegInputError, match=re.escape(str(tmp_path)) + ".*no scribbles found"):
        list_cases(tmp_path)
    assert list_cases(tmp_path, require_scribbles=False)[0].scribble_path is None
    write_volume(np.ones((2, 8, 8), np.uint8), tmp_path / "b_image.nii.gz")
    write_volume(np.zeros((2, 8, 8), np.uint8), tmp_path / "b_scribble.nii.gz")
    with pytest.raises(WeakSegInputError, match="1 case.*no <case>_scribble.*a"):
        list_cases(tmp_path)
    with pytest.raises(WeakSegInputError, match="no such folder"):
        list_cases(tmp_path / "missing")


# ----------------------------------------------------------------------------- training


def test_training_reduces_loss_and_segments_held_out_case(cohort, trained):
    path, losses = trained
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    model = load_cohort_model(path)
    held_out = list_cases(cohort, "case005")[0]
    image = read_image(held_out.image_path)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(held_out.label_path))
    labels, _ = predict_volume(model, image)
    # chance level for a blob covering ~5% of the slice is a Dice of ~0.05-0.1
    assert dice(labels, truth, 1) > 0.5
    assert dice(labels, truth, 2) > 0.5


def test_checkpoint_is_weights_only_with_metadata(trained):
    path, _ = trained
    payload = torch.load(path, weights_only=True)
    metadata = payload["metadata"]
    assert payload["step"] == 60 and metadata["step"] == 60
    assert metadata["class_names"] == CLASSES
    assert metadata["image_size"] == 32
    assert metadata["config"]["channels"] == [4, 8, 16] and metadata["config"]["steps"] == 60
    assert metadata["model_config"] == {"architecture": "unet2d", "in_channels": 1, "num_classes": 3, "channels": [4, 8, 16],
                                        "dropout": 0.1}
    assert "percentile" in metadata["normalisation"]
    assert payload["optimizer"] is not None
    model = load_cohort_model(path)
    assert model.class_names == CLASSES and model.step == 60 and model.image_size == 32
    # The disk and the square lie apart: one connected piece of both would lose one of them.
    kept = metadata["components"]["scribbled_voxels_kept"]
    assert metadata["components"]["one_piece"] is False and not model.foreground_one_piece
    assert 0 < kept["one_piece"] < kept["per_class"]


def test_interrupted_run_resumes_to_the_same_step_count(cohort, tmp_path):
    cases = list_cases(cohort, "1-4")
    config = CohortConfig(steps=20, **TINY)
    interrupted = tmp_path / "interrupted.pt"
    cancel_now = [False]

    def stop_after_step_12(fraction, message):
        if "step 12/" in message:
            cancel_now[0] = True

    with pytest.raises(CancelledError):
        train_cohort(cases, interrupted, config, CLASSES, Progress(stop_after_step_12, lambda: cancel_now[0]))
    assert torch.load(interrupted, weights_only=True)["step"] == 10  # last checkpoint before the cancel
    steps_seen = []
    resumed = Progress(lambda fraction, message: "step" in message and steps_seen.append(message.split()[2].rstrip(",")))
    train_cohort(cases, interrupted, config, CLASSES, resumed, resume=True)
    assert steps_seen[0] == "11/20" and steps_seen[-1] == "20/20"
    straight = tmp_path / "straight.pt"
    train_cohort(cases, straight, config, CLASSES)
    assert torch.load(interrupted, weights_only=True)["step"] == torch.load(straight, weights_only=True)["step"] == 20
    # train to N, then ask for 2N
    more = CohortConfig(steps=40, **TINY)
    train_cohort(cases, straight, more, CLASSES, resume=True)
    assert load_cohort_model(straight).step == 40
    with pytest.raises(WeakSegInputError, match="already trained for 40 steps"):
        train_cohort(cases, straight, more, CLASSES, resume=True)


def test_resume_refuses_other_classes_settings_or_missing_file(cohort, trained, tmp_path):
    path, _ = trained
    cases = list_cases(cohort, "1-4")
    with pytest.raises(WeakSegInputError, match="classes"):
        train_cohort(cases, path, CohortConfig(steps=80, **TINY), ["background", "square", "disk"], resume=True)
    other_size = CohortConfig(steps=80, **{**TINY, "image_size": 64})
    with pytest.raises(WeakSegInputError, match="image_size"):
        train_cohort(cases, path, other_size, CLASSES, resume=True)
    with pytest.raises(WeakSegInputError, match="no such model file"):
        train_cohort(cases, tmp_path / "none.pt", CohortConfig(steps=80, **TINY), CLASSES, resume=True)


def test_scribble_codes_beyond_the_classes_are_refused(cohort, tmp_path):
    with pytest.raises(WeakSegInputError, match="case001_scribble"):
        train_cohort(list_cases(cohort, "1"), tmp_path / "m.pt", CohortConfig(steps=2, **TINY), ["background", "disk"])


def test_far_from_the_scribbles_is_background():
    labels = torch.full((2, 40, 40), UNLABELLED)
    labels[0, 15, 15:25] = 1
    labels[0, 25, 15:25] = 0
    far = _outside_scribbles(labels, margin=0.1)  # 4 px beyond the hull
    assert not far[1].any(), "a slice without scribbles gets no prior"
    assert not far[0, 15:26, 15:25].any(), "the hull of the scribbles is never background"
    assert not far[0, 12, 20] and far[0, 10, 20], "the margin is 4 px"
    assert far[0, 0, 0] and far[0, -1, -1]


# ----------------------------------------------------------------------------- prediction


def test_predict_volume_shapes_and_geometry(cohort, trained):
    model = load_cohort_model(trained[0])
    image = read_image(list_cases(cohort, "case005")[0].image_path)
    labels, probabilities = predict_volume(model, image, largest_component=False)
    assert labels.shape == (3, 28, 40) and labels.dtype == np.uint8
    assert probabilities.shape == (3, 3, 28, 40) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=0))
    written = labels_to_image(labels, image.reference)
    assert written.GetSize() == image.reference.GetSize()
    assert written.GetSpacing() == image.reference.GetSpacing()
    assert written.GetOrigin() == image.reference.GetOrigin()
    components, _ = predict_volume(model, image, largest_component=True)
    assert set(np.unique(components)) <= set(np.unique(labels)) | {0}


def test_predict_refuses_other_channel_count(trained, tmp_path):
    model = load_cohort_model(trained[0])
    rgb = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.png"))
    with pytest.raises(WeakSegInputError, match="rgb.png.*3 channel"):
        predict_volume(model, read_image(tmp_path / "rgb.png"))


def test_load_refuses_other_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(WeakSegInputError, match="junk.pt"):
        load_cohort_model(tmp_path / "junk.pt")
    other = tmp_path / "other.pt"
    save_checkpoint(other, UNet2D(1, 2, (4, 8)), None, 1, {"method": "something-else"})
    with pytest.raises(WeakSegInputError, match="not a WeakSeg cohort model"):
        load_cohort_model(other)


# ----------------------------------------------------------------------------- adaptation


def test_adapt_to_scribbles_maps_classes_by_name(cohort, trained):
    model = load_cohort_model(trained[0])
    case = list_cases(cohort, "case005")[0]
    image = read_image(case.image_path)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(case.label_path))
    # the user's class order differs from the model's: square=1, disk=2
    scribbles = load_scribbles(case.scribble_path, image, CLASSES)
    swapped = scribbles.labels.copy()
    swapped[scribbles.labels == 1], swapped[scribbles.labels == 2] = 2, 1
    user = Scribbles(swapped, ["Background", "Square", "Disk"], scribbles.path)
    before = model.network.state_dict()["head.weight"].clone()
    labels, probabilities = adapt_to_scribbles(model, image, user, steps=10)
    assert labels.shape == (3, 28, 40) and probabilities.shape == (3, 3, 28, 40)
    assert dice(labels, truth, 1) > 0.5 and dice(labels, truth, 2) > 0.5  # model codes: disk=1, square=2
    assert torch.equal(model.network.state_dict()["head.weight"], before), "the cohort model must stay unchanged"


def test_adapt_refuses_unknown_class_names(cohort, trained):
    model = load_cohort_model(trained[0])
    case = list_cases(cohort, "case005")[0]
    image = read_image(case.image_path)
    scribbles = load_scribbles(case.scribble_path, image, ["background", "disk", "triangle"])
    with pytest.raises(WeakSegInputError, match="triangle.*not among the model's classes"):
        adapt_to_scribbles(model, image, scribbles, steps=1)


# ----------------------------------------------------------------------------- 2D RGB


def test_rgb_2d_cohort(tmp_path):
    rng = np.random.default_rng(5)
    for number in range(1, 4):
        image, _, scribbles = two_blob_case(rng, (1, 32, 32))
        grey = np.clip(image[0] * 60 + 120, 0, 255)
        rgb = np.stack([grey, 255 - grey, grey / 2], axis=-1).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / f"p{number}_image.png"))
        sitk.WriteImage(sitk.GetImageFromArray(scribbles[0]), str(tmp_path / f"p{number}_scribble.png"))
    path = tmp_path / "rgb.pt"
    train_cohort(list_cases(tmp_path, "1-2"), path, CohortConfig(steps=3, **TINY), CLASSES)
    model = load_cohort_model(path)
    assert model.in_channels == 3
    case = list_cases(tmp_path, "3")[0]
    image = read_image(case.image_path)
    labels, probabilities = predict_volume(model, image)
    assert labels.shape == (1, 32, 32) and probabilities.shape == (3, 1, 32, 32)
    labels, _ = adapt_to_scribbles(model, image, load_scribbles(case.scribble_path, image, CLASSES), steps=2)
    assert labels.shape == (1, 32, 32)
    assert labels_to_image(labels, image.reference).GetDimension() == 2
