"""The stand-in command line (``contract_cli.py``) checked against the real one (``weakseg.cli``).

Most Slicer-logic tests talk to the stand-in, so it must follow the real command line where
the logic depends on it: every command line the logic builds parses with the real parser,
``predict`` names its outputs as the real one does, ``train --resume`` is refused alike
without a model, exit codes (0, 2, 130 on SIGTERM) match, and ``segment --method growcut``
gives the real grow-cut's result. The training methods the stand-in only pretends to run
(pce, maag) also run end to end through the logic on the real command line here, on tiny
data with a few steps; cohort and imagelabel do in test_slicer_logic.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from learning_tasks import TWO_BLOBS, write_two_blob_cohort
from slicer_test_helpers import STUB_CLI, addScribbles, addVolume, paintSegment, phantom, scribbleMasks

pytest.importorskip("slicer", reason="slicer-core is not installed")

from WeakSegExtensionLib.logic import WeakSegLogic  # noqa: E402

from weakseg.cli import build_parser  # noqa: E402

REAL_CLI = [sys.executable, "-m", "weakseg"]
STAND_IN = [sys.executable, str(STUB_CLI)]
CLASSES = "background,LV,RV"
TINY_TRAINING = ["--steps", "4", "--device", "cpu", "--image-size", "32", "--channels", "4,8,16", "--batch-size", "2"]


def run(command: list[str], **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **environment})


@pytest.fixture
def workDirectory(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _cohortScene(scene, logic):
    """A scribbled volume (and its scribbles), a masked volume (maag's prior) and a volume with slice labels."""
    image, truth = phantom()
    scribbled = addVolume(scene, image, name="Scribbled case")
    masked = addVolume(scene, phantom(seed=1)[0], name="Masked case")
    scribbleNode = addScribbles(scene, scribbled)
    logic.setScribbleSegmentation(scribbled, scribbleNode)
    mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mask")
    paintSegment(mask, masked, "LV", truth == 1)
    paintSegment(mask, masked, "RV", truth == 2)
    logic.setMaskSegmentation(masked, mask)
    lesion = addVolume(scene, image, name="Lesion case")
    logic.setImageLabel(lesion, "healthy")
    logic.setImageLabel(lesion, "LV", firstSlice=1, lastSlice=3)
    return scribbled, scribbleNode, masked, lesion


# ----------------------------------------------------------------------------- command lines


def test_every_command_line_the_logic_builds_parses_with_the_real_parser(scene, workDirectory, tmp_path, monkeypatch):
    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv("WEAKSEG_STUB_RECORD", str(record))
    logic = WeakSegLogic(scene=scene, cliCommand=STAND_IN, temporaryDirectory=str(workDirectory))
    scribbled, scribbleNode, masked, lesion = _cohortScene(scene, logic)
    for method in ("interactive", "weakseg", "growcut"):  # the panel's name, an old scene's spelling, the baseline
        logic.segmentFromScribbles(scribbled, scribbleNode, method=method)
    for method in ("cohort", "pce", "maag"):
        logic.trainCohort([scribbled, masked], tmp_path / f"{method}.pt", method=method)
    logic.trainCohort([scribbled, masked], tmp_path / "cohort.pt", resume=True)
    logic.trainCohort([lesion], tmp_path / "lesion.pt", classNames=["background", "LV"], method="imagelabel")
    logic.applyModel(tmp_path / "cohort.pt", [scribbled, lesion])

    recorded = [json.loads(line) for line in record.read_text().splitlines()]
    queries = [command for command in recorded if command[0] == "methods"]
    commands = [command for command in recorded if command[0] != "methods"]
    assert queries, "the logic asks the command line which methods exist"
    assert [command[0] for command in commands] == ["segment"] * 3 + ["train"] * 5 + ["predict"]
    parser = build_parser()
    for query in queries:
        assert parser.parse_args(query).json
    parsed = []
    for command in commands:
        try:
            parsed.append(parser.parse_args(command))
        except SystemExit:
            pytest.fail(f"the real parser refuses a command line the logic builds: {command}")
    assert [arguments.method for arguments in parsed[:3]] == ["interactive", "weakseg", "growcut"]
    assert [arguments.method for arguments in parsed[3:6]] == ["cohort", "pce", "maag"]
    assert parsed[5].unpaired_masks and parsed[6].resume and parsed[7].image_labels
    assert all(arguments.progress == "lines" for arguments in parsed)
    assert parsed[8].format == ".seg.nrrd" and len(parsed[8].images) == 2


# ----------------------------------------------------------------------------- predict names


def test_stand_in_names_predict_outputs_as_the_real_command(tmp_path):
    from weakseg.cases import list_cases
    from weakseg.methods.scribble_settings import CohortConfig
    from weakseg.methods.scribble_training import train_cohort

    (tmp_path / "cohort").mkdir()
    folder = write_two_blob_cohort(tmp_path / "cohort", 2)
    model = tmp_path / "model.pt"
    train_cohort(list_cases(folder), model, CohortConfig(steps=2, image_size=32, channels=(4, 8)), TWO_BLOBS)
    stubModel = tmp_path / "model.json"
    stubModel.write_text(json.dumps({"classes": TWO_BLOBS}))
    image = sitk.ReadImage(str(folder / "case001_image.nii.gz"))
    inputs = []
    for name in ("Case.1.nrrd", "plain.nii.gz", "scan.mha"):
        inputs.append(str(tmp_path / name))
        sitk.WriteImage(image, inputs[-1])
    real = run([*REAL_CLI, "predict", str(model), *inputs, "--out", str(tmp_path / "real"), "--progress", "none",
                "--device", "cpu"])
    standIn = run([*STAND_IN, "predict", str(stubModel), *inputs, "--out", str(tmp_path / "stand-in"), "--progress", "none"])
    assert real.returncode == standIn.returncode == 0, real.stderr + standIn.stderr
    realNames = sorted(path.name for path in (tmp_path / "real").iterdir())
    assert realNames == ["Case.1.seg.nrrd", "plain.seg.nrrd", "scan.seg.nrrd"]
    assert sorted(path.name for path in (tmp_path / "stand-in").iterdir()) == realNames


# ----------------------------------------------------------------------------- exit codes


@pytest.fixture
def segmentFiles(tmp_path) -> dict[str, str]:
    """image.nrrd (the phantom with strong noise, where grow-cut and a per-voxel rule differ),
    scribbles.nrrd on its grid and shifted.nrrd on another grid."""
    image, _ = phantom()
    image = image + np.random.default_rng(7).normal(0.0, 25.0, image.shape).astype(np.float32)
    masks = scribbleMasks()
    codes = np.full(image.shape, 255, np.uint8)
    for code, name in enumerate(("background", "LV", "RV")):
        codes[masks[name]] = code
    files = {}
    for name, array, origin in (("image", image, (0.0, 0.0, 0.0)), ("scribbles", codes, (0.0, 0.0, 0.0)),
                                ("shifted", codes, (5.0, 0.0, 0.0))):
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing((0.7, 0.9, 2.5))
        volume.SetOrigin(origin)
        files[name] = str(tmp_path / f"{name}.nrrd")
        sitk.WriteImage(volume, files[name])
    return files


def test_growcut_exit_code_and_result_match_the_real_command(segmentFiles, tmp_path):
    results = {}
    for name, command in (("real", REAL_CLI), ("stand-in", STAND_IN)):
        out = str(tmp_path / f"{name}.nrrd")
        completed = run([*command, "segment", segmentFiles["image"], "--scribbles", segmentFiles["scribbles"], "--out", out,
                         "--classes", CLASSES, "--method", "growcut", "--progress", "none"])
        assert completed.returncode == 0, completed.stderr
        results[name] = sitk.GetArrayFromImage(sitk.ReadImage(out))
    np.testing.assert_array_equal(results["stand-in"], results["real"])


def test_bad_input_exits_2_in_both(segmentFiles, tmp_path):
    (tmp_path / "data").mkdir()
    data = write_two_blob_cohort(tmp_path / "data", 1)
    for command in (REAL_CLI, STAND_IN):
        otherGrid = run([*command, "segment", segmentFiles["image"], "--scribbles", segmentFiles["shifted"],
                         "--out", str(tmp_path / "out.nrrd"), "--classes", CLASSES, "--method", "growcut", "--progress", "none"])
        assert otherGrid.returncode == 2 and "shifted.nrrd" in otherGrid.stderr, (command, otherGrid.stderr)
        missing = tmp_path / "missing.pt"
        resume = run([*command, "train", str(data), "--out", str(missing), "--classes", ",".join(TWO_BLOBS), "--resume",
                      "--progress", "none"])
        assert resume.returncode == 2 and "missing.pt" in resume.stderr, (command, resume.stderr)
        assert not (tmp_path / "out.nrrd").exists() and not missing.exists()


def _terminateAfterFirstProgress(command: list[str], **environment: str) -> int:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, **environment})
    try:
        for line in process.stdout:
            if line.startswith("PROGRESS"):
                process.send_signal(signal.SIGTERM)
                break
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_exits_130_in_both_and_writes_nothing(segmentFiles, tmp_path):
    arguments = ["segment", segmentFiles["image"], "--scribbles", segmentFiles["scribbles"], "--classes", CLASSES,
                 "--progress", "lines"]
    real = _terminateAfterFirstProgress([*REAL_CLI, *arguments, "--out", str(tmp_path / "real.nrrd"), "--device", "cpu"])
    standIn = _terminateAfterFirstProgress([*STAND_IN, *arguments, "--out", str(tmp_path / "stand-in.nrrd")],
                                           WEAKSEG_STUB_SLEEP="60")
    assert real == standIn == 130
    assert not (tmp_path / "real.nrrd").exists() and not (tmp_path / "stand-in.nrrd").exists()


# ----------------------------------------------------------------------------- real training through the logic


@pytest.mark.parametrize("method", ["pce", "maag"])
def test_real_command_line_trains_and_applies_through_the_logic(method, scene, workDirectory, tmp_path):
    logic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    scribbled, _, masked, _ = _cohortScene(scene, logic)
    modelPath = logic.trainCohort([scribbled, masked], tmp_path / f"{method}.pt", method=method,
                                  extraArguments=TINY_TRAINING)
    import torch

    metadata = torch.load(modelPath, weights_only=True)["metadata"]
    assert metadata["model_config"]["architecture"] == "attention-unet2d"
    assert metadata["unpaired_mask_cases"] == (["unpaired-Masked-case"] if method == "maag" else [])
    assert metadata["training_cases"] == (["Scribbled-case"] if method == "maag" else ["Masked-case", "Scribbled-case"])
    newVolume = addVolume(scene, phantom(seed=2)[0], name="New case")
    outputs = logic.applyModel(modelPath, [newVolume], extraArguments=["--device", "cpu"])
    segmentation = outputs[0].GetSegmentation()
    assert sorted(segmentation.GetSegment(segmentId).GetName() for segmentId in segmentation.GetSegmentIDs()) == ["LV", "RV"]
    assert list(workDirectory.iterdir()) == []
