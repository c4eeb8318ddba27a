"""The ``weakseg`` command line: outputs, geometry, bad input and cancellation.

Commands run in-process through ``weakseg.cli.main`` (fast); cancellation runs a real
subprocess and sends it SIGTERM as the Slicer module does.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import SimpleITK as sitk

from synthetic_data import CLASSES, dice, make_blob_volume, write_case, write_volume
from weakseg.cli import EXIT_BAD_INPUT, EXIT_CANCELLED, main


def run(*argv: str) -> int:
    return main([str(value) for value in argv])


def test_segment_growcut_writes_named_segments(synthetic_case, tmp_path):
    pytest.importorskip("slicer", reason="growcut needs slicer-core")
    out = tmp_path / "result.seg.nrrd"
    assert run("segment", synthetic_case.image, "--scribbles", synthetic_case.scribbles, "--out", out,
               "--classes", CLASSES, "--method", "growcut", "--progress", "none") == 0
    result = sitk.ReadImage(str(out))
    names = {result.GetMetaData(f"Segment{i}_Name"): int(result.GetMetaData(f"Segment{i}_LabelValue")) for i in range(2)}
    assert names == {"bright": 1, "dim": 2}
    labels = sitk.GetArrayFromImage(result)
    assert dice(labels, synthetic_case.truth, 1) > 0.8 and dice(labels, synthetic_case.truth, 2) > 0.8


def test_segment_weakseg_labelmap_keeps_the_image_geometry(synthetic_case, tmp_path):
    out = tmp_path / "result.nrrd"
    assert run("segment", synthetic_case.image, "--scribbles", synthetic_case.scribbles, "--out", out,
               "--steps", "30", "--progress", "lines") == 0
    image, result = sitk.ReadImage(str(synthetic_case.image)), sitk.ReadImage(str(out))
    assert result.GetSpacing() == pytest.approx(image.GetSpacing())
    assert result.GetOrigin() == pytest.approx(image.GetOrigin())
    assert result.GetDirection() == pytest.approx(image.GetDirection())
    labels = sitk.GetArrayFromImage(result)
    assert dice(labels, synthetic_case.truth, 1) > 0.85 and dice(labels, synthetic_case.truth, 2) > 0.85


def test_progress_lines_are_machine_readable(synthetic_case, tmp_path, capsys):
    run("segment", synthetic_case.image, "--scribbles", synthetic_case.scribbles, "--out", tmp_path / "r.nii.gz",
        "--steps", "5", "--progress", "lines")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PROGRESS ")]
    percents = [float(line.split()[1]) for line in lines]
    assert len(lines) > 5 and percents == sorted(percents) and percents[-1] == 100.0


def bad_input_message(capsys, *argv) -> str:
    assert run(*argv) == EXIT_BAD_INPUT
    return capsys.readouterr().err


def test_scribbles_on_another_grid_are_refused_without_output(synthetic_case, tmp_path, capsys):
    scribbles = sitk.ReadImage(str(synthetic_case.scribbles))
    shifted = tmp_path / "shifted.nii.gz"
    write_volume(sitk.GetArrayFromImage(scribbles), shifted, origin=(0.0, 0.0, 0.0))
    out = tmp_path / "result.seg.nrrd"
    message = bad_input_message(capsys, "segment", synthetic_case.image, "--scribbles", shifted, "--out", out)
    assert "shifted.nii.gz" in message and "origin" in message
    assert not out.exists() and not any(tmp_path.glob(".result*"))


def test_missing_image_and_bad_output_suffix_are_named(synthetic_case, tmp_path, capsys):
    message = bad_input_message(capsys, "segment", tmp_path / "absent.nii.gz", "--scribbles",
                                synthetic_case.scribbles, "--out", tmp_path / "r.nii.gz")
    assert "absent.nii.gz" in message and "no such file" in message
    message = bad_input_message(capsys, "segment", synthetic_case.image, "--scribbles", synthetic_case.scribbles,
                                "--out", tmp_path / "r.txt")
    assert "r.txt" in message and ".seg.nrrd" in message


def test_unknown_class_code_is_refused(synthetic_case, tmp_path, capsys):
    message = bad_input_message(capsys, "segment", synthetic_case.image, "--scribbles", synthetic_case.scribbles,
                                "--out", tmp_path / "r.nii.gz", "--classes", "background,bright")
    assert "class code 2" in message


def test_evaluate_prints_per_class_scores(synthetic_case, capsys):
    assert run("evaluate", synthetic_case.label, synthetic_case.label, "--classes", CLASSES) == 0
    table = capsys.readouterr().out
    assert "bright" in table and "dim" in table and "1.000" in table


def test_bench_prints_a_table_and_writes_csv_and_overlays(tmp_path, capsys):
    pytest.importorskip("slicer", reason="growcut needs slicer-core")
    data = tmp_path / "data"
    data.mkdir()
    for index in range(2):
        write_case(data, f"case{index:02d}", seed=index)
    out = tmp_path / "bench"
    assert run("bench", "scribbles", data, "--methods", "growcut", "--classes", CLASSES, "--out", out,
               "--overlays", "1", "--progress", "none") == 0
    table = capsys.readouterr().out
    assert "| growcut |" in table and "Dice bright" in table
    assert (out / "cases.csv").read_text().count("\n") == 3
    assert (out / "summary.csv").exists()
    overlay = sitk.ReadImage(str(out / "overlay_case00_growcut.png"))
    assert overlay.GetNumberOfComponentsPerPixel() == 3 and overlay.GetSize()[0] == 3 * 48


def test_train_pce_and_maag_then_bench_them_side_by_side(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(4):
        write_case(data, f"case{index:02d}", seed=index)
    tiny = ("--steps", "3", "--image-size", "32", "--channels", "4,8,16", "--classes", CLASSES, "--progress", "none")
    models = {}
    for method in ("pce", "maag"):
        models[method] = tmp_path / f"{method}.pt"
        unpaired = ("--unpaired-split", "case02") if method == "maag" else ()
        assert run("train", data, "--method", method, "--split", "case00,case01", *unpaired,
                   "--out", models[method], *tiny) == 0
    out = tmp_path / "bench"
    common = ("--test-split", "case03", "--classes", CLASSES, "--overlays", "0", "--progress", "none", "--out", out)
    assert run("bench", "scribbles", data, "--methods", "pce,maag", "--model", f"pce={models['pce']}",
               "--model", f"maag={models['maag']}", *common) == 0
    table = capsys.readouterr().out
    assert "| pce |" in table and "| maag |" in table
    assert run("bench", "scribbles", data, "--methods", "pce", "--model", f"maag={models['maag']}", *common) == 2
    assert "does not run" in capsys.readouterr().err


def test_train_maag_without_unpaired_masks_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_case(data, "case00", seed=0)
    out = tmp_path / "maag.pt"
    assert run("train", data, "--method", "maag", "--out", out, "--classes", CLASSES, "--progress", "none") == EXIT_BAD_INPUT
    assert "needs unpaired masks" in capsys.readouterr().err and not out.exists()
    assert run("train", data, "--method", "maag", "--unpaired-split", "case00", "--out", out, "--classes", CLASSES,
               "--progress", "none") == EXIT_BAD_INPUT
    assert "must not belong to the training images" in capsys.readouterr().err and not out.exists()


def test_sigterm_cancels_training_and_writes_nothing(synthetic_case, tmp_path):
    out = tmp_path / "result.seg.nrrd"
    command = [sys.executable, "-m", "weakseg", "segment", str(synthetic_case.image), "--scribbles",
               str(synthetic_case.scribbles), "--out", str(out), "--steps", "100000", "--progress", "lines"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if "training step" in line:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == EXIT_CANCELLED
    assert "cancelled" in process.stderr.read()
    assert not out.exists() and not list(tmp_path.glob(".result*"))


def test_train_predict_and_adapt_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(2):
        write_case(data, f"patient{index + 1:03d}", seed=index)
    model = tmp_path / "model.pt"
    assert run("train", data, "--out", model, "--split", "1-2", "--classes", CLASSES, "--steps", "4",
               "--progress", "none") == 0
    assert run("train", data, "--out", model, "--classes", CLASSES, "--steps", "6", "--resume", "--progress", "none") == 0
    import torch

    assert torch.load(model, weights_only=True)["step"] == 6
    predictions = tmp_path / "predictions"
    assert run("predict", model, data / "patient001_image.nii.gz", "--out", predictions, "--progress", "none") == 0
    predicted = sitk.ReadImage(str(predictions / "patient001_image.seg.nrrd"))
    assert predicted.GetSize() == sitk.ReadImage(str(data / "patient001_image.nii.gz")).GetSize()
    adapted = tmp_path / "adapted.nii.gz"
    assert run("segment", data / "patient002_image.nii.gz", "--scribbles", data / "patient002_scribble.nii.gz",
               "--model", model, "--steps", "3", "--out", adapted, "--progress", "none") == 0
    assert adapted.is_file()


def test_training_again_into_an_existing_model_file_keeps_the_former_model(tmp_path, capsys):
    import torch

    data = tmp_path / "data"
    data.mkdir()
    write_case(data, "patient001", seed=0)
    model = tmp_path / "model.pt"

    def train(steps: int, *more: str) -> None:
        assert run("train", data, "--out", model, "--classes", CLASSES, "--steps", steps, "--progress", "none",
                   *more) == 0

    train(2)
    first = model.read_bytes()
    capsys.readouterr()
    train(3)
    assert "kept as" in capsys.readouterr().err
    assert (tmp_path / "model.previous.pt").read_bytes() == first
    assert torch.load(model, weights_only=True)["step"] == 3
    second = model.read_bytes()
    train(2)
    assert (tmp_path / "model.previous-2.pt").read_bytes() == second
    assert (tmp_path / "model.previous.pt").read_bytes() == first
    # --resume continues the run in the file itself: no copy.
    train(4, "--resume")
    assert sorted(path.name for path in tmp_path.glob("model*.pt")) == ["model.previous-2.pt", "model.previous.pt",
                                                                         "model.pt"]


def test_train_refuses_a_folder_without_scribbles(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    intensity, _, _ = make_blob_volume()
    write_volume(intensity, tmp_path / "data" / "lonely_image.nii.gz")
    message = bad_input_message(capsys, "train", tmp_path / "data", "--out", tmp_path / "m.pt")
    assert "data" in message and "scribble" in message
    assert not (tmp_path / "m.pt").exists()
