"""Method ``cycle`` (CAM-guided lesion <-> healthy translation) on tiny synthetic data: a bright blob is the lesion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from weakseg.cli import main
from weakseg.data import (MedianScaling, cohort_intensities, is_colour_picture, normalise_intensity, normalise_with,
                          training_intensities)
from weakseg.engine import load_checkpoint
from weakseg.errors import CancelledError, WeakSegInputError
from weakseg.image_labels import slice_labels_from_mask
from weakseg.methods.cycle import CycleSettings
from weakseg.methods.cycle_game import classifier_input
from weakseg.methods.appearance import AppearanceParams
from weakseg.methods.cycle_model import image_slices, load_model, segment_array, translation_masks
from weakseg.methods.prediction_refinement import refine_prediction
from weakseg.methods.cycle_training import train_cycle_model
from weakseg.methods.imagelabel_pipeline import LabelledVolume, prepare_slices
from weakseg.metrics import dice_per_class
from weakseg.models.cycle_nets import GuidedGenerator
from weakseg.progress import Progress

CLASSES = ["background", "lesion"]
TINY = dict(image_size=32, classifier_channels=(4, 8, 8), generator_channels=(8, 8, 16), segmenter_channels=(8, 16, 16),
            classifier_steps=60, gan_steps=200, segmenter_steps=300, batch_size=8, cam_top_fraction=0.05)


def _blob_volume(seed: int, depth: int = 8, size: int = 32, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(C, Z, Y, X)`` noise with a bright disc at a random place on the middle slices, and its mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    mask = np.zeros((depth, size, size), dtype=np.uint8)
    for z in range(min(2, depth - 1), max(depth - 2, 1)):
        centre = size // 4 + int(rng.integers(0, size // 2))
        mask[z] = (rows - size // 2) ** 2 + (cols - centre) ** 2 <= (size // 6) ** 2
    tint = np.linspace(1.0, 2.0, channels)[:, None, None, None]
    image = rng.normal(0.0, 0.3, (channels, depth, size, size)) + tint * mask[None]
    return image.astype(np.float32), mask


def _volumes(count: int = 3, **shape) -> list[LabelledVolume]:
    volumes = []
    for seed in range(count):
        image, mask = _blob_volume(seed, **shape)
        volumes.append(LabelledVolume(f"v{seed}", image, slice_labels_from_mask(mask, CLASSES)))
    return volumes


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(dice_per_class(prediction, truth, 2)[1])


def test_generator_changes_nothing_where_the_guide_is_zero():
    torch.manual_seed(0)
    generator = GuidedGenerator(2, (4, 8))
    torch.nn.init.normal_(generator.network.head.weight)
    images = torch.randn(3, 2, 16, 16)
    guides = torch.zeros(3, 1, 16, 16)
    guides[:, :, 4:8, 4:8] = 1.0
    output = generator(images, guides)
    assert torch.equal(output[guides.expand_as(images) == 0], images[guides.expand_as(images) == 0])
    assert not torch.allclose(output[:, :, 4:8, 4:8], images[:, :, 4:8, 4:8])


def test_classifier_input_of_translated_images_matches_the_training_input():
    image, _ = _blob_volume(0)
    slices = prepare_slices(image, 32, mirror_excess=True)
    rebuilt = classifier_input(slices[:, :1], mirror_excess=True)
    assert rebuilt.shape == slices.shape
    assert torch.allclose(rebuilt, slices, atol=0.05)


def test_volumes_train_save_load_and_the_translation_finds_the_lesion(tmp_path):
    path = tmp_path / "cycle.pt"
    train_cycle_model(_volumes(), CLASSES, CycleSettings(**TINY), out_path=path)
    model = load_model(str(path))
    image, truth = _blob_volume(7)
    masks, healthy = translation_masks(model, image)
    labels, probabilities = segment_array(model, image)
    assert healthy.shape == image.shape and labels.shape == truth.shape
    assert np.allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)
    # the blob is what the lesion -> healthy translation removes, and the network learns those masks
    assert _dice(masks, truth) > 0.8
    assert _dice(labels, truth) > 0.8
    lesion = truth.reshape(truth.shape[0], -1).any(axis=1)
    blob_before, blob_after = normalise_intensity(image)[0][truth > 0].mean(), healthy[0][truth > 0].mean()
    assert blob_after < 0.5 * blob_before  # the healthy translation darkens the blob towards the background
    assert not masks[~lesion].any()
    # prediction = the network, then the appearance step and the CRF that imagelabel applies to its network
    _, alone = segment_array(model, image, appearance=False, crf=False)
    np.testing.assert_allclose(probabilities, refine_prediction(image, alone, (1.0, 1.0, 1.0), AppearanceParams(),
                                                                crf=True), atol=1e-6)


def test_without_cam_guidance_the_generators_may_change_everything_and_the_translation_still_finds_the_lesion(
        tmp_path):
    path = tmp_path / "unguided.pt"
    train_cycle_model(_volumes(), CLASSES, CycleSettings(**TINY, no_cam_guide=True), out_path=path)
    payload = torch.load(path, weights_only=True)
    assert payload["metadata"]["config"]["no_cam_guide"] is True
    assert torch.all(payload["extra"]["cams"] == 1)  # the guide maps the game was played with: everywhere
    model = load_model(str(path))
    image, truth = _blob_volume(7)
    masks, _ = translation_masks(model, image)
    assert _dice(masks, truth) > 0.7


def test_rgb_pictures_train_and_predict():
    volumes = _volumes(count=8, depth=1, channels=3)
    for index, volume in enumerate(volumes):  # every other picture healthy
        if index % 2:
            volume.array = np.random.default_rng(index).normal(0.0, 0.3, volume.array.shape).astype(np.float32)
            volume.slice_classes = [frozenset()]
    model = train_cycle_model(volumes, CLASSES, CycleSettings(**{**TINY, "gan_steps": 20, "segmenter_steps": 20,
                                                                   "classifier_steps": 10, "crf": False}))
    image, _ = _blob_volume(11, depth=1, channels=3)
    labels, probabilities = segment_array(model, image)
    assert labels.shape == (1, 32, 32) and probabilities.shape == (2, 1, 32, 32)
    assert translation_masks(model, image)[1].shape == (3, 1, 32, 32)


def _skin_picture(seed: int, lesion: bool, size: int = 32) -> np.ndarray:
    """An 8-bit-range RGB ``(3, 1, size, size)`` picture of light skin with faint texture, with or without a dark mole."""
    rng = np.random.default_rng(seed)
    picture = np.array([200.0, 170.0, 160.0])[:, None, None] + rng.normal(0.0, 4.0, (3, size, size))
    if lesion:
        rows, cols = np.mgrid[:size, :size]
        picture[:, (rows - size // 2) ** 2 + (cols - size // 2) ** 2 <= (size // 5) ** 2] = 70.0
    return picture[:, None].astype(np.float32)


def test_cohort_normalisation_keeps_the_contrast_between_pictures_that_a_per_image_z_score_erases():
    healthy, lesion = _skin_picture(0, False), _skin_picture(1, True)
    intensities = cohort_intensities([healthy, lesion])
    # alone, the faint skin texture is stretched to unit spread: healthy skin looks as varied as a mole on skin
    assert normalise_intensity(healthy).std() == pytest.approx(1.0, abs=0.01)
    assert normalise_with(healthy, None).tolist() == normalise_intensity(healthy).tolist()
    shared_healthy, shared_lesion = normalise_with(healthy, intensities), normalise_with(lesion, intensities)
    assert shared_healthy.std() < 0.2 < shared_lesion.std()
    assert abs(shared_healthy.mean() - shared_lesion[:, 0, 0, 0].mean()) < 0.2  # the same skin, the same values
    assert is_colour_picture(lesion)
    assert not is_colour_picture(np.repeat(lesion[:1], 3, axis=0))  # a grey image saved as RGB
    assert not is_colour_picture(lesion[:1])


def test_the_model_file_keeps_the_normalisation_it_trained_with_cohort_for_colour_pictures(tmp_path):
    volumes = [LabelledVolume(f"p{index}", _skin_picture(index, index % 2 == 0),
                              [frozenset({"lesion"}) if index % 2 == 0 else frozenset()]) for index in range(6)]
    colour = [volume.array for volume in volumes]
    grey = [array[:1] for array in colour]
    assert training_intensities(colour, "auto") == cohort_intensities(colour)
    assert training_intensities(grey, "auto") is None
    assert training_intensities(colour, "volume") is None
    assert training_intensities(grey, "cohort") == cohort_intensities(grey)
    path = tmp_path / "pictures.pt"
    quick = {**TINY, "gan_steps": 2, "segmenter_steps": 2, "classifier_steps": 2, "crf": False}
    train_cycle_model(volumes, CLASSES, CycleSettings(**quick), out_path=path)
    model = load_model(str(path))
    assert model.intensities == cohort_intensities([volume.array for volume in volumes])
    picture = _skin_picture(9, True)
    slices, _ = image_slices(model, picture)
    assert torch.equal(slices, prepare_slices(picture, 32, intensities=model.intensities))
    assert not torch.allclose(slices, prepare_slices(picture, 32))
    train_cycle_model(volumes, CLASSES, CycleSettings(**quick, normalisation="volume"), out_path=path)
    assert load_model(str(path)).intensities is None
    train_cycle_model(volumes, CLASSES, CycleSettings(**quick, normalisation="median"), out_path=path)
    model = load_model(str(path))
    assert model.intensities == MedianScaling() == training_intensities(colour, "median")
    assert torch.equal(image_slices(model, picture)[0], prepare_slices(picture, 32, intensities=MedianScaling()))


def test_an_interrupted_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    settings = CycleSettings(**{**TINY, "gan_steps": 30, "segmenter_steps": 20, "classifier_steps": 10,
                                "checkpoint_every": 10, "crf": False})
    volumes = _volumes(count=2)
    whole = tmp_path / "whole.pt"
    train_cycle_model(volumes, CLASSES, settings, out_path=whole)

    messages: list[str] = []
    stop_in_the_game = Progress(lambda fraction, message: messages.append(message),
                                lambda: any(message.startswith("training step 25/30") for message in messages))
    path = tmp_path / "cut.pt"
    with pytest.raises(CancelledError):
        train_cycle_model(volumes, CLASSES, settings, stop_in_the_game, out_path=path)
    stored = load_checkpoint(path)["metadata"]["state"]
    assert stored == {"stage": "gan", "step": 20}
    messages.clear()
    train_cycle_model(volumes, CLASSES, settings, Progress(lambda fraction, message: messages.append(message)),
                      out_path=path, resume=True)
    assert "training step 21/30" in " ".join(messages) and "training step 20/30" not in " ".join(messages)
    first, second = load_checkpoint(whole)["model"], load_checkpoint(path)["model"]
    assert all(torch.allclose(first[key].float(), second[key].float(), atol=1e-5) for key in first)
    with pytest.raises(WeakSegInputError, match="already complete"):
        train_cycle_model(volumes, CLASSES, settings, out_path=path, resume=True)
    with pytest.raises(WeakSegInputError, match=r"settings \['gan_steps'\] differ"):
        train_cycle_model(volumes, CLASSES, replace(settings, gan_steps=31), out_path=whole, resume=True)


def _write_labelled_folder(folder: Path) -> Path:
    folder.mkdir()
    rows = ["image,slices,label"]
    for seed, name in enumerate(["a", "b"]):
        image, mask = _blob_volume(seed)
        sitk.WriteImage(sitk.GetImageFromArray(image[0]), str(folder / f"{name}.nii.gz"))
        rows += [f"{name},{index}-{index},{'lesion' if mask[index].any() else 'healthy'}" for index in range(len(mask))]
    labels = folder / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels


def test_command_line_trains_and_predicts_and_refuses_bad_options(tmp_path, capsys):
    folder = tmp_path / "data"
    labels = _write_labelled_folder(folder)
    model = tmp_path / "cycle.pt"
    quick = ["--classifier-steps", "4", "--gan-steps", "4", "--steps", "4", "--image-size", "32", "--channels", "4,8",
             "--batch-size", "4", "--checkpoint-every", "2", "--progress", "none"]
    assert main(["train", str(folder), "--method", "cycle", "--image-labels", str(labels), "--out", str(model),
                 *quick]) == 0
    stored = load_checkpoint(model)["metadata"]
    assert stored["method"] == "cycle" and stored["config"]["gan_steps"] == 4 and stored["class_names"] == CLASSES
    out = tmp_path / "predicted"
    assert main(["predict", str(model), str(folder / "a.nii.gz"), "--out", str(out), "--format", ".nii.gz",
                 "--progress", "none"]) == 0
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "a.nii.gz")))
    assert predicted.shape == (8, 32, 32)
    capsys.readouterr()

    def refused(*arguments) -> str:
        assert main(["train", str(folder), "--out", str(tmp_path / "x.pt"), *arguments]) == 2
        return capsys.readouterr().err

    assert "method cycle needs --image-labels" in refused("--method", "cycle")
    assert "segments one lesion class" in refused("--method", "cycle", "--image-labels", str(labels),
                                                  "--classes", "background,lesion,oedema", *quick)
    assert "--joint-weight: method cohort does not take it (taken by: cycle)" in refused("--joint-weight", "2")
    assert "--image-size 40 must be a multiple of 16" in refused("--method", "cycle", "--image-labels", str(labels),
                                                                 "--image-size", "40")
    assert "--gan-steps" in refused("--method", "cycle", "--image-labels", str(labels), "--gan-steps", "0")
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(WeakSegInputError, match="cam_fusion 1.5"):
        CycleSettings(cam_fusion=1.5).check()


def test_bench_imagelabel_scores_the_cycle_rows_over_seeds(tmp_path, capsys):
    data = tmp_path / "brats"
    data.mkdir()
    for seed, name in enumerate(["pat01", "pat02", "pat03"]):
        image, mask = _blob_volume(seed)
        sitk.WriteImage(sitk.GetImageFromArray(image[0]), str(data / f"{name}_flair.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(data / f"{name}_label.nii.gz"))
    out = tmp_path / "out"
    status = main(["bench", "imagelabel", str(data), "--train-split", "pat01,pat02", "--test-split", "pat03",
                   "--methods", "cam,cycle,cycle-net", "--steps", "4", "--gan-steps", "4", "--image-size", "32",
                   "--seeds", "0,1", "--out", str(out), "--overlays", "1", "--progress", "none"])
    assert status == 0
    table = capsys.readouterr().out
    assert table.count("| cycle-net |") == 3  # one table per seed and the spread table
    assert "3D Dice mean" in table
    spread = (out / "spread.csv").read_text().splitlines()
    assert spread[0].startswith("method,seeds,dice_3d_mean") and len(spread) == 4
    overlay = sitk.ReadImage(str(out / "seed-1" / "overlay_pat03_cycle.png"))
    plain = sitk.ReadImage(str(out / "seed-1" / "overlay_pat03_cycle-net.png"))
    assert overlay.GetWidth() == plain.GetWidth() + 32  # the translated healthy image is the extra panel
    assert main(["bench", "imagelabel", str(data), "--train-split", "pat01", "--test-split", "pat03",
                 "--seeds", "0,x", "--out", str(tmp_path / "bad"), "--progress", "none"]) == 2
    assert "--seeds '0,x': expected a comma list" in capsys.readouterr().err
