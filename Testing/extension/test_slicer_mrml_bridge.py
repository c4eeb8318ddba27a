"""MRML <-> arrays and files (WeakSegExtensionLib.mrml_bridge) on a real vtkMRMLScene.

Geometry uses a rotated direction and spacing (0.7, 0.9, 2.5) so that a swapped axis,
a lost direction or a RAS/LPS mix-up shows. Slicer's own volume writer
(vtkMRMLVolumeArchetypeStorageNode) serves as the independent reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from slicer_test_helpers import SPACING, addScribbles, addVolume, paintSegment, phantom, rotation, scribbleMasks

pytest.importorskip("slicer", reason="slicer-core is not installed")

from WeakSegExtensionLib import mrml_bridge  # noqa: E402
from WeakSegExtensionLib.errors import WeakSegInputError  # noqa: E402


def test_volume_file_geometry_matches_slicers_own_writer_with_rotation_and_anisotropic_spacing(scene, tmp_path):
    import vtk

    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    mrml_bridge.writeVolumeFile(volumeNode, tmp_path / "bridge.nrrd")
    storageNode = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storageNode.SetFileName(str(tmp_path / "slicer.nrrd"))
    assert storageNode.WriteData(volumeNode)
    ours, theirs = sitk.ReadImage(str(tmp_path / "bridge.nrrd")), sitk.ReadImage(str(tmp_path / "slicer.nrrd"))

    np.testing.assert_allclose(ours.GetSpacing(), SPACING, atol=1e-9)
    np.testing.assert_allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(ours.GetDirection(), theirs.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
    expectedLps = np.diag([-1, -1, 1]) @ rotation()
    np.testing.assert_allclose(np.array(ours.GetDirection()).reshape(3, 3), expectedLps, atol=1e-9)
    # one voxel, (i, j, k) = (5, 7, 3): RAS from the node, LPS from the file, same point
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    ras = ijkToRas.MultiplyPoint((5, 7, 3, 1))[:3]
    lps = ours.TransformIndexToPhysicalPoint((5, 7, 3))
    np.testing.assert_allclose(lps, (-ras[0], -ras[1], ras[2]), atol=1e-6)
    assert sitk.GetArrayFromImage(ours)[3, 7, 5] == pytest.approx(float(image[3, 7, 5]))


def test_volume_round_trip_through_simpleitk_keeps_voxels_and_ijk_to_ras(scene):
    image, _ = phantom()
    source = addVolume(scene, image)
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Copy")
    mrml_bridge.updateVolumeNodeFromImage(copy, mrml_bridge.imageFromVolumeNode(source))

    np.testing.assert_array_equal(mrml_bridge.arrayFromVolumeNode(copy), image)
    np.testing.assert_allclose(mrml_bridge.volumeGeometry(copy).ijkToRas, mrml_bridge.volumeGeometry(source).ijkToRas, atol=1e-9)
    assert mrml_bridge.volumeGeometry(source).differences(mrml_bridge.volumeGeometry(copy)) == []


def test_labelmap_file_is_read_back_on_the_volume_grid_and_rejected_on_another(scene, tmp_path):
    image, truth = phantom()
    volumeNode = addVolume(scene, image)
    geometry = mrml_bridge.volumeGeometry(volumeNode)
    mrml_bridge.writeImageFile(mrml_bridge.imageFromArray(truth, geometry), tmp_path / "labels.nii.gz")
    np.testing.assert_array_equal(mrml_bridge.readLabelmapFile(tmp_path / "labels.nii.gz", geometry), truth)

    shifted = mrml_bridge.VolumeGeometry(geometry.shape, geometry.ijkToRas @ np.diag([1.0, 1.0, 2.0, 1.0]))
    mrml_bridge.writeImageFile(mrml_bridge.imageFromArray(truth, shifted), tmp_path / "other.nrrd")
    with pytest.raises(WeakSegInputError, match="spacing"):
        mrml_bridge.readLabelmapFile(tmp_path / "other.nrrd", geometry)


def test_scribbles_are_read_by_segment_name_whatever_the_order_segments_were_added(scene):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    masks = scribbleMasks()
    first = addScribbles(scene, volumeNode, order=("background", "LV", "RV"), name="in order")
    shuffled = addScribbles(scene, volumeNode, order=("RV", "background", "LV"), name="shuffled")

    classNames = mrml_bridge.classNamesFromSegmentation(shuffled)
    assert classNames == ["background", "LV", "RV"]
    assert mrml_bridge.classNamesFromSegmentation(first) == classNames
    labelsFirst = mrml_bridge.segmentationToLabelmap(first, volumeNode, classNames)
    labelsShuffled = mrml_bridge.segmentationToLabelmap(shuffled, volumeNode, classNames)
    np.testing.assert_array_equal(labelsFirst, labelsShuffled)
    for code, name in enumerate(classNames):
        np.testing.assert_array_equal(labelsShuffled == code, masks[name])
    assert np.all(labelsShuffled[~(masks["background"] | masks["LV"] | masks["RV"])] == mrml_bridge.UNLABELLED)

    # a given class list decides the codes, again by name
    reordered = mrml_bridge.segmentationToLabelmap(shuffled, volumeNode, ["background", "RV", "LV"])
    np.testing.assert_array_equal(reordered == 1, masks["RV"])
    np.testing.assert_array_equal(reordered == 2, masks["LV"])


def test_segment_names_match_classes_case_insensitively_and_unknown_names_are_refused(scene):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    masks = scribbleMasks()
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mixed case")
    paintSegment(segmentationNode, volumeNode, "Background", masks["background"])
    paintSegment(segmentationNode, volumeNode, "lv", masks["LV"])
    labels = mrml_bridge.segmentationToLabelmap(segmentationNode, volumeNode, ["background", "LV"])
    np.testing.assert_array_equal(labels == 1, masks["LV"])

    paintSegment(segmentationNode, volumeNode, "Liver", masks["RV"])
    with pytest.raises(WeakSegInputError, match=r"segment 'Liver' of segmentation 'Mixed case' is not one of the classes"):
        mrml_bridge.segmentationToLabelmap(segmentationNode, volumeNode, ["background", "LV"])


def test_overlapping_classes_are_refused_naming_both_segments(scene):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    masks = scribbleMasks()
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Overlap")
    paintSegment(segmentationNode, volumeNode, "background", masks["background"])
    paintSegment(segmentationNode, volumeNode, "LV", masks["LV"] | masks["background"])
    with pytest.raises(WeakSegInputError, match="overlap"):
        mrml_bridge.segmentationToLabelmap(segmentationNode, volumeNode, ["background", "LV"])


def test_scribbles_drawn_on_another_grid_are_refused(scene):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    otherVolume = addVolume(scene, image, name="Other", spacing=(1.0, 1.0, 1.0))
    scribbles = addScribbles(scene, otherVolume, name="Drawn on other")
    with pytest.raises(WeakSegInputError, match="different voxel grid than volume 'Phantom'"):
        mrml_bridge.segmentationToLabelmap(scribbles, volumeNode, ["background", "LV", "RV"])


def test_labelmap_to_segments_round_trip_and_segments_own_their_voxels(scene):
    image, truth = phantom()
    volumeNode = addVolume(scene, image)
    geometry = mrml_bridge.volumeGeometry(volumeNode)
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Result")
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    userId = paintSegment(segmentationNode, volumeNode, "User", truth > 0)
    lvId = mrml_bridge.addSegmentFromMask(segmentationNode, truth == 1, geometry, "LV", (1, 0, 0), {"WeakSeg.Source": "WeakSeg"})
    rvId = mrml_bridge.addSegmentFromMask(segmentationNode, truth == 2, geometry, "RV", (0, 0, 1))
    emptyId = mrml_bridge.addSegmentFromMask(segmentationNode, np.zeros_like(truth, bool), geometry, "Empty", (0, 1, 0))

    assert mrml_bridge.segmentNames(segmentationNode) == ["User", "LV", "RV", "Empty"]
    np.testing.assert_array_equal(mrml_bridge.segmentMaskOnGrid(segmentationNode, lvId, geometry), truth == 1)
    np.testing.assert_array_equal(mrml_bridge.segmentMaskOnGrid(segmentationNode, rvId, geometry), truth == 2)
    np.testing.assert_array_equal(mrml_bridge.segmentMaskOnGrid(segmentationNode, userId, geometry), truth > 0)
    assert not mrml_bridge.segmentMaskOnGrid(segmentationNode, emptyId, geometry).any()
    assert mrml_bridge.segmentTag(segmentationNode, lvId, "WeakSeg.Source") == "WeakSeg"
    assert mrml_bridge.segmentTag(segmentationNode, rvId, "WeakSeg.Source") is None
    assert segmentationNode.GetSegmentation().GetSegment(lvId).GetColor() == pytest.approx((1, 0, 0))


@pytest.mark.parametrize("nodeClass, components", [("vtkMRMLVectorVolumeNode", 2), ("vtkMRMLScalarVolumeNode", 3)])
def test_volumes_with_other_values_per_voxel_are_refused_by_name(scene, nodeClass, components):
    import vtk

    node = scene.AddNewNodeByClass(nodeClass, "Field")
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(4, 4, 1)
    imageData.AllocateScalars(vtk.VTK_FLOAT, components)
    node.SetAndObserveImageData(imageData)
    with pytest.raises(WeakSegInputError, match=f"volume 'Field' has {components} values per voxel.*colour"):
        mrml_bridge.checkImageVolume(node)
    with pytest.raises(WeakSegInputError, match="LabelMapVolumeNode; WeakSeg needs a scalar"):
        mrml_bridge.checkImageVolume(scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels"))


def test_image_labels_are_stored_as_node_attributes(scene):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    ranges = [mrml_bridge.SliceRangeLabel(3, 5, "healthy"), mrml_bridge.SliceRangeLabel(0, 2, "LV")]
    mrml_bridge.writeImageLabels(volumeNode, "LV", ranges)
    assert volumeNode.GetAttribute(mrml_bridge.IMAGE_LABEL_ATTRIBUTE) == "LV"
    assert mrml_bridge.readImageLabels(volumeNode) == ("LV", sorted(ranges, key=lambda r: r.first))
    mrml_bridge.writeImageLabels(volumeNode, None, [])
    assert volumeNode.GetAttribute(mrml_bridge.IMAGE_LABEL_ATTRIBUTE) is None
    assert mrml_bridge.readImageLabels(volumeNode) == (None, [])
