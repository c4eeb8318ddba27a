"""What a new user runs into, each row of the README's "Errors and limits" table.

Every case runs on small synthetic data: an image too large for memory (refused from its
header), ``kill -9`` during ``train`` then ``--resume``, two runs writing one ``--out`` at
once, paths with spaces and non-ASCII characters, a 4D image, and a vector image where
a labelmap is expected.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from synthetic_data import CLASSES, dice, make_blob_volume, write_case, write_volume
from weakseg.cli import EXIT_BAD_INPUT, main
from weakseg.engine import load_checkpoint
from weakseg.io import MAX_IMAGE_VALUES

TINY_TRAINING = ["--image-size", "32", "--channels", "4,8,16", "--batch-size", "2"]


def weakseg_command(*argv: object) -> list[str]:
    return [sys.executable, "-m", "weakseg", *(str(value) for value in argv)]


def subprocess_environment() -> dict[str, str]:
    """This interpreter's import path and one torch thread, for ``python -m weakseg`` children."""
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return environment


def refused(capsys, *argv: object) -> str:
    """Run the CLI in-process; assert exit 2 and a one-line message; return that line."""
    assert main([str(value) for value in argv]) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weakseg: error: "), lines
    return lines[0]


def test_image_too_large_for_memory_is_refused_from_its_header(synthetic_case, tmp_path, capsys):
    header = tmp_path / "huge.mha"
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 1024 1024 600\nElementType = MET_SHORT\n"
                      "ElementSpacing = 1 1 1\nElementDataFile = huge.raw\n")
    out = tmp_path / "result.nii.gz"
    started = time.perf_counter()
    message = refused(capsys, "segment", header, "--scribbles", synthetic_case.scribbles, "--out", out,
                      "--method", "growcut", "--progress", "none")
    assert time.perf_counter() - started < 2.0
    assert "huge.mha" in message and "1024x1024x600" in message and f"{MAX_IMAGE_VALUES:,}" in message
    assert not out.exists()


def test_kill_9_during_training_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(2):
        write_case(data, f"p{index + 1:03d}", seed=index)
    model = tmp_path / "model.pt"
    train = ["train", data, "--out", model, "--classes", CLASSES, "--steps", "300", *TINY_TRAINING,
             "--progress", "lines"]
    process = subprocess.Popen(weakseg_command(*train), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=subprocess_environment())
    for line in process.stdout:
        if "training step 200/300" in line:  # the checkpoint of step 200 is being written now
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(model)["step"] in (100, 200)
    resumed = subprocess.run(weakseg_command(*train, "--resume"), capture_output=True, text=True, timeout=300,
                             env=subprocess_environment())
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(model)["step"] == 300
    predictions = tmp_path / "predictions"
    assert main(["predict", str(model), str(data / "p001_image.nii.gz"), "--out", str(predictions),
                 "--format", ".nii.gz", "--progress", "none"]) == 0
    assert (predictions / "p001_image.nii.gz").is_file()


def test_two_runs_writing_the_same_out_leave_one_complete_file(synthetic_case, tmp_path):
    pytest.importorskip("slicer", reason="growcut needs slicer-core")
    out = tmp_path / "result.nii.gz"
    command = weakseg_command("segment", synthetic_case.image, "--scribbles", synthetic_case.scribbles,
                              "--classes", CLASSES, "--method", "growcut", "--out", out, "--progress", "none")
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=subprocess_environment())
            for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    assert sorted(path.name for path in out.parent.iterdir() if "result" in path.name) == ["result.nii.gz"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert dice(labels, synthetic_case.truth, 1) > 0.8 and dice(labels, synthetic_case.truth, 2) > 0.8


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    pytest.importorskip("slicer", reason="growcut needs slicer-core")
    folder = tmp_path / "données patient 01 (ü, 名前)"
    folder.mkdir()
    case = write_case(folder, "cas é 1", seed=0)
    segmentation = folder / "résultat final.seg.nrrd"
    assert main(["segment", str(case.image), "--scribbles", str(case.scribbles), "--classes", CLASSES,
                 "--method", "growcut", "--out", str(segmentation), "--progress", "none"]) == 0
    assert dice(sitk.GetArrayFromImage(sitk.ReadImage(str(segmentation))), case.truth, 1) > 0.8
    model = folder / "modèle à jour.pt"
    assert main(["train", str(folder), "--out", str(model), "--classes", CLASSES, "--steps", "3", *TINY_TRAINING,
                 "--progress", "none"]) == 0
    predictions = folder / "prédictions"
    assert main(["predict", str(model), str(case.image), "--out", str(predictions), "--progress", "none"]) == 0
    assert (predictions / "cas é 1_image.seg.nrrd").is_file()


def test_4d_image_is_refused_with_its_dimensions(synthetic_case, tmp_path, capsys):
    intensity, _, _ = make_blob_volume()
    frames = [sitk.GetImageFromArray(intensity + step) for step in range(3)]
    series = tmp_path / "cine.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(frames), str(series))
    out = tmp_path / "result.nii.gz"
    message = refused(capsys, "segment", series, "--scribbles", synthetic_case.scribbles, "--out", out,
                      "--progress", "none")
    assert "cine.nii.gz" in message and "4 dimensions" in message and "48x40x4x3" in message
    assert not out.exists()


def test_vector_image_where_a_labelmap_is_expected_is_refused(synthetic_case, tmp_path, capsys):
    _, _, scribbles = make_blob_volume()
    colour = np.stack([scribbles] * 3, axis=-1)
    vector_scribbles = write_volume(colour, tmp_path / "colour_scribbles.nrrd")
    assert sitk.ReadImage(str(vector_scribbles)).GetNumberOfComponentsPerPixel() == 3
    out = tmp_path / "result.nii.gz"
    message = refused(capsys, "segment", synthetic_case.image, "--scribbles", vector_scribbles, "--out", out,
                      "--progress", "none")
    assert "colour_scribbles.nrrd" in message and "one value per voxel" in message and "3" in message
    assert not out.exists()
