"""An interrupted and resumed training run ends with the weights of an uninterrupted one.

Each run is cancelled through the Progress cancel hook partway, resumed from its last
checkpoint with ``resume=True``, and compared tensor by tensor with a run of the same
seed that was never interrupted: a resume that skips loading a network, an optimiser, the
critic or the random state leaves different weights. Tiny networks, tens of steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from weakseg.engine import load_checkpoint
from weakseg.errors import CancelledError
from weakseg.image_labels import slice_labels_from_mask
from weakseg.cases import list_cases
from weakseg.methods.registry import method_named
from weakseg.methods.scribble_training import train_cohort
from weakseg.methods.imagelabel import ImageLabelConfig
from weakseg.methods.imagelabel_pipeline import LabelledVolume, train_image_label_model
from weakseg.progress import Progress
from weakseg.unpaired_masks import list_mask_files

from learning_tasks import TWO_BLOBS, write_two_blob_cohort


def config_for_method(method: str, **changes):
    """The settings of the registered method ``method`` with ``changes``."""
    return method_named(method).make_settings(**changes)


TINY = dict(image_size=32, channels=(4, 8, 16), batch_size=4, checkpoint_every=5, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_two_blob_cohort(tmp_path_factory.mktemp("resume"), 4)


def _cancel_at(step_message: str) -> Progress:
    """A Progress whose cancel hook fires at the first report after ``step_message`` was seen."""
    seen = [False]

    def note(fraction: float, message: str) -> None:
        seen[0] = seen[0] or step_message in message

    return Progress(note, lambda: seen[0])


def _assert_same_tensors(first: dict, second: dict, what: str) -> None:
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{what}: {len(different)} of {len(first)} tensors differ after resuming, e.g. {different[:3]}"


def _train_cohort_interrupted_and_straight(folder: Path, tmp_path: Path, method: str,
                                           **changes) -> tuple[dict, dict]:
    cases = list_cases(folder, "1-3")
    masks = list_mask_files(folder, "4") if method == "maag" else None
    config = config_for_method(method, steps=14, **{**TINY, **changes})
    resumed, straight = tmp_path / "resumed.pt", tmp_path / "straight.pt"
    torch.manual_seed(0)
    with pytest.raises(CancelledError):
        train_cohort(cases, resumed, config, TWO_BLOBS, _cancel_at("step 8/14"), unpaired_masks=masks)
    assert load_checkpoint(resumed)["step"] == 5, "the cancel must fall between two checkpoints"
    torch.manual_seed(123)  # whatever the state of the process, resuming restores the run's own
    train_cohort(cases, resumed, config, TWO_BLOBS, resume=True, unpaired_masks=masks)
    torch.manual_seed(0)
    train_cohort(cases, straight, config, TWO_BLOBS, unpaired_masks=masks)
    return load_checkpoint(resumed), load_checkpoint(straight)


def test_cohort_resume_equals_an_uninterrupted_run(folder, tmp_path):
    resumed, straight = _train_cohort_interrupted_and_straight(folder, tmp_path, "cohort")
    assert resumed["step"] == straight["step"] == 14
    _assert_same_tensors(resumed["model"], straight["model"], "cohort network")


def test_cohort_resume_with_a_weight_average_restores_the_average(folder, tmp_path):
    resumed, straight = _train_cohort_interrupted_and_straight(folder, tmp_path, "cohort", ema_decay=0.9)
    assert resumed["metadata"]["ema"] == straight["metadata"]["ema"] == {"decay": 0.9, "updates": 14}
    _assert_same_tensors(resumed["model"], straight["model"], "weight average")
    _assert_same_tensors(resumed["extra"]["latest_model"], straight["extra"]["latest_model"], "latest weights")
    first = next(iter(straight["model"]))
    assert not torch.equal(straight["model"][first], straight["extra"]["latest_model"][first]), \
        "the saved model must be the average, not the last step's weights"


def test_maag_resume_equals_an_uninterrupted_run_including_the_critic(folder, tmp_path):
    resumed, straight = _train_cohort_interrupted_and_straight(folder, tmp_path, "maag")
    _assert_same_tensors(resumed["model"], straight["model"], "maag segmenter")
    _assert_same_tensors(resumed["extra"]["shape_prior"]["discriminator"],
                         straight["extra"]["shape_prior"]["discriminator"], "maag discriminator")


def _lesion_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(1, 6, 32, 32)`` noise with a bright disc on slices 2-3, and its mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:32, :32]
    mask = np.zeros((6, 32, 32), np.uint8)
    mask[2:4] = (rows - 16) ** 2 + (cols - 9) ** 2 <= 25
    return (rng.normal(0.0, 0.3, mask.shape) + 2.0 * mask)[None].astype(np.float32), mask


def test_image_label_resume_equals_an_uninterrupted_run(tmp_path):
    classes = ["background", "lesion"]
    volumes = []
    for seed in range(2):
        image, mask = _lesion_volume(seed)
        volumes.append(LabelledVolume(f"v{seed}", image, slice_labels_from_mask(mask, classes)))
    config = ImageLabelConfig(image_size=32, classifier_channels=(4, 8, 8, 8), segmenter_channels=(4, 8, 8),
                              classifier_steps=6, rounds=2, round_steps=6, batch_size=4, superpixels=20, crf=False)
    resumed, straight = tmp_path / "resumed.pt", tmp_path / "straight.pt"
    with pytest.raises(CancelledError):
        train_image_label_model(volumes, classes, config, _cancel_at("round 2/2: training"), out_path=resumed)
    assert load_checkpoint(resumed)["metadata"]["stages_done"] == 2, "the cancel must fall inside round 2"
    torch.manual_seed(123)
    train_image_label_model(volumes, classes, config, out_path=resumed, resume=True)
    train_image_label_model(volumes, classes, config, out_path=straight)
    _assert_same_tensors(load_checkpoint(resumed)["model"], load_checkpoint(straight)["model"],
                         "image-label classifier and segmenter")
