"""Method collaborative: diagnosis CSV, classifier, pseudo masks, train/predict (2D RGB and 3D), resume, bench split."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from weakseg.cli import main
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import read_diagnoses, read_image_labels

DIAGNOSES = ("brown", "blue")


def lesion_picture(rng: np.random.Generator, diagnosis: str, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An RGB "skin" picture with one round lesion whose colour gives the diagnosis; picture and 0/255 mask."""
    rows, cols = np.mgrid[:size, :size]
    cy, cx, radius = rng.integers(10, size - 10), rng.integers(10, size - 10), rng.integers(5, 8)
    lesion = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
    picture = np.empty((size, size, 3), np.float32)
    picture[:] = (200, 160, 140)
    picture[lesion] = (110, 70, 40) if diagnosis == "brown" else (60, 60, 110)
    picture += rng.normal(0, 8, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8), (lesion * 255).astype(np.uint8)


def write_cohort(folder: Path, count: int = 8, seed: int = 0) -> Path:
    """``count`` PNG cases ``L01..`` with ``_image``/``_mask`` files and ``diagnosis.csv``; returns the CSV."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for number in range(1, count + 1):
        diagnosis = DIAGNOSES[number % 2]
        picture, mask = lesion_picture(rng, diagnosis)
        sitk.WriteImage(sitk.GetImageFromArray(picture, isVector=True), str(folder / f"L{number:02d}_image.png"))
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / f"L{number:02d}_mask.png"))
        rows.append((f"L{number:02d}", diagnosis))
    path = folder / "diagnosis.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("case", "diagnosis")] + rows)
    return path


FAST = ["--image-size", "32", "--channels", "4,8,16", "--steps", "30", "--classifier-steps", "20", "--rounds", "1",
        "--round-steps", "10", "--batch-size", "4", "--progress", "none"]


def test_diagnosis_column_is_kept_apart_from_segmentation_classes(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("image,slices,label,diagnosis\ncase1,,lesion,melanoma\ncase2,,lesion,common_nevus\n"
                    "case3,,healthy,\n")
    diagnoses = read_diagnoses(path)
    assert diagnoses.names == ["common_nevus", "melanoma"]
    assert diagnoses.per_image == {"case1": "melanoma", "case2": "common_nevus"}
    assert diagnoses.index_of("case3") == -1
    labels = read_image_labels(path, ["background", "lesion"])
    assert labels["case1"].whole == frozenset({"lesion"})
    assert read_diagnoses(path, ["Melanoma", "Common_Nevus"]).per_image["case1"] == "Melanoma"


@pytest.mark.parametrize("text, message", [
    ("case,label\na,lesion\n", "diagnosis column"),
    ("case,diagnosis\na,melanoma\na,nevus\n", "two diagnoses"),
    ("case,diagnosis\na,\n", "no image has a diagnosis"),
])
def test_bad_diagnosis_csv_names_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(WeakSegInputError, match=message):
        read_diagnoses(path)


def test_diagnosis_outside_the_known_list_is_refused(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("case,diagnosis\na,melanoma\n")
    with pytest.raises(WeakSegInputError, match="line 2: diagnosis 'melanoma' is not one of"):
        read_diagnoses(path, ["nevus"])


def test_classifier_attention_changes_the_diagnosis_with_the_lesion_map():
    from weakseg.models import AttentiveClassifier

    torch.manual_seed(0)
    attentive = AttentiveClassifier(3, 2, (4, 8), attention=True).eval()
    image = torch.randn(2, 3, 16, 16)
    empty, lesion = torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    lesion[:, :, 4:9, 4:9] = 1.0
    logits, maps = attentive(image, lesion)
    assert logits.shape == (2, 2) and maps.shape == (2, 2, 8, 8)
    assert not torch.allclose(logits, attentive(image, empty)[0])
    with pytest.raises(ValueError, match="lesion map"):
        attentive(image)
    image_only = AttentiveClassifier(3, 2, (4, 8), attention=False).eval()
    assert torch.allclose(image_only(image, lesion)[0], image_only(image, empty)[0])


def test_attention_refinement_moves_pseudo_masks_towards_the_attended_region():
    from weakseg.methods.collaborative_pseudo import class_attention, pseudo_masks, refine

    probabilities = torch.full((1, 2, 8, 8), 0.5)
    probabilities[:, 1, 2:6, 2:6], probabilities[:, 0, 2:6, 2:6] = 0.55, 0.45
    maps = torch.zeros(1, 2, 4, 4)
    maps[:, 0, 1:3, 1:3] = 3.0
    attention = class_attention(maps, torch.tensor([[1.0, 0.0]]), (8, 8))
    assert attention.max() == pytest.approx(1.0, abs=1e-4) and attention[0, 0, 0, 0] < 0.05
    assert torch.equal(refine(probabilities, attention, 0.0), probabilities)
    refined = refine(probabilities, attention, 0.5)
    assert refined[0, 1, 3, 3] > probabilities[0, 1, 3, 3] and refined[0, 1, 0, 0] < 0.5
    labels, weights = pseudo_masks(refined, torch.tensor([0.5]), largest_component=True)
    plain_labels, plain_weights = pseudo_masks(probabilities, None, largest_component=False)
    assert labels[0, 3, 3] == 1 and labels[0, 0, 0] == 0
    assert weights.max() <= 0.5 + 1e-6 and plain_weights.max() == pytest.approx(0.1, abs=1e-5)


def test_train_and_predict_2d_rgb_writes_masks_and_predictions_csv(tmp_path):
    labels_csv = write_cohort(tmp_path / "data")
    model = tmp_path / "model.pt"
    assert main(["train", str(tmp_path / "data"), "--method", "collaborative", "--masks-split", "L01,L02",
                 "--image-labels", str(labels_csv), "--out", str(model)] + FAST) == 0
    metadata = torch.load(model, weights_only=True)["metadata"]
    assert metadata["class_names"] == ["background", "lesion"] and metadata["diagnoses"] == ["blue", "brown"]
    images = [str(tmp_path / "data" / f"L0{number}_image.png") for number in (7, 8)]
    assert main(["predict", str(model), *images, "--out", str(tmp_path / "out"), "--format", ".nii.gz",
                 "--progress", "none"]) == 0
    with open(tmp_path / "out" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["image"] for row in rows] == ["L07_image", "L08_image"]
    assert set(rows[0]) == {"image", "diagnosis", "p_blue", "p_brown"}
    for row in rows:
        assert row["diagnosis"] in DIAGNOSES
        assert float(row["p_blue"]) + float(row["p_brown"]) == pytest.approx(1.0, abs=1e-3)
    result = sitk.ReadImage(str(tmp_path / "out" / "L07_image.nii.gz"))
    assert result.GetSize() == (32, 32)


def test_segmenting_then_diagnosing_an_image_runs_the_segmenter_once(tmp_path):
    from weakseg.io import read_image
    from weakseg.methods.collaborative import diagnose_image, load_collaborative_model, predict_image

    labels_csv = write_cohort(tmp_path / "data", count=4)
    assert main(["train", str(tmp_path / "data"), "--method", "collaborative", "--masks-split", "L01",
                 "--image-labels", str(labels_csv), "--out", str(tmp_path / "model.pt")] + FAST) == 0
    model = load_collaborative_model(tmp_path / "model.pt")
    calls = []
    model.segmenter.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    image = read_image(tmp_path / "data" / "L03_image.png")
    labels, probabilities = predict_image(model, image)
    passes = len(calls)
    diagnosis, values = diagnose_image(model, image)
    assert passes > 0 and len(calls) == passes  # the diagnosis reused the segmentation's pass
    assert diagnosis in DIAGNOSES and sum(values.values()) == pytest.approx(1.0, abs=1e-4)
    again = read_image(tmp_path / "data" / "L03_image.png")
    assert diagnose_image(model, again) == (diagnosis, values) and len(calls) == 2 * passes  # another image: a new pass
    predict_image(model, again, post_processing=False)
    assert len(calls) == 2 * passes + 1  # the raw output is one unflipped pass, not the kept flip average


def test_train_and_predict_a_3d_volume_slice_by_slice(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "volumes"
    folder.mkdir()
    rows = ["case,diagnosis"]
    for number in range(1, 5):
        volume, mask = np.zeros((3, 32, 32), np.float32), np.zeros((3, 32, 32), np.uint8)
        for index in range(3):
            picture, lesion = lesion_picture(rng, DIAGNOSES[number % 2])
            volume[index], mask[index] = picture.mean(axis=2), lesion > 0
        for array, role in ((volume, "image"), (mask, "label")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((0.8, 0.8, 4.0))
            sitk.WriteImage(image, str(folder / f"V{number}_{role}.nii.gz"))
        rows.append(f"V{number},{DIAGNOSES[number % 2]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "volume.pt"
    assert main(["train", str(folder), "--method", "collaborative", "--masks-split", "V1", "--image-labels",
                 str(folder / "labels.csv"), "--out", str(model)] + FAST) == 0
    assert main(["predict", str(model), str(folder / "V4_image.nii.gz"), "--out", str(tmp_path / "out"),
                 "--format", ".nii.gz", "--progress", "none"]) == 0
    result = sitk.ReadImage(str(tmp_path / "out" / "V4_image.nii.gz"))
    assert result.GetSize() == (32, 32, 3) and result.GetSpacing() == pytest.approx((0.8, 0.8, 4.0))
    assert (tmp_path / "out" / "predictions.csv").read_text().startswith("image,diagnosis,p_blue,p_brown")


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    from weakseg.errors import CancelledError
    from weakseg.methods.collaborative import SPEC
    from weakseg.methods.spec import TrainingRequest
    from weakseg.progress import Progress

    labels_csv = write_cohort(tmp_path / "data", count=6)
    settings = SPEC.make_settings(image_size=32, channels=(4, 8, 16), steps=12, classifier_steps=6, rounds=1,
                                  round_steps=4, classifier_round_steps=3, batch_size=4, checkpoint_every=5)

    def request(path: Path, progress: Progress, resume: bool = False) -> TrainingRequest:
        return TrainingRequest(data_dir=str(tmp_path / "data"), out_path=str(path), settings=settings, class_names=None,
                               device=torch.device("cpu"), progress=progress, image_labels=str(labels_csv),
                               masks_split="L01,L02", resume=resume)

    train = SPEC.function("train")
    train(request(tmp_path / "whole.pt", Progress()))
    reports = []
    with pytest.raises(CancelledError):
        train(request(tmp_path / "cut.pt", Progress(lambda *_: reports.append(1), lambda: len(reports) > 30)))
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["extra"]["stages_done"] >= 1
    train(request(tmp_path / "cut.pt", Progress(), resume=True))
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)
    resumed = torch.load(tmp_path / "cut.pt", weights_only=True)
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for key, value in whole["extra"]["classifier"].items():
        assert torch.equal(value, resumed["extra"]["classifier"][key]), key


def test_cli_refuses_masks_split_where_it_does_not_belong(tmp_path, capsys):
    labels_csv = write_cohort(tmp_path / "data", count=2)
    base = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "m.pt"), "--progress", "none"]
    assert main(base + ["--method", "cohort", "--masks-split", "L01"]) == 2
    assert "--masks-split" in capsys.readouterr().err
    assert main(base + ["--method", "collaborative", "--image-labels", str(labels_csv)]) == 2
    assert "needs --masks-split" in capsys.readouterr().err
    assert main(base + ["--method", "collaborative", "--image-labels", str(labels_csv), "--masks-split", "Z9"]) == 2
    assert "selects no training case with a <case>_label" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_bench_split_is_fixed_by_case_id():
    from weakseg.bench.semisup import split_cases
    from weakseg.cases import CohortCase

    cases = [CohortCase(f"IMD{number:03d}", "") for number in range(105, 0, -1)]
    train, test, masked = split_cases(cases, 10)
    assert [case.name for case in train] == [f"IMD{number:03d}" for number in range(1, 71)]
    assert [case.name for case in test] == [f"IMD{number:03d}" for number in range(71, 106)]
    assert masked == {f"IMD{number:03d}" for number in range(1, 71, 7)}
    with pytest.raises(WeakSegInputError, match="--masks 71"):
        split_cases(cases, 71)


def test_bench_semisup_writes_every_row(tmp_path):
    write_cohort(tmp_path / "data", count=9)
    out = tmp_path / "bench"
    assert main(["bench", "semisup", str(tmp_path / "data"), "--masks", "2", "--seeds", "0,1", "--image-size", "32",
                 "--steps", "10", "--classifier-steps", "6", "--rounds", "1", "--round-steps", "4", "--out", str(out),
                 "--overlays", "1", "--progress", "none"]) == 0
    with open(out / "summary.csv", newline="") as handle:
        summary = {row["row"]: row for row in csv.DictReader(handle)}
    assert list(summary) == ["masks-only", "self-training", "collaborative", "all-masks", "image-only",
                             "lesion-attentive"]
    assert all(summary[row]["seeds"] == "2" and 0 <= float(summary[row]["dice"]) <= 1 for row in list(summary)[:4])
    assert 0 <= float(summary["lesion-attentive"]["balanced_accuracy"]) <= 1
    assert (out / "overlay_L07_collaborative.png").exists()


def test_masks_split_masks_only_the_selected_cases_that_have_a_mask_file(tmp_path):
    from weakseg.image_labels import read_diagnoses as diagnoses_of
    from weakseg.methods.collaborative_data import training_cases
    from weakseg.methods.spec import TrainingRequest

    labels_csv = write_cohort(tmp_path / "data", count=4)
    for number in (2, 3):
        (tmp_path / "data" / f"L0{number}_mask.png").unlink()
    request = TrainingRequest(data_dir=str(tmp_path / "data"), out_path="", settings=None, class_names=None,
                              device=None, progress=None, masks_split="L0")
    cases, masked = training_cases(request, diagnoses_of(labels_csv))
    assert [case.name for case in cases] == ["L01", "L02", "L03", "L04"] and masked == {"L01", "L04"}
