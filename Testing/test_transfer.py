"""Method transfer: source masks + target image-level labels (and scribbles), on tiny synthetic domains."""

from __future__ import annotations

import sys
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from synthetic_data import make_blob_volume, write_volume
from weakseg.contract import UNLABELLED
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import read_image_labels, slice_labels_from_mask, write_image_labels
from weakseg.methods.transfer import TransferConfig
from weakseg.methods.transfer_alignment import CentroidAlignment, OutputSpaceCritic, probability_pyramid
from weakseg.methods.transfer_data import build_arrays
from weakseg.methods.transfer_training import (
    TransferArrays,
    admitted_share,
    load_arrays,
    round_starts,
    save_arrays,
    target_pseudo_labels,
    train_transfer_arrays,
)
from weakseg.methods.pseudo_labels import PseudoLabelParams

CLASSES = ["background", "bright", "dim"]
OBLIQUE = (0.6280, 0.5065, -0.5908, 0.7286, -0.1160, 0.6751, -0.2734, 0.8544, 0.4419)


def _target_volume(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blob volume in another "sequence": int16, other intensities, contrast and noise, same structures."""
    _, truth, scribbles = make_blob_volume(seed)
    rng = np.random.default_rng(100 + seed)
    intensity = np.choose(truth, [300.0, 1400.0, 600.0]) + rng.normal(0, 150.0, truth.shape)
    return intensity.astype(np.int16), truth, scribbles


def _oblique(path: Path, array: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.73, 0.73, 5.0))
    image.SetOrigin((12.5, -80.0, 33.0))
    image.SetDirection(OBLIQUE)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def domains(tmp_path: Path) -> dict:
    """A source folder with full masks, a target folder with scribbles, image labels from the scribbles."""
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    for index in range(2):
        intensity, truth, _ = make_blob_volume(index)
        write_volume(intensity, source / f"src{index}_image.nii.gz")
        write_volume(truth, source / f"src{index}_label.nii.gz")
    labels = {}
    for index in range(2):
        intensity, truth, scribbles = _target_volume(index)
        _oblique(target / f"tgt{index}_image.nii.gz", intensity)
        _oblique(target / f"tgt{index}_scribble.nii.gz", scribbles)
        _oblique(target / f"tgt{index}_label.nii.gz", truth)
        labels[f"tgt{index}"] = slice_labels_from_mask(scribbles, CLASSES)
    csv_path = tmp_path / "labels.csv"
    write_image_labels(csv_path, labels)
    return {"source": source, "target": target, "csv": csv_path, "tmp": tmp_path}


def _small(**changes) -> TransferConfig:
    values = dict(image_size=32, channels=(4, 8, 16), steps=12, batch_size=4, rounds=2, checkpoint_every=5)
    values.update(changes)
    return TransferConfig(**values)


def test_image_label_csv_written_from_scribbles_reads_back_per_slice(domains):
    labels = read_image_labels(domains["csv"], CLASSES)
    per_slice = labels["tgt0"].per_slice(4)
    # Every slice but the last carries strokes of both classes; the last has none: healthy by this rule.
    assert per_slice[:3] == [frozenset({"bright", "dim"})] * 3
    assert per_slice[3] == frozenset()


def test_arrays_from_folders_and_npz_round_trip(domains):
    arrays = build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)
    assert arrays.source_images.shape == (8, 1, 32, 32) and arrays.source_masks.shape == (8, 32, 32)
    assert arrays.target_images.shape == (8, 1, 32, 32)
    assert arrays.target_present[:3].all() and not arrays.target_present[3].any()
    assert arrays.target_scribbles is not None and (arrays.target_scribbles != UNLABELLED).any()
    path = domains["tmp"] / "arrays.npz"
    save_arrays(path, arrays, CLASSES)
    loaded, names = load_arrays(path)
    assert names == CLASSES and loaded.target_cases == ["tgt0", "tgt1"]
    assert torch.equal(loaded.source_masks, arrays.source_masks)
    assert (loaded.target_images - arrays.target_images).abs().max() < 0.03  # uint8 quantisation step
    assert load_arrays(path, with_scribbles=False)[0].target_scribbles is None


def test_source_without_masks_is_refused_naming_the_case(domains):
    (domains["source"] / "src1_label.nii.gz").unlink()
    with pytest.raises(WeakSegInputError, match="src1"):
        build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)


def test_pseudo_labels_keep_only_the_classes_a_slice_shows_and_admit_the_surest_first():
    probabilities = torch.zeros(3, 3, 8, 8)
    probabilities[:, 0] = 0.2
    probabilities[:, 1, :, :4] = 0.7  # left half "bright"
    probabilities[:, 2, :, 4:] = 0.7  # right half "dim"
    probabilities[2, :, :, :] = 1 / 3  # an unsure slice
    arrays = TransferArrays(
        source_images=torch.zeros(1, 1, 8, 8), source_masks=torch.zeros(1, 8, 8, dtype=torch.int64),
        target_images=torch.rand(3, 1, 8, 8), target_present=torch.tensor([[True, False], [True, True], [True, True]]),
        target_labelled=torch.tensor([True, True, True]))
    params = PseudoLabelParams(0.5, 1.0, 1.0, 0)
    labels = target_pseudo_labels(probabilities, arrays, params, share=2 / 3)
    assert not (labels[0] == 2).any() and (labels[0][:, :4] == 1).all()  # slice 0 does not show "dim"
    assert (labels[1][:, 4:] == 2).all()
    assert (labels[2] == UNLABELLED).all()  # the least confident slice waits for a later round


def test_round_schedule_admits_more_slices_each_round():
    config = TransferConfig(steps=100, warmup=0.2, rounds=3, first_round_share=0.4)
    assert round_starts(config) == [20, 47, 73]
    assert [admitted_share(config, index) for index in range(3)] == pytest.approx([0.4, 0.7, 1.0])


def test_centroids_accumulate_over_batches_and_their_distance_pulls_the_domains_together():
    alignment = CentroidAlignment(num_classes=2, feature_count=2, momentum=0.5, device=torch.device("cpu"))
    source_features = torch.zeros(1, 2, 2, 2)
    source_features[0, :, 0] = 1.0  # class 1 rows at (1, 1)
    labels = torch.tensor([[[1, 1], [0, 0]]])
    target_features = (source_features + 2.0).requires_grad_(True)
    loss = alignment.loss(source_features, labels, target_features, labels)
    assert loss.item() == pytest.approx(4.0)
    loss.backward()
    assert target_features.grad.abs().sum() > 0
    # A batch without class 1 on the target side keeps its accumulated centroid.
    alignment.loss(source_features, labels, target_features.detach(), torch.zeros_like(labels))
    assert torch.allclose(alignment.centroids[1, 1], torch.tensor([3.0, 3.0]))


def test_output_space_critic_learns_to_tell_the_domains_apart():
    torch.manual_seed(0)
    critic = OutputSpaceCritic(num_classes=2, weight=1.0, device=torch.device("cpu"), width=TransferConfig().critic_width)
    source = torch.zeros(4, 2, 16, 16)
    source[:, 1, 4:12, 4:12] = 6.0  # a square
    target = torch.zeros(4, 2, 16, 16)
    target[:, 1] = 6.0  # everything foreground
    for step in range(60):
        critic.train_critic(source, target, step, 1000)
    with torch.no_grad():
        scores = [critic.discriminator(probability_pyramid(torch.softmax(maps, 1))).mean().item()
                  for maps in (source, target)]
    assert scores[0] > scores[1] + 0.5, scores  # source maps score "source" (1), target maps "target" (0)
    assert critic.segmenter_loss(target).item() > critic.segmenter_loss(source).item()


def test_training_writes_a_model_that_predict_applies_with_oblique_geometry_kept(domains):
    from weakseg.apply import load_model, predict_image
    from weakseg.io import read_image

    arrays = build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)
    model_path = domains["tmp"] / "transfer.pt"
    train_transfer_arrays(arrays, CLASSES, model_path, _small(superpixels=20), "cpu")
    model = load_model(model_path)
    assert model.spec.name == "transfer" and model.class_names == CLASSES
    image = read_image(domains["target"] / "tgt0_image.nii.gz")
    labels, probabilities = predict_image(model, image)
    assert labels.shape == image.shape_zyx and probabilities.shape == (3,) + image.shape_zyx
    # Resuming continues from the stored step; the same step count is refused.
    with pytest.raises(WeakSegInputError, match="already trained"):
        train_transfer_arrays(arrays, CLASSES, model_path, _small(), "cpu", resume=True)
    with pytest.raises(WeakSegInputError, match="critic_width"):
        train_transfer_arrays(arrays, CLASSES, model_path, _small(steps=15, critic_width=8), "cpu", resume=True)
    train_transfer_arrays(arrays, CLASSES, model_path, _small(steps=15), "cpu", resume=True)
    stored = torch.load(model_path, weights_only=True)
    assert stored["step"] == 15
    # The stored critic has the configured width: its finest block's first convolution gives critic_width maps.
    critic_weights = stored["extra"]["critic"]["discriminator"]
    assert critic_weights["blocks.0.0.parametrizations.weight.original"].shape[0] == TransferConfig().critic_width
    # segment --model: the transfer model adapts to one volume's scribbles; the output keeps the oblique grid.
    from weakseg.cli import main

    out = domains["tmp"] / "adapted.nii.gz"
    assert main(["segment", str(domains["target"] / "tgt0_image.nii.gz"), "--scribbles",
                 str(domains["target"] / "tgt0_scribble.nii.gz"), "--model", str(model_path), "--steps", "3",
                 "--classes", ",".join(CLASSES), "--out", str(out), "--progress", "none"]) == 0
    result, reference = sitk.ReadImage(str(out)), image.reference
    assert np.allclose(result.GetDirection(), reference.GetDirection()) and result.GetSize() == reference.GetSize()


def test_a_file_from_before_the_critic_width_setting_resumes_with_the_width_it_was_trained_with(domains):
    arrays = build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)
    model_path = domains["tmp"] / "former.pt"
    train_transfer_arrays(arrays, CLASSES, model_path, _small(critic_width=32), "cpu")
    stored = torch.load(model_path, weights_only=True)
    del stored["metadata"]["config"]["critic_width"]  # as written before the setting existed
    torch.save(stored, model_path)
    with pytest.raises(WeakSegInputError, match="critic_width 32 in the model, 16 now"):
        train_transfer_arrays(arrays, CLASSES, model_path, _small(steps=15), "cpu", resume=True)
    train_transfer_arrays(arrays, CLASSES, model_path, _small(steps=15, critic_width=32), "cpu", resume=True)
    assert torch.load(model_path, weights_only=True)["step"] == 15


def test_the_model_file_holds_the_weight_average_and_a_resumed_run_continues_it(domains):
    arrays = build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)
    model_path = domains["tmp"] / "averaged.pt"
    train_transfer_arrays(arrays, CLASSES, model_path, _small(ema_decay=0.9), "cpu")
    stored = torch.load(model_path, weights_only=True)
    assert stored["metadata"]["ema"] == {"decay": 0.9, "updates": 12}
    latest = stored["extra"]["latest_model"]
    assert any(not torch.equal(stored["model"][name], latest[name]) for name in latest if latest[name].is_floating_point())
    train_transfer_arrays(arrays, CLASSES, model_path, _small(ema_decay=0.9, steps=15), "cpu", resume=True)
    assert torch.load(model_path, weights_only=True)["metadata"]["ema"]["updates"] == 15
    plain = domains["tmp"] / "plain.pt"
    train_transfer_arrays(arrays, CLASSES, plain, _small(ema_decay=0.0), "cpu")
    stored = torch.load(plain, weights_only=True)
    assert "ema" not in stored["metadata"] and "latest_model" not in (stored["extra"] or {})


def test_every_part_on_with_scribbles_segments_the_target_domain(domains):
    """Source masks + target image labels and scribbles, the three parts on: the target volumes are segmented."""
    from weakseg.apply import load_model
    from weakseg.io import read_image
    from weakseg.methods.scribble_unet import predict_volume
    from weakseg.metrics import dice_per_class

    arrays = build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)
    model_path = domains["tmp"] / "full.pt"
    config = _small(channels=(8, 16, 32), steps=150, batch_size=8, learning_rate=3e-3)
    train_transfer_arrays(arrays, CLASSES, model_path, config, "cpu")
    model = load_model(model_path).model
    for index in range(2):
        predicted = predict_volume(model, read_image(domains["target"] / f"tgt{index}_image.nii.gz"))[0]
        dice = dice_per_class(predicted, _target_volume(index)[1], 3)
        # Seeds 0-3 of this 150-step run give 0.72-0.95 for the weaker class; chance is about 0.1.
        assert dice[1:].min() > 0.7, dice


def test_command_line_trains_and_predicts_and_refuses_missing_inputs(domains):
    env_python = [sys.executable, "-m", "weakseg"]
    out = domains["tmp"] / "cli.pt"
    base = env_python + ["train", str(domains["target"]), "--method", "transfer", "--classes", ",".join(CLASSES),
                         "--image-size", "32", "--channels", "4,8,16", "--steps", "6", "--batch-size", "2",
                         "--progress", "none", "--out", str(out)]
    missing = subprocess.run(base + ["--image-labels", str(domains["csv"])], capture_output=True, text=True)
    assert missing.returncode == 2 and "--source" in missing.stderr
    wrong = subprocess.run(env_python + ["train", str(domains["target"]), "--method", "cohort", "--source",
                                         str(domains["source"]), "--out", str(out)], capture_output=True, text=True)
    assert wrong.returncode == 2 and "transfer" in wrong.stderr
    done = subprocess.run(base + ["--source", str(domains["source"]), "--image-labels", str(domains["csv"]),
                                  "--ignore-scribbles", "--max-scale", "0.2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    metadata = torch.load(out, weights_only=True)["metadata"]
    assert metadata["target_scribbles"] is False and metadata["config"]["max_scale"] == 0.2
    predicted = subprocess.run(env_python + ["predict", str(out), str(domains["target"] / "tgt1_image.nii.gz"),
                                             "--out", str(domains["tmp"] / "pred"), "--format", ".nii.gz",
                                             "--progress", "none"], capture_output=True, text=True)
    assert predicted.returncode == 0, predicted.stderr
    result = sitk.ReadImage(str(domains["tmp"] / "pred" / "tgt1_image.nii.gz"))
    reference = sitk.ReadImage(str(domains["target"] / "tgt1_image.nii.gz"))
    assert np.allclose(result.GetDirection(), reference.GetDirection())
    assert np.allclose(result.GetSpacing(), reference.GetSpacing()) and np.allclose(result.GetOrigin(), reference.GetOrigin())


def test_bench_trains_rows_derives_image_labels_from_scribbles_and_scores_dice_and_hd95(domains):
    from weakseg.cli import main

    out = domains["tmp"] / "bench"
    arguments = ["bench", "transfer", str(domains["source"]), str(domains["target"]), "--classes", ",".join(CLASSES),
                 "--train-split", "tgt0", "--test-split", "tgt1", "--methods", "source-only,transfer+scribbles",
                 "--steps", "4", "--overlays", "1", "--device", "cpu", "--progress", "none", "--out", str(out)]
    assert main(arguments + ["--methods", "nonsense"]) == 2
    assert main(arguments) == 0
    labels = read_image_labels(out / "target_image_labels.csv", CLASSES)
    assert list(labels) == ["tgt0"]  # only the training case; the test case's scribbles are not read
    rows = (out / "cases.csv").read_text().splitlines()
    assert rows[0] == "case,method,seconds,dice_bright,hd95_bright,dice_dim,hd95_dim"
    assert [row.split(",")[:2] for row in rows[1:]] == [["tgt1", "source-only"], ["tgt1", "source-only (raw)"],
                                                         ["tgt1", "transfer+scribbles"],
                                                         ["tgt1", "transfer+scribbles (raw)"]]
    assert (out / "overlay_tgt1_transfer_scribbles.png").exists()
    assert (out / "overlay_tgt1_transfer_scribbles-raw.png").exists()
    assert torch.load(out / "source-only.pt", weights_only=True)["metadata"]["config"]["centroid_weight"] == 0.0


def test_seed_script_trains_each_run_with_the_settings_it_is_given(domains):
    arrays = build_arrays(str(domains["source"]), None, str(domains["target"]), str(domains["csv"]), CLASSES, 32)
    save_arrays(domains["tmp"] / "arrays.npz", arrays, CLASSES)
    script = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "transfer_seeds.py"
    out = domains["tmp"] / "seeds"
    result = subprocess.run([sys.executable, str(script), str(domains["tmp"] / "arrays.npz"), str(out), "1:4",
                             "--steps", "2", "--ignore-scribbles", "--set", "image_size=32", "--set", "channels=4,8,16",
                             "--set", "batch_size=2", "--set", "max_scale=0.2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    metadata = torch.load(out / "w4-s1.pt", weights_only=True)["metadata"]
    assert metadata["config"]["max_scale"] == 0.2 and metadata["config"]["seed"] == 1
    assert metadata["config"]["critic_width"] == 4 and metadata["target_scribbles"] is False
    assert metadata["config"]["ignore_scribbles"] is True  # recorded as weakseg train --ignore-scribbles records it
    refused = subprocess.run([sys.executable, str(script), "a.npz", str(out), "0:4", "--set", "no_such=1"],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "no_such" in refused.stderr
