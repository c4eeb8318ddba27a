"""WeakSegLogic from the console, on a real vtkMRMLScene, end to end through a command line process.

Most tests run the logic against ``contract_cli.py``, a stand-in that follows the shared
command line contract (checked against the real one in test_contract_cli.py) and answers in
a second or two; its ``segment --method growcut`` runs WeakSegLib's real grow-cut, so a good
Dice also proves that the volume and the scribbles reached the process aligned. The ``test_real_command_line_*`` tests run the
library's own ``python -m weakseg`` (skipped when it is not installed), training networks for a
few dozen steps only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slicer_test_helpers import (
    STUB_CLI,
    addScribbles,
    addVolume,
    dice,
    paintSegment,
    phantom,
    sceneState,
    scribbleMasks,
)

pytest.importorskip("slicer", reason="slicer-core is not installed")

from WeakSegExtensionLib import mrml_bridge  # noqa: E402
from WeakSegExtensionLib.errors import WeakSegCancelledError, WeakSegInputError  # noqa: E402
from WeakSegExtensionLib.logic import WeakSegLogic  # noqa: E402
from WeakSegExtensionLib.result_segments import SOURCE_TAG, VOLUME_TAG  # noqa: E402
from WeakSegExtensionLib.runner import ProgressEvent  # noqa: E402


@pytest.fixture
def workDirectory(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def logic(scene, workDirectory):
    return WeakSegLogic(scene=scene, cliCommand=[sys.executable, str(STUB_CLI)], temporaryDirectory=str(workDirectory))


@pytest.fixture
def case(scene):
    image, truth = phantom()
    volumeNode = addVolume(scene, image)
    scribbleNode = addScribbles(scene, volumeNode, order=("RV", "background", "LV"))
    return volumeNode, scribbleNode, truth


def segmentMasks(segmentationNode, volumeNode) -> dict[str, np.ndarray]:
    geometry = mrml_bridge.volumeGeometry(volumeNode)
    segmentation = segmentationNode.GetSegmentation()
    return {
        segmentation.GetSegment(segmentId).GetName(): mrml_bridge.segmentMaskOnGrid(segmentationNode, segmentId, geometry)
        for segmentId in segmentation.GetSegmentIDs()
    }


def test_segment_from_scribbles_writes_one_segment_per_class_with_high_dice(logic, case):
    volumeNode, scribbleNode, truth = case
    reports = []
    output = logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut", progressCallback=lambda p, m: reports.append(p))

    masks = segmentMasks(output, volumeNode)
    assert list(masks) == ["LV", "RV"]
    assert dice(masks["LV"], truth == 1) > 0.95
    assert dice(masks["RV"], truth == 2) > 0.95
    assert reports and reports[-1] == 100
    segmentation = output.GetSegmentation()
    for segmentId in segmentation.GetSegmentIDs():
        assert mrml_bridge.segmentTag(output, segmentId, SOURCE_TAG) == "WeakSeg"
        assert mrml_bridge.segmentTag(output, segmentId, VOLUME_TAG) == volumeNode.GetID()
    lv = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("LV"))
    assert "SCT^87878005^Left Ventricle" in lv.GetTerminology()  # the code and meaning of Slicer's General Anatomy list
    assert volumeNode.GetNodeReference("WeakSegResult") is output


def test_preview_then_apply_then_discard_preview_is_the_gui_path(logic, case, scene):
    volumeNode, scribbleNode, truth = case
    job = logic.startSegmentation(volumeNode, scribbleNode, method="growcut")
    while not job.finished:
        job.poll()
        time.sleep(0.02)
    result = job.result()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1  # nothing written yet

    preview = logic.showPreview(result)
    assert preview.GetHideFromEditors() and list(segmentMasks(preview, volumeNode)) == ["LV", "RV"]
    output = logic.applyResult(result)
    assert dice(segmentMasks(output, volumeNode)["RV"], truth == 2) > 0.95
    logic.removePreview(preview)
    assert preview.GetScene() is None
    assert logic.canUndo(output)


def test_result_saved_with_the_segmentation_storage_node_reloads_with_the_same_segments(logic, case, tmp_path):
    import slicer

    volumeNode, scribbleNode, _ = case
    output = logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut")
    before = segmentMasks(output, volumeNode)
    storageNode = slicer.vtkMRMLSegmentationStorageNode()
    storageNode.SetFileName(str(tmp_path / "result.seg.nrrd"))
    assert storageNode.WriteData(output)

    reloadScene = slicer.vtkMRMLScene()
    reloaded = reloadScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    readNode = slicer.vtkMRMLSegmentationStorageNode()
    readNode.SetFileName(str(tmp_path / "result.seg.nrrd"))
    assert readNode.ReadData(reloaded)
    after = segmentMasks(reloaded, volumeNode)
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_scribble_segments_are_unchanged_by_segmentation(logic, case):
    volumeNode, scribbleNode, _ = case
    idsBefore = list(scribbleNode.GetSegmentation().GetSegmentIDs())
    masksBefore = segmentMasks(scribbleNode, volumeNode)
    logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut")
    assert list(scribbleNode.GetSegmentation().GetSegmentIDs()) == idsBefore
    masksAfter = segmentMasks(scribbleNode, volumeNode)
    assert list(masksAfter) == list(masksBefore)
    for name, mask in masksBefore.items():
        np.testing.assert_array_equal(masksAfter[name], mask)


def test_new_results_replace_only_weakseg_segments_and_undo_restores_each_state(logic, case, scene):
    volumeNode, scribbleNode, truth = case
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    userId = paintSegment(output, volumeNode, "LV", truth == 1)
    userMask = segmentMasks(output, volumeNode)["LV"]

    logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut", outputSegmentationNode=output)
    firstRun = segmentMasks(output, volumeNode)
    assert list(firstRun) == ["LV", "LV (WeakSeg)", "RV"]

    smaller = scribbleMasks()
    smaller["LV"][:] = False
    smaller["LV"][0, 10, 10] = True  # one LV voxel: a different result
    otherScribbles = addScribbles(scene, volumeNode, masks=smaller, name="Fewer scribbles")
    logic.segmentFromScribbles(volumeNode, otherScribbles, method="growcut", outputSegmentationNode=output)
    secondRun = segmentMasks(output, volumeNode)
    assert sorted(secondRun) == ["LV", "LV (WeakSeg)", "RV"]
    np.testing.assert_array_equal(secondRun["LV"], userMask)
    assert output.GetSegmentation().GetSegment(userId) is not None

    assert logic.undoLastResult(output)
    restored = segmentMasks(output, volumeNode)
    assert list(restored) == list(firstRun)
    for name in firstRun:
        np.testing.assert_array_equal(restored[name], firstRun[name])
    assert logic.undoLastResult(output)
    assert list(segmentMasks(output, volumeNode)) == ["LV"]
    assert not logic.undoLastResult(output)


def test_scribbles_on_a_different_grid_raise_and_leave_the_scene_unchanged(logic, case, scene, workDirectory):
    volumeNode, _, _ = case
    image, _ = phantom()
    otherVolume = addVolume(scene, image, name="Other grid", spacing=(1.0, 1.0, 1.0))
    otherScribbles = addScribbles(scene, otherVolume, name="Scribbles on other grid")
    before = sceneState(scene)
    with pytest.raises(WeakSegInputError, match="segmentation 'Scribbles on other grid'.*volume 'Phantom'"):
        logic.segmentFromScribbles(volumeNode, otherScribbles, method="growcut")
    assert sceneState(scene) == before
    assert list(workDirectory.iterdir()) == []


def test_scribbles_without_background_raise_and_leave_the_scene_unchanged(logic, case, scene, workDirectory):
    volumeNode, _, _ = case
    masks = scribbleMasks()
    noBackground = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "No background")
    paintSegment(noBackground, volumeNode, "LV", masks["LV"])
    paintSegment(noBackground, volumeNode, "RV", masks["RV"])
    before = sceneState(scene)
    with pytest.raises(WeakSegInputError, match="segmentation 'No background' has no segment named 'background'"):
        logic.segmentFromScribbles(volumeNode, noBackground, method="growcut")
    assert sceneState(scene) == before
    assert list(workDirectory.iterdir()) == []


def test_volume_weakseg_cannot_read_raises_and_leaves_the_scene_unchanged(logic, case, scene, workDirectory):
    import vtk

    _, scribbleNode, _ = case
    fieldNode = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "Two-value field")
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(32, 28, 6)
    imageData.AllocateScalars(vtk.VTK_FLOAT, 2)
    fieldNode.SetAndObserveImageData(imageData)
    before = sceneState(scene)
    with pytest.raises(WeakSegInputError, match="volume 'Two-value field' has 2 values per voxel"):
        logic.segmentFromScribbles(fieldNode, scribbleNode, method="growcut")
    assert sceneState(scene) == before
    assert list(workDirectory.iterdir()) == []


def test_scribble_node_cannot_be_the_output(logic, case, scene):
    volumeNode, scribbleNode, _ = case
    before = sceneState(scene)
    with pytest.raises(WeakSegInputError, match="holds the scribbles"):
        logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut", outputSegmentationNode=scribbleNode)
    assert sceneState(scene) == before


def test_command_line_input_errors_name_nodes_instead_of_temporary_files(logic, case, scene, monkeypatch):
    volumeNode, scribbleNode, _ = case
    monkeypatch.setenv("WEAKSEG_STUB_FAIL", "no background scribbles")
    before = sceneState(scene)
    with pytest.raises(WeakSegInputError) as raised:
        logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut")
    assert str(raised.value) == "segmentation 'Scribbles': no background scribbles"
    assert sceneState(scene) == before


def test_cancel_stops_the_process_writes_nothing_and_removes_the_work_folder(logic, case, scene, workDirectory, monkeypatch):
    volumeNode, scribbleNode, _ = case
    monkeypatch.setenv("WEAKSEG_STUB_SLEEP", "60")
    before = sceneState(scene)
    job = logic.startSegmentation(volumeNode, scribbleNode, method="growcut")
    while job.percent == 0 and not job.finished:
        job.poll()
        time.sleep(0.05)
    job.cancel()
    assert job.finished
    with pytest.raises(WeakSegCancelledError):
        job.result()
    assert sceneState(scene) == before
    assert list(workDirectory.iterdir()) == []


def test_image_label_csv_round_trip(logic, scene, tmp_path):
    image, _ = phantom()
    first, second = addVolume(scene, image, name="Case A"), addVolume(scene, image, name="Case B")
    classes = ["background", "tumor"]
    logic.setImageLabel(first, "tumor", classNames=classes)
    logic.setImageLabel(first, "healthy", firstSlice=0, lastSlice=1, classNames=classes)
    logic.setImageLabel(first, "tumor", firstSlice=3, lastSlice=4, classNames=classes)
    logic.setImageLabel(second, "healthy", classNames=classes)
    assert logic.getImageLabel(first) == "tumor"
    assert logic.getImageLabel(first, sliceIndex=1) == "healthy"
    assert logic.getImageLabel(first, sliceIndex=2) == "tumor"
    expected = {node.GetID(): mrml_bridge.readImageLabels(node) for node in (first, second)}

    assert logic.exportLabels(tmp_path / "labels.csv") == 4
    for node in (first, second):
        mrml_bridge.writeImageLabels(node, None, [])
    changed = logic.importLabels(tmp_path / "labels.csv", classNames=classes)
    assert {node.GetID() for node in changed} == {first.GetID(), second.GetID()}
    assert {node.GetID(): mrml_bridge.readImageLabels(node) for node in (first, second)} == expected


def test_bad_label_csv_changes_nothing(logic, scene, tmp_path):
    image, _ = phantom()
    volumeNode = addVolume(scene, image, name="Case A")
    logic.setImageLabel(volumeNode, "healthy")
    (tmp_path / "bad.csv").write_text("volume,label,first_slice,last_slice\nCase A,tumor,,\nCase Z,tumor,,\n")
    with pytest.raises(WeakSegInputError, match="line 3: no volume named 'Case Z'"):
        logic.importLabels(tmp_path / "bad.csv")
    assert logic.getImageLabel(volumeNode) == "healthy"
    with pytest.raises(WeakSegInputError, match="not one of"):
        logic.setImageLabel(volumeNode, "liver", classNames=["background", "tumor"])
    with pytest.raises(WeakSegInputError, match="slices 4..9 are not within 0..5"):
        logic.setImageLabel(volumeNode, "healthy", firstSlice=4, lastSlice=9)


def test_train_cohort_then_apply_model_through_the_command_line(logic, scene, tmp_path):
    import json

    image, truth = phantom()
    scribbled = addVolume(scene, image, name="Scribbled case")
    masked = addVolume(scene, image, name="Masked case")
    labelled = addVolume(scene, image, name="Labelled case")
    addVolume(scene, image, name="Unlabelled case")
    logic.setScribbleSegmentation(scribbled, addScribbles(scene, scribbled, order=("LV", "background", "RV")))
    mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mask")
    paintSegment(mask, masked, "LV", truth == 1)
    paintSegment(mask, masked, "RV", truth == 2)
    logic.setMaskSegmentation(masked, mask)
    logic.setImageLabel(labelled, "LV", firstSlice=0, lastSlice=2)

    modelPath = logic.trainCohort(logic.volumeNodes(), tmp_path / "model.pt")
    model = json.loads(Path(modelPath).read_text())
    assert model["classes"] == ["background", "LV", "RV"]
    assert model["cases"] == ["Labelled-case", "Masked-case", "Scribbled-case"]
    assert model["scribbled"] == ["Masked-case", "Scribbled-case"]  # a full mask is also the case's training labels
    assert model["masked"] == ["Masked-case"]
    assert model["image_labels"] == ["case,label,first_slice,last_slice", "Labelled-case,LV,0,2"]

    outputs = logic.applyModel(modelPath, [labelled])
    masks = segmentMasks(outputs[0], labelled)
    assert list(masks) == ["LV"]
    assert dice(masks["LV"], truth == 1) > 0.95  # the stub model marks the brightest structure


def test_maag_training_uses_the_masks_of_other_volumes_as_the_shape_prior(logic, scene, tmp_path):
    import json

    image, truth = phantom()
    scribbled = addVolume(scene, image, name="Scribbled case")
    both = addVolume(scene, image, name="Both case")
    masked = addVolume(scene, image, name="Masked case")
    for volumeNode in (scribbled, both):
        logic.setScribbleSegmentation(volumeNode, addScribbles(scene, volumeNode, name=f"{volumeNode.GetName()} scribbles"))
    for volumeNode in (both, masked):
        mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volumeNode.GetName()} mask")
        paintSegment(mask, volumeNode, "LV", truth == 1)
        paintSegment(mask, volumeNode, "RV", truth == 2)
        logic.setMaskSegmentation(volumeNode, mask)

    model = json.loads(Path(logic.trainCohort(logic.volumeNodes(), tmp_path / "maag.pt", method="maag")).read_text())
    assert model["method"] == "maag"
    assert model["scribbled"] == ["Both-case", "Scribbled-case"]  # trained from scribbles only ...
    assert model["masked"] == []  # ... never from their own masks
    assert model["unpaired"] == ["unpaired-Masked-case_label.nrrd"]

    with pytest.raises(WeakSegInputError, match="needs full masks of other volumes"):
        logic.trainCohort([scribbled, both], tmp_path / "maag.pt", method="maag")
    with pytest.raises(WeakSegInputError, match="unknown training method"):
        logic.trainCohort([scribbled], tmp_path / "maag.pt", method="adversarial")


@pytest.mark.parametrize("method", ["imagelabel", "cycle"])
def test_image_label_training_passes_the_cohort_image_labels(logic, scene, tmp_path, method):
    import json

    image, _ = phantom()
    labelled = addVolume(scene, image, name="Lesion case")
    healthy = addVolume(scene, image, name="Healthy case")
    scribbled = addVolume(scene, image, name="Scribbled case")
    logic.setImageLabel(labelled, "LV", firstSlice=0, lastSlice=2)
    logic.setImageLabel(healthy, "healthy")
    logic.setScribbleSegmentation(scribbled, addScribbles(scene, scribbled))

    model = json.loads(Path(logic.trainCohort(logic.volumeNodes(), tmp_path / "lesions.pt",
                                              classNames=["background", "LV"], method=method)).read_text())
    assert model["method"] == method
    assert model["cases"] == ["Healthy-case", "Lesion-case"]  # volumes without an image label are left out
    assert model["image_labels"] == ["case,label,first_slice,last_slice", "Lesion-case,LV,0,2", "Healthy-case,healthy,,"]
    with pytest.raises(WeakSegInputError, match="no volume of the cohort has one"):
        logic.trainCohort([scribbled], tmp_path / "lesions.pt", method=method)


def test_cycle_is_offered_as_a_training_method_from_image_labels(logic):
    cycle = next(entry for entry in logic.methodCatalog() if entry["name"] == "cycle")
    assert cycle["usage"] == "trained" and cycle["learns_from"] == ["image-labels"]
    assert {"--gan-steps", "--joint-weight", "--checkpoint-every"} <= {option["option"] for option in cycle["options"]}


def test_transfer_training_takes_source_masks_and_target_image_labels(logic, scene, tmp_path):
    import json

    image, truth = phantom()
    source = addVolume(scene, image, name="Source case")
    target = addVolume(scene, image, name="Target case")
    mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Source mask")
    paintSegment(mask, source, "LV", truth == 1)
    paintSegment(mask, source, "RV", truth == 2)
    logic.setMaskSegmentation(source, mask)
    logic.setImageLabel(target, "LV", firstSlice=0, lastSlice=2)
    classes = ["background", "LV", "RV"]
    with pytest.raises(WeakSegInputError, match="mark fully segmented volumes as source"):
        logic.trainCohort(logic.volumeNodes(), tmp_path / "transfer.pt", classNames=classes, method="transfer")

    logic.setSourceVolume(source)
    assert [row.isSource for row in logic.cohortRows()] == [True, False]
    model = json.loads(Path(logic.trainCohort(logic.volumeNodes(), tmp_path / "transfer.pt", classNames=classes,
                                              method="transfer")).read_text())
    assert model["method"] == "transfer"
    assert model["cases"] == ["Target-case"] and model["masked"] == []  # the target's data folder
    assert model["source"] == ["Source-case_label.nrrd"]  # the source's masks, in their own folder
    assert model["image_labels"] == ["case,label,first_slice,last_slice", "Target-case,LV,0,2"]

    logic.setMaskSegmentation(source, None)
    with pytest.raises(WeakSegInputError, match="Source case have no full mask"):
        logic.trainCohort(logic.volumeNodes(), tmp_path / "transfer.pt", classNames=classes, method="transfer")


STEPS_ARGUMENTS = ["--steps", "25", "--device", "cpu", "--seed", "0"]


@pytest.fixture(scope="module")
def realCliHelp() -> str:
    """``python -m weakseg segment --help``; skips while the library's command line is not installed."""
    completed = subprocess.run([sys.executable, "-m", "weakseg", "segment", "--help"], capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        pytest.skip("`python -m weakseg segment` is not available yet")
    return completed.stdout


def test_real_command_line_growcut_segments_the_phantom(realCliHelp, scene, workDirectory, case):
    volumeNode, scribbleNode, truth = case
    realLogic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    output = realLogic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut")
    masks = segmentMasks(output, volumeNode)
    assert list(masks) == ["LV", "RV"]
    assert dice(masks["LV"], truth == 1) > 0.8
    assert dice(masks["RV"], truth == 2) > 0.8


def test_real_command_line_default_method_with_few_training_steps(realCliHelp, scene, workDirectory, case):
    if "--steps" not in realCliHelp:
        pytest.skip("`weakseg segment` has no --steps option")
    volumeNode, scribbleNode, truth = case
    realLogic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    output = realLogic.segmentFromScribbles(volumeNode, scribbleNode, extraArguments=STEPS_ARGUMENTS)
    masks = segmentMasks(output, volumeNode)
    assert list(masks) == ["LV", "RV"]
    assert dice(masks["LV"], truth == 1) > 0.7
    assert dice(masks["RV"], truth == 2) > 0.7


def test_real_command_line_trains_and_applies_a_cohort_model(realCliHelp, scene, workDirectory, tmp_path):
    image, truth = phantom()
    volumes = [addVolume(scene, image, name=f"Case {index}") for index in range(2)]
    realLogic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    for volumeNode in volumes:
        realLogic.setScribbleSegmentation(volumeNode, addScribbles(scene, volumeNode, name=f"{volumeNode.GetName()} scribbles"))
    modelPath = realLogic.trainCohort(volumes, tmp_path / "model.pt", extraArguments=["--steps", "10", "--device", "cpu"])
    assert Path(modelPath).is_file()
    newVolume = addVolume(scene, phantom(seed=1)[0], name="New case")
    outputs = realLogic.applyModel(modelPath, [newVolume], extraArguments=["--device", "cpu"])
    assert list(segmentMasks(outputs[0], newVolume)) == ["LV", "RV"]
    assert outputs[0] is newVolume.GetNodeReference("WeakSegResult")
    assert list(workDirectory.iterdir()) == []


@pytest.mark.parametrize("method, quick", [
    ("imagelabel", ["--steps", "2"]),
    ("cycle", ["--classifier-steps", "2", "--gan-steps", "2", "--steps", "2", "--image-size", "32"]),
])
def test_real_command_line_trains_from_slicer_image_labels(realCliHelp, scene, workDirectory, tmp_path, method, quick):
    image, _ = phantom()
    realLogic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    lesion = addVolume(scene, image, name="Lesion case")
    realLogic.setImageLabel(lesion, "healthy")
    realLogic.setImageLabel(lesion, "LV", firstSlice=1, lastSlice=3)
    modelPath = realLogic.trainCohort([lesion], tmp_path / f"{method}.pt", classNames=["background", "LV"],
                                      method=method, extraArguments=[*quick, "--device", "cpu"])
    assert Path(modelPath).is_file()
    outputs = realLogic.applyModel(modelPath, [lesion], extraArguments=["--device", "cpu"])
    assert outputs[0] is lesion.GetNodeReference("WeakSegResult")
    assert list(workDirectory.iterdir()) == []


def test_real_command_line_cancel_stops_training_and_writes_nothing(realCliHelp, scene, workDirectory, case):
    volumeNode, scribbleNode, _ = case
    realLogic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    before = sceneState(scene)
    job = realLogic.startSegmentation(volumeNode, scribbleNode, extraArguments=["--device", "cpu"])
    while not job.finished and not any(isinstance(event, ProgressEvent) for event in job.poll()):
        time.sleep(0.05)
    job.cancel()
    with pytest.raises(WeakSegCancelledError):
        job.result()
    assert job.runner.returncode in (130, -9)  # 130: the CLI stopped itself; -9: killed after the grace period
    assert sceneState(scene) == before
    assert list(workDirectory.iterdir()) == []


def test_create_scribble_segmentation_adds_background_first_as_the_gui_says(logic, scene):
    volumeNode = addVolume(scene, phantom()[0])
    for classNames in (["LV", "RV"], ["background", "LV", "RV"], ["LV", "Background", "RV"]):
        node = logic.createScribbleSegmentation(volumeNode, classNames)
        assert mrml_bridge.segmentNames(node) == ["background", "LV", "RV"], classNames
    with pytest.raises(WeakSegInputError, match="at least one more class"):
        logic.createScribbleSegmentation(volumeNode, ["background"])


def test_paint_scribbles_from_numpy_masks_then_segment(logic, scene):
    image, truth = phantom()
    volumeNode = addVolume(scene, image)
    scribbleNode = logic.createScribbleSegmentation(volumeNode, ["LV", "RV"])
    masks = scribbleMasks(image.shape)
    for className, mask in masks.items():
        logic.paintScribbles(scribbleNode, volumeNode, className, mask)
    labels, classNames = logic.scribbleLabels(volumeNode, scribbleNode)
    assert classNames == ["background", "LV", "RV"]
    for code, className in enumerate(classNames):
        assert np.array_equal(labels == code, masks[className]), className
    output = logic.segmentFromScribbles(volumeNode, scribbleNode, method="growcut")
    assert dice(segmentMasks(output, volumeNode)["LV"], truth == 1) > 0.95
    with pytest.raises(WeakSegInputError, match="no segment named 'Myo'"):
        logic.paintScribbles(scribbleNode, volumeNode, "Myo", masks["LV"])
    with pytest.raises(WeakSegInputError, match="mask of shape"):
        logic.paintScribbles(scribbleNode, volumeNode, "LV", masks["LV"][1:])


def test_training_refuses_image_labels_of_one_class_set_with_scribbles_of_another(logic, scene, tmp_path):
    image, _ = phantom()
    labelled = addVolume(scene, image, name="Tumour case")
    scribbled = addVolume(scene, image, name="Heart case")
    logic.setImageLabel(labelled, "tumor")
    logic.setScribbleSegmentation(scribbled, addScribbles(scene, scribbled))
    for method in ("cohort", "imagelabel"):
        with pytest.raises(WeakSegInputError, match=r"\['tumor'\].*\['LV', 'RV'\]"):
            logic.trainCohort([labelled, scribbled], tmp_path / "model.pt", method=method)
    assert not (tmp_path / "model.pt").exists()


def test_repeated_weakseg_segment_passes_one_warm_start_folder_and_growcut_none(logic, case, tmp_path, monkeypatch):
    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv("WEAKSEG_STUB_RECORD", str(record))
    volumeNode, scribbleNode, _ = case
    for method in ("weakseg", "weakseg", "growcut"):
        logic.segmentFromScribbles(volumeNode, scribbleNode, method=method)
    commands = [json.loads(line) for line in record.read_text().splitlines()]
    segments = [command for command in commands if command[0] == "segment"]
    caches = [command[command.index("--cache") + 1] if "--cache" in command else None for command in segments]
    assert caches[0] == caches[1] == logic.warmStartDirectory and caches[2] is None
    logic.warmStartDirectory = None
    logic.segmentFromScribbles(volumeNode, scribbleNode, method="weakseg")
    assert "--cache" not in json.loads(record.read_text().splitlines()[-1])


def test_real_command_line_second_segment_continues_from_the_first_network(realCliHelp, scene, workDirectory, case):
    if "--cache" not in realCliHelp:
        pytest.skip("`weakseg segment` has no --cache option")
    volumeNode, scribbleNode, truth = case
    realLogic = WeakSegLogic(scene=scene, temporaryDirectory=str(workDirectory))
    runs = []
    for _ in range(2):
        messages = []
        output = realLogic.segmentFromScribbles(volumeNode, scribbleNode, extraArguments=STEPS_ARGUMENTS,
                                                progressCallback=lambda _percent, message: messages.append(message))
        runs.append(messages)
    assert not any("continuing the previous network" in message for message in runs[0])
    assert any("continuing the previous network" in message for message in runs[1])
    assert len(list(Path(realLogic.warmStartDirectory).glob("*.pt"))) == 1
    masks = segmentMasks(output, volumeNode)
    assert dice(masks["LV"], truth == 1) > 0.7 and dice(masks["RV"], truth == 2) > 0.7


def test_shape_gan_training_takes_a_shape_model_or_the_masks_of_other_volumes(logic, scene, tmp_path):
    import json

    image, truth = phantom()
    plain = addVolume(scene, image, name="Plain case")
    scribbled = addVolume(scene, image, name="Scribbled case")
    masked = addVolume(scene, image, name="Masked case")
    logic.setScribbleSegmentation(scribbled, addScribbles(scene, scribbled, name="scribbles"))
    mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mask")
    paintSegment(mask, masked, "LV", truth == 1)
    logic.setMaskSegmentation(masked, mask)
    shapeGan = next(entry for entry in logic.methodCatalog() if entry["name"] == "shape-gan")
    assert "shape-model" in shapeGan["learns_from"] and not shapeGan["needs_unpaired_masks"]
    assert "--shape-model" in [option["option"] for option in shapeGan["options"]]

    model = json.loads(Path(logic.trainCohort(logic.volumeNodes(), tmp_path / "ellipse.pt", method="shape-gan",
                                              classNames=["background", "head"], shapeModel="ellipse")).read_text())
    assert model["method"] == "shape-gan" and model["shape_model"] == "ellipse"
    assert model["cases"] == ["Plain-case", "Scribbled-case"]  # images only: no scribbles, no mask
    assert model["scribbled"] == [] and model["masked"] == [] and model["unpaired"] == []

    model = json.loads(Path(logic.trainCohort(logic.volumeNodes(), tmp_path / "unpaired.pt", method="shape-gan")).read_text())
    assert model["cases"] == ["Plain-case", "Scribbled-case"] and model["shape_model"] is None
    assert model["unpaired"] == ["unpaired-Masked-case_label.nrrd"]

    with pytest.raises(WeakSegInputError, match="needs a shape model"):
        logic.trainCohort([plain], tmp_path / "none.pt", method="shape-gan")
    with pytest.raises(WeakSegInputError, match="does not take a shape model"):
        logic.trainCohort([scribbled], tmp_path / "cohort.pt", method="cohort", shapeModel="ellipse")


def test_the_panels_shape_model_reaches_only_a_method_that_learns_from_shapes(logic):
    assert logic.shapeModelFor("shape-gan", " ellipse:major=0.3-0.8 ") == "ellipse:major=0.3-0.8"
    assert logic.shapeModelFor("shape-gan", "") == ""
    assert logic.shapeModelFor("cohort", "ellipse") == ""  # the field kept its text while the user tried cohort
    with pytest.raises(WeakSegInputError, match="unknown training method 'no-such-method'"):
        logic.shapeModelFor("no-such-method", "ellipse")
