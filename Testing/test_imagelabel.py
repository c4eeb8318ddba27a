"""Image-level-label pipeline and ``weakseg bench imagelabel`` on tiny synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from weakseg.cli import main
from weakseg.data import MedianScaling, cohort_intensities, normalise_by_median, normalise_intensity
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import slice_labels_from_mask
from weakseg.methods.imagelabel import ImageLabelConfig
from weakseg.methods.imagelabel_baselines import cam_probabilities
from weakseg.methods.imagelabel_pipeline import (
    LabelledVolume,
    load_image_label_model,
    predict_slices,
    prepare_slices,
    segment_volume,
    train_image_label_model,
)

CLASSES = ["background", "lesion"]
TINY = dict(image_size=32, classifier_channels=(4, 8, 8, 8), segmenter_channels=(4, 8, 8), classifier_steps=6,
            rounds=2, round_steps=4, batch_size=4, superpixels=20, crf=False)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _lesion_volume(seed: int, depth: int = 6, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(1, Z, Y, X)`` noise with a bright one-sided disc on the middle slices, and its mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    mask = np.zeros((depth, size, size), dtype=np.uint8)
    for z in range(2, depth - 2):
        mask[z] = (rows - size // 2) ** 2 + (cols - size // 4) ** 2 <= (size // 6) ** 2
    image = rng.normal(0.0, 0.3, (depth, size, size)) + 2.0 * mask
    return image[None].astype(np.float32), mask


def _two_labelled_volumes() -> list[LabelledVolume]:
    """Two synthetic lesion volumes with the slice labels their masks give."""
    volumes = []
    for seed in range(2):
        image, mask = _lesion_volume(seed)
        volumes.append(LabelledVolume(f"v{seed}", image, slice_labels_from_mask(mask, CLASSES)))
    return volumes


def test_pipeline_trains_saves_loads_and_segments(tmp_path):
    torch.manual_seed(0)
    volumes = _two_labelled_volumes()
    path = tmp_path / "model.pt"
    model = train_image_label_model(volumes, CLASSES, ImageLabelConfig(**TINY), out_path=path)
    loaded = load_image_label_model(path)
    assert loaded.class_names == CLASSES and loaded.config.round_steps == TINY["round_steps"]
    test_image, _ = _lesion_volume(5)
    labels, probabilities = segment_volume(loaded, test_image, (1.0, 1.0, 1.0))
    assert labels.shape == test_image.shape[1:] and labels.dtype == np.uint8
    assert probabilities.shape == (2, *test_image.shape[1:])
    assert np.allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)
    cam = cam_probabilities(model, test_image)
    assert cam.shape == probabilities.shape


def test_colour_pictures_are_normalised_by_the_training_cohort_in_training_and_prediction(tmp_path):
    skin = np.array([150.0, 120.0, 110.0], dtype=np.float32)[:, None, None, None]
    volumes = []
    for index in range(4):
        image, mask = _lesion_volume(index)
        image, mask = image[:, 3:4], mask[3:4]  # one picture: a middle slice, which shows the disc
        if index % 2:  # a lesion picture: the bright disc in every colour channel
            volumes.append(LabelledVolume(f"p{index}", skin + 30 * image, slice_labels_from_mask(mask, CLASSES)))
        else:  # healthy skin: the same colour with faint noise
            volumes.append(LabelledVolume(f"p{index}", skin + 2 * image, [frozenset()]))
    path = tmp_path / "pictures.pt"
    model = train_image_label_model(volumes, CLASSES, ImageLabelConfig(**TINY), out_path=path)
    assert model.intensities == cohort_intensities([volume.array for volume in volumes])
    loaded = load_image_label_model(path)
    assert loaded.intensities == model.intensities
    picture = volumes[1].array
    _, probabilities = segment_volume(loaded, picture, (1.0, 1.0, 1.0), crf=False, appearance=False)
    expected = predict_slices(loaded, prepare_slices(picture, TINY["image_size"], intensities=loaded.intensities))
    np.testing.assert_allclose(probabilities[:, 0], expected[0].numpy(), atol=1e-5)
    per_volume = train_image_label_model(volumes, CLASSES, ImageLabelConfig(**TINY, normalisation="volume"))
    assert per_volume.intensities is None


def test_median_normalisation_keeps_healthy_tissue_at_one_level_however_each_slice_was_stretched():
    rows, cols = np.mgrid[:32, :32]
    brain = (rows - 16) ** 2 + (cols - 16) ** 2 <= 14 ** 2
    tumour = (rows - 12) ** 2 + (cols - 18) ** 2 <= 5 ** 2
    # slices stretched to their own range: the tumour at 255 darkens the brain to 90; alone, the brain reaches 200
    with_tumour = np.where(tumour, 255.0, np.where(brain, 90.0, 0.0))[None, None]
    healthy = np.where(brain, 200.0, 0.0)[None, None]
    by_median = [normalise_by_median(image)[0, 0] for image in (with_tumour, healthy)]
    assert by_median[0][brain & ~tumour].mean() == pytest.approx(0.0) == by_median[1][brain].mean()
    assert by_median[0][tumour].min() > 1.5 and by_median[1].max() == pytest.approx(0.0)
    assert by_median[0][~brain].max() == by_median[1][~brain].max() == pytest.approx(-1.0)
    by_z_score = [normalise_intensity(image)[0, 0] for image in (with_tumour, healthy)]
    assert by_z_score[1][brain].mean() - by_z_score[0][brain & ~tumour].mean() > 0.3  # what the median removes


def test_median_normalisation_is_kept_in_the_model_file_and_used_at_prediction(tmp_path):
    volumes = _two_labelled_volumes()
    path = tmp_path / "median.pt"
    model = train_image_label_model(volumes, CLASSES, ImageLabelConfig(**TINY, normalisation="median"), out_path=path)
    loaded = load_image_label_model(path)
    assert model.intensities == loaded.intensities == MedianScaling()
    image = 50.0 + 40.0 * volumes[0].array  # another scanner's scale: median scaling does not see it
    _, probabilities = segment_volume(loaded, image, (1.0, 1.0, 1.0), crf=False, appearance=False)
    expected = predict_slices(loaded, prepare_slices(volumes[0].array - volumes[0].array.min(), TINY["image_size"],
                                                     intensities=MedianScaling()))
    np.testing.assert_allclose(probabilities[:, 0], expected[0].numpy(), atol=1e-4)


def test_dataset_class_balance_trains_and_is_stored(tmp_path):
    torch.manual_seed(0)
    volumes = _two_labelled_volumes()
    path = tmp_path / "model.pt"
    train_image_label_model(volumes, CLASSES, ImageLabelConfig(**{**TINY, "class_balance": "dataset"}), out_path=path)
    assert load_image_label_model(path).config.class_balance == "dataset"
    with pytest.raises(WeakSegInputError, match="--class-balance 'slice'"):
        ImageLabelConfig(class_balance="slice").check()


def test_interrupted_training_resumes_from_the_last_finished_stage(tmp_path):
    from weakseg.engine import load_checkpoint
    from weakseg.errors import CancelledError
    from weakseg.progress import Progress

    image, mask = _lesion_volume(0)
    volumes = [LabelledVolume("v", image, slice_labels_from_mask(mask, CLASSES))]
    config = ImageLabelConfig(**{**TINY, "rounds": 2})
    path = tmp_path / "model.pt"
    messages = []
    stop_in_round_2 = Progress(lambda fraction, message: messages.append(message),
                               lambda: any(message.startswith("round 2/") for message in messages))
    with pytest.raises(CancelledError):
        train_image_label_model(volumes, CLASSES, config, stop_in_round_2, out_path=path)
    assert load_checkpoint(path)["metadata"]["stages_done"] == 2  # classifier + round 1

    messages.clear()
    resumed = Progress(lambda fraction, message: messages.append(message))
    train_image_label_model(volumes, CLASSES, config, resumed, out_path=path, resume=True)
    assert not any("classifier" in message or message.startswith("round 1/") for message in messages)
    assert load_checkpoint(path)["metadata"]["stages_done"] == 3
    with pytest.raises(WeakSegInputError, match="already complete"):
        train_image_label_model(volumes, CLASSES, config, out_path=path, resume=True)
    with pytest.raises(WeakSegInputError, match=r"settings \['rounds'\] differ"):
        train_image_label_model(volumes, CLASSES, ImageLabelConfig(**{**TINY, "rounds": 3}), out_path=path, resume=True)


def test_pipeline_needs_lesion_and_healthy_slices():
    image, mask = _lesion_volume(0)
    only_lesion = [frozenset({"lesion"})] * image.shape[1]
    with pytest.raises(WeakSegInputError, match="both slices showing a class and healthy slices"):
        train_image_label_model([LabelledVolume("v", image, only_lesion)], CLASSES, ImageLabelConfig(**TINY))
    with pytest.raises(WeakSegInputError, match="'tumour' is not one of"):
        train_image_label_model([LabelledVolume("v", image, [frozenset({"tumour"})] * image.shape[1])], CLASSES,
                                ImageLabelConfig(**TINY))


def _write(array: np.ndarray, path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def test_bench_imagelabel_on_a_brats_style_folder(tmp_path, capsys):
    data = tmp_path / "brats"
    data.mkdir()
    for seed, name in enumerate(["pat01", "pat02", "pat03"]):
        image, mask = _lesion_volume(seed)
        _write(image[0], data / f"{name}_flair.nii.gz")
        _write(mask, data / f"{name}_label.nii.gz")
    out = tmp_path / "out"
    status = main(["bench", "imagelabel", str(data), "--train-split", "pat01,pat02", "--test-split", "pat03",
                   "--steps", "4", "--rounds", "1", "--image-size", "32", "--out", str(out), "--overlays", "1",
                   "--progress", "none"])
    assert status == 0
    table = capsys.readouterr().out
    for method in ("intensity", "cam", "cam+crf", "network+crf", "full"):
        assert f"| {method} |" in table
    assert "3D Dice" in table and "slice acc." in table
    assert (out / "summary.csv").read_text().count("\n") == 6
    assert (out / "overlay_pat03_full.png").exists()


def test_bench_imagelabel_rejects_an_unknown_method(tmp_path, capsys):
    data = tmp_path / "brats"
    data.mkdir()
    image, mask = _lesion_volume(0)
    _write(image[0], data / "pat01_flair.nii.gz")
    _write(mask, data / "pat01_label.nii.gz")
    assert main(["bench", "imagelabel", str(data), "--methods", "cam,magic", "--progress", "none"]) == 2
    assert "magic" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / "medimgseg").is_dir(), reason="../shared/data/medimgseg is not on this machine")
def test_medimgseg_layout_is_read(tmp_path):
    from weakseg.bench.imagelabel import _medimgseg_splits, detect_layout

    folder = str(SHARED_DATA / "medimgseg")
    assert detect_layout(folder) == "medimgseg"
    datasets = _medimgseg_splits(os.path.join(folder, "ISIC"))
    train, test = datasets["ISIC"]
    assert any(case.truth.any() for case in train) and any(not case.truth.any() for case in test)


def test_train_from_the_slicer_labels_csv_and_predict(tmp_path):
    data = tmp_path / "cohort"
    data.mkdir()
    rows = ["case,label,first_slice,last_slice"]
    for seed, name in enumerate(["caseA", "caseB"]):
        image, mask = _lesion_volume(seed)
        _write(image[0], data / f"{name}_image.nii.gz")
        rows += [f"{name},healthy,0,1", f"{name},lesion,2,3", f"{name},healthy,4,5"]
    (data / "image_labels.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "model.pt"
    assert main(["train", str(data), "--image-labels", str(data / "image_labels.csv"), "--out", str(model),
                 "--steps", "2", "--progress", "none"]) == 0
    out = tmp_path / "predicted"
    assert main(["predict", str(model), str(data / "caseA_image.nii.gz"), "--out", str(out), "--format", ".nii.gz",
                 "--progress", "none"]) == 0
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "caseA_image.nii.gz")))
    assert result.shape == (6, 32, 32)


def test_train_names_a_missing_image(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("image,slices,label\nnowhere,,lesion\n")
    assert main(["train", str(tmp_path), "--image-labels", str(tmp_path / "labels.csv"), "--out",
                 str(tmp_path / "m.pt"), "--progress", "none"]) == 2
    assert "'nowhere' not found" in capsys.readouterr().err
