"""Colour volumes in the Slicer module: a photograph that Slicer loads as an RGB vector volume.

Dermoscopy pictures (PH2, ISIC) arrive in Slicer as ``vtkMRMLVectorVolumeNode`` with three
values per voxel. The logic hands them to the command line with their three channels and
their geometry, so that a method sees the colours (and a model trained on colour pictures
normalises them as a colour cohort), and the result lands on the picture's grid.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk

from slicer_test_helpers import addVolume, dice, paintSegment

pytest.importorskip("slicer", reason="slicer-core is not installed")
pytest.importorskip("weakseg", reason="WeakSegLib is not installed")

from WeakSegExtensionLib import mrml_bridge  # noqa: E402
from WeakSegExtensionLib.logic import WeakSegLogic  # noqa: E402

SHAPE = (1, 40, 48)  # one slice, as Slicer loads a PNG or JPEG


def skinPhoto(seed: int = 0, lesion: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """An RGB picture ``(1, Y, X, 3)`` uint8 of pink skin with a brown disc, and the disc's mask ``(1, Y, X)``."""
    _, y, x = np.indices(SHAPE)
    mask = ((y - 20) ** 2 + (x - 26) ** 2 <= 90) if lesion else np.zeros(SHAPE, dtype=bool)
    picture = np.where(mask[..., None], [[[[110, 70, 45]]]], [[[[225, 180, 165]]]]).astype(np.float64)
    picture += np.random.default_rng(seed).normal(0, 6, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8), mask


@pytest.mark.parametrize("alpha", [False, True])
def test_a_colour_volume_reaches_the_command_line_with_its_channels_and_geometry(scene, tmp_path, alpha):
    from weakseg.data import is_colour_picture
    from weakseg.io import read_image

    picture, _ = skinPhoto()
    stored = np.concatenate([picture, np.full(SHAPE + (1,), 255, np.uint8)], axis=-1) if alpha else picture
    colourNode = addVolume(scene, stored, name="Photo")
    greyNode = addVolume(scene, picture[..., 0], name="Red channel")
    mrml_bridge.writeVolumeFile(colourNode, tmp_path / f"photo{mrml_bridge.FILE_SUFFIX}")
    mrml_bridge.writeVolumeFile(greyNode, tmp_path / f"red{mrml_bridge.FILE_SUFFIX}")

    loaded = read_image(tmp_path / f"photo{mrml_bridge.FILE_SUFFIX}")
    assert loaded.array.shape == (3,) + SHAPE  # alpha dropped
    np.testing.assert_array_equal(loaded.array, np.moveaxis(picture, -1, 0).astype(np.float32))
    assert is_colour_picture(loaded.array)
    grey = sitk.ReadImage(str(tmp_path / f"red{mrml_bridge.FILE_SUFFIX}"))
    for colourValue, greyValue in ((loaded.reference.GetOrigin(), grey.GetOrigin()),
                                   (loaded.reference.GetSpacing(), grey.GetSpacing()),
                                   (loaded.reference.GetDirection(), grey.GetDirection())):
        np.testing.assert_allclose(colourValue, greyValue, atol=1e-6)


@pytest.fixture
def realLogic(scene, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return WeakSegLogic(scene=scene, cliCommand=[sys.executable, "-m", "weakseg"], temporaryDirectory=str(work))


def _segmentMask(segmentationNode, volumeNode, name: str) -> np.ndarray:
    segmentation = segmentationNode.GetSegmentation()
    return mrml_bridge.segmentMaskOnGrid(segmentationNode, segmentation.GetSegmentIdBySegmentName(name),
                                         mrml_bridge.volumeGeometry(volumeNode))


def test_scribbles_on_a_colour_photo_give_the_lesion(realLogic, scene):
    picture, truth = skinPhoto()
    photo = addVolume(scene, picture, name="Photo")
    scribbles = realLogic.createScribbleSegmentation(photo, ["lesion"])
    _, y, x = np.indices(SHAPE)
    realLogic.paintScribbles(scribbles, photo, "lesion", (abs(y - 20) <= 1) & (abs(x - 26) <= 3))
    realLogic.paintScribbles(scribbles, photo, "background", (y <= 2) | (y >= 37))
    output = realLogic.segmentFromScribbles(photo, scribbles, method="growcut")
    assert dice(_segmentMask(output, photo, "lesion"), truth) > 0.9


def test_image_label_training_on_colour_photos_normalises_them_as_a_colour_cohort(realLogic, scene, tmp_path):
    from weakseg.engine import load_checkpoint

    photos = []
    for seed, label in ((0, "lesion"), (1, "healthy"), (2, "lesion"), (3, "healthy")):
        picture, _ = skinPhoto(seed, lesion=label == "lesion")
        photos.append(addVolume(scene, picture, name=f"Photo {seed}"))
        realLogic.setImageLabel(photos[-1], label)
    modelPath = realLogic.trainCohort(photos, tmp_path / "imagelabel.pt", classNames=["background", "lesion"],
                                      method="imagelabel", extraArguments=["--steps", "2", "--device", "cpu"])
    intensities = load_checkpoint(modelPath, "cpu")["metadata"]["intensities"]
    assert intensities is not None and len(intensities["mean"]) == 3  # one statistic per colour channel
    outputs = realLogic.applyModel(modelPath, [photos[0]], extraArguments=["--device", "cpu"])
    assert outputs[0] is photos[0].GetNodeReference("WeakSegResult")
    assert _segmentMask(outputs[0], photos[0], "lesion").shape == SHAPE


def test_a_colour_mask_cohort_trains_the_collaborative_method(realLogic, scene, tmp_path):
    masked = addVolume(scene, skinPhoto(0)[0], name="Masked photo")
    diagnosed = addVolume(scene, skinPhoto(1)[0], name="Diagnosed photo")
    mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mask")
    mask.SetReferenceImageGeometryParameterFromVolumeNode(masked)
    paintSegment(mask, masked, "lesion", skinPhoto(0)[1])
    realLogic.setMaskSegmentation(masked, mask)
    realLogic.setDiagnosisLabel(masked, "melanoma")
    realLogic.setDiagnosisLabel(diagnosed, "common_nevus")
    modelPath = realLogic.trainCohort([masked, diagnosed], tmp_path / "collaborative.pt", method="collaborative",
                                      extraArguments=["--steps", "2", "--classifier-steps", "2", "--rounds", "0",
                                                      "--image-size", "32", "--device", "cpu"])
    realLogic.applyModel(modelPath, [diagnosed], extraArguments=["--device", "cpu"])
    diagnosis, probabilities = realLogic.predictedDiagnosis(diagnosed)
    assert set(probabilities) == {"common_nevus", "melanoma"} and diagnosis in probabilities
