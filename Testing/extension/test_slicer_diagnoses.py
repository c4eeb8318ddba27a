"""Diagnoses in the Slicer module: labels per volume for method collaborative, predictions stored on the volumes.

The logic runs against the stand-in command line (``contract_cli.py``); the command line it
builds for method collaborative is also parsed by the real parser.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slicer_test_helpers import STUB_CLI, addVolume, paintSegment, phantom

pytest.importorskip("slicer", reason="slicer-core is not installed")

from WeakSegExtensionLib import diagnoses  # noqa: E402
from WeakSegExtensionLib.errors import WeakSegInputError  # noqa: E402
from WeakSegExtensionLib.logic import WeakSegLogic  # noqa: E402


@pytest.fixture
def logic(scene, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return WeakSegLogic(scene=scene, cliCommand=[sys.executable, str(STUB_CLI)], temporaryDirectory=str(work))


def _cohort(scene, logic):
    image, truth = phantom()
    masked = addVolume(scene, image, name="Masked case")
    diagnosed = addVolume(scene, image, name="Diagnosed case")
    addVolume(scene, image, name="Unlabelled case")
    mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mask")
    paintSegment(mask, masked, "lesion", truth == 1)
    logic.setMaskSegmentation(masked, mask)
    logic.setDiagnosisLabel(masked, "melanoma")
    logic.setDiagnosisLabel(diagnosed, "common_nevus")
    return masked, diagnosed


def test_diagnosis_label_is_a_node_attribute_shown_in_the_cohort_rows(logic, scene):
    masked, diagnosed = _cohort(scene, logic)
    assert masked.GetAttribute(diagnoses.LABEL_ATTRIBUTE) == "melanoma"
    rows = {row.volumeNode.GetName(): row for row in logic.cohortRows()}
    assert rows["Diagnosed case"].diagnosis == "common_nevus" and rows["Diagnosed case"].hasSupervision
    assert rows["Unlabelled case"].diagnosis is None and not rows["Unlabelled case"].hasSupervision
    assert rows["Diagnosed case"].imageLabel is None  # a diagnosis is not an image-level class label
    logic.setDiagnosisLabel(diagnosed, None)
    assert diagnoses.diagnosisLabel(diagnosed) is None
    with pytest.raises(WeakSegInputError, match="no comma"):
        logic.setDiagnosisLabel(diagnosed, "a,b")


def test_collaborative_training_passes_masks_and_diagnoses_then_predictions_become_node_attributes(logic, scene, tmp_path):
    masked, diagnosed = _cohort(scene, logic)
    modelPath = logic.trainCohort(logic.volumeNodes(), tmp_path / "collaborative.pt", method="collaborative")
    model = json.loads(Path(modelPath).read_text())
    assert model["method"] == "collaborative"
    assert model["cases"] == ["Diagnosed-case", "Masked-case"]  # the unlabelled volume is left out
    assert model["masks_split"] == "Masked-case"
    assert model["diagnoses"] == {"Masked-case": "melanoma", "Diagnosed-case": "common_nevus"}

    logic.applyModel(modelPath, [diagnosed])
    diagnosis, probabilities = logic.predictedDiagnosis(diagnosed)
    assert diagnosis == "common_nevus"  # the stand-in gives the first diagnosis, sorted
    assert probabilities == {"common_nevus": 0.75, "melanoma": 0.25}
    assert diagnosed.GetAttribute(diagnoses.PREDICTED_ATTRIBUTE) == "common_nevus"
    assert diagnoses.predictedText(diagnosed) == "common_nevus (0.75)"
    assert logic.predictedDiagnosis(masked) is None


def test_collaborative_training_needs_a_mask_and_a_diagnosis(logic, scene, tmp_path):
    masked, diagnosed = _cohort(scene, logic)
    with pytest.raises(WeakSegInputError, match="full mask linked"):
        logic.trainCohort([diagnosed], tmp_path / "m.pt", method="collaborative")
    logic.setDiagnosisLabel(masked, None)
    with pytest.raises(WeakSegInputError, match="volumes with a diagnosis"):
        logic.trainCohort([masked], tmp_path / "m.pt", method="collaborative")


def test_collaborative_command_line_parses_with_the_real_parser(logic, scene, tmp_path, monkeypatch):
    from weakseg.cli import build_parser

    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv("WEAKSEG_STUB_RECORD", str(record))
    _cohort(scene, logic)
    logic.trainCohort(logic.volumeNodes(), tmp_path / "collaborative.pt", method="collaborative")
    command = [json.loads(line) for line in record.read_text().splitlines() if json.loads(line)[0] == "train"][0]
    arguments = build_parser().parse_args(command)
    assert arguments.method == "collaborative" and arguments.masks_split == "Masked-case"
    assert Path(arguments.image_labels).name == diagnoses.DIAGNOSES_FILE


def test_predictions_file_round_trip_and_bad_file(tmp_path, scene):
    from weakseg.predictions import diagnosis_columns, write_predictions

    path = tmp_path / "predictions.csv"
    write_predictions(path, [("case-1", diagnosis_columns("melanoma", {"common_nevus": 0.2, "melanoma": 0.8}))])
    assert diagnoses.readPredictions(path) == {"case-1": ("melanoma", {"common_nevus": 0.2, "melanoma": 0.8})}
    volume = addVolume(scene, phantom()[0], name="case 1")
    assert diagnoses.storePredictions(path, {"case-1": volume}) == [volume]
    diagnoses.storePrediction(volume, "common_nevus", {"common_nevus": 0.6})
    assert diagnoses.predictedDiagnosis(volume) == ("common_nevus", {"common_nevus": 0.6})  # old probabilities gone
    path.write_text("image,diagnosis,p_a\nx,a,high\n")
    with pytest.raises(WeakSegInputError, match="line 2: a probability is not a number"):
        diagnoses.readPredictions(path)


def test_the_training_method_menu_lists_collaborative_from_the_library_catalogue():
    from test_method_menus import TOOLTIP_ROLE, StandInComboBox, library_catalog

    from WeakSegExtensionLib.method_menus import TRAINED_USAGE, MethodMenu

    box = StandInComboBox()
    MethodMenu(box, TRAINED_USAGE, "trainingMethod", TOOLTIP_ROLE).fill(library_catalog(), None)
    assert "collaborative" in box.items
