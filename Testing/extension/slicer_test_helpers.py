"""Helpers for the Slicer-side tests: a synthetic case and ways to build MRML inputs.

The synthetic case is a small anisotropic volume (spacing 0.7 x 0.9 x 2.5 mm, rotated
direction) holding two bright discs, "LV" (intensity 100) and "RV" (intensity 50), on a
dark background, with short scribble strokes inside each structure and outside both.
Functions that touch MRML import slicer lazily, so this module imports without slicer-core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STUB_CLI = Path(__file__).resolve().parent / "contract_cli.py"
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (12.0, -30.0, 45.0)
SHAPE = (6, 28, 32)  # (Z, Y, X)


def rotation(degreesZ: float = 25.0, degreesX: float = 15.0) -> np.ndarray:
    """A proper rotation (columns = RAS directions of I, J, K) that is far from identity."""
    z, x = np.radians(degreesZ), np.radians(degreesX)
    aroundZ = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    aroundX = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return aroundZ @ aroundX


def addVolume(scene, array: np.ndarray, name: str = "Phantom", spacing=SPACING, origin=ORIGIN, directions=None):
    """A volume node holding ``array`` with the given RAS geometry: a scalar volume for ``(Z, Y, X)``,
    a vector (colour) volume, as Slicer loads a photograph, for ``(Z, Y, X, C)``."""
    import vtk
    from vtkmodules.util import numpy_support

    colour = array.ndim == 4
    volumeNode = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if colour else "vtkMRMLScalarVolumeNode", name)
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    values = np.ascontiguousarray(array).reshape(-1, array.shape[3]) if colour else np.ascontiguousarray(array).ravel()
    imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values, deep=True))
    volumeNode.SetAndObserveImageData(imageData)
    volumeNode.SetSpacing(*spacing)
    volumeNode.SetOrigin(*origin)
    matrix = vtk.vtkMatrix4x4()
    directions = rotation() if directions is None else directions
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, float(directions[row, column]))
    volumeNode.SetIJKToRASDirectionMatrix(matrix)
    return volumeNode


def phantom(shape=SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, truth uint8) with truth 0 = background, 1 = LV, 2 = RV."""
    z, y, x = np.indices(shape)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[(y - 10) ** 2 + (x - 10) ** 2 <= 25] = 1
    truth[(y - 18) ** 2 + (x - 22) ** 2 <= 30] = 2
    image = np.select([truth == 1, truth == 2], [100.0, 50.0], 0.0).astype(np.float32)
    image += np.random.default_rng(seed).normal(0, 3, shape).astype(np.float32)
    return image, truth


def scribbleMasks(shape=SHAPE) -> dict[str, np.ndarray]:
    """Short strokes inside LV, inside RV and in the background, on every slice."""
    masks = {name: np.zeros(shape, dtype=bool) for name in ("background", "LV", "RV")}
    masks["LV"][:, 10, 8:13] = True
    masks["RV"][:, 17:20, 22] = True
    masks["background"][:, 2, 2:30] = True
    masks["background"][:, 26, 2:30] = True
    return masks


def paintSegment(segmentationNode, volumeNode, name: str, mask: np.ndarray, color=(0.5, 0.5, 0.5)) -> str:
    """Add a segment and fill it the way a Segment Editor effect does (shared labelmap layer)."""
    import slicer
    from WeakSegExtensionLib import mrml_bridge

    segmentId = segmentationNode.GetSegmentation().AddEmptySegment("", name, list(color))
    geometry = mrml_bridge.volumeGeometry(volumeNode)
    image = mrml_bridge.orientedImageFromMask(mask, geometry)
    if image is not None:
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        assert logic.SetBinaryLabelmapToSegment(image, segmentationNode, segmentId, logic.MODE_REPLACE, image.GetExtent())
    return segmentId


def addScribbles(scene, volumeNode, order=("background", "LV", "RV"), masks=None, name="Scribbles"):
    """A scribble segmentation whose segments are added in ``order``."""
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    masks = masks or scribbleMasks(volumeShape(volumeNode))
    for segmentName in order:
        paintSegment(segmentationNode, volumeNode, segmentName, masks[segmentName])
    return segmentationNode


def volumeShape(volumeNode) -> tuple[int, int, int]:
    from WeakSegExtensionLib import mrml_bridge

    return mrml_bridge.volumeGeometry(volumeNode).shape


def sceneState(scene) -> tuple:
    """Node IDs, and each segmentation's segment IDs and names: what 'scene unchanged' compares."""
    nodes = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        segments = ()
        if node.IsA("vtkMRMLSegmentationNode"):
            segmentation = node.GetSegmentation()
            segments = tuple((sid, segmentation.GetSegment(sid).GetName()) for sid in segmentation.GetSegmentIDs())
        nodes.append((node.GetID(), node.GetName(), segments))
    return tuple(nodes)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 2.0 * np.count_nonzero(a & b) / total if total else 1.0
