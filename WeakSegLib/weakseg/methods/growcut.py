"""Slicer's "Grow from seeds" as a baseline: grow-cut from scribbles, no training.

This runs the same filter as the Segment Editor's *Grow from seeds* effect,
``vtkImageGrowCutSegment`` from slicer-core (Zhu et al., "An effective interactive
medical image segmentation method using fast GrowCut", MICCAI IMIC workshop 2014):
every unlabelled voxel takes the class of the seed it reaches by the cheapest path,
where a step costs the absolute intensity difference between neighbouring voxels
(26-neighbourhood) plus ``seed_locality`` times the step length in mm.

What is replicated from the effect (Slicer 5.x ``SegmentEditorGrowFromSeedsEffect`` and
``AbstractScriptedSegmentEditorAutoCompleteEffect``):

* seeds are a labelmap with 0 = unseeded; each segment, background included, is one
  seed value, so WeakSeg's class codes ``0..K`` become seeds ``1..K+1`` and unlabelled
  voxels (255) become 0;
* seed locality (the filter's ``DistancePenalty``) defaults to 0.0, as in the effect;
* growth is restricted to the bounding box of all seeds grown by
  ``max(3, margin_ratio * box size)`` voxels per axis, clipped to the image. The effect
  uses a ratio of 0.1 when *Initialize* is first clicked, which is the default here.
  Voxels outside that box are left unsegmented by the effect; here they are background.

Differences from the effect, both so that every voxel of the box is treated alike:

* the filter never grows *from* the outermost voxel layer of its input, so the box is
  padded by one voxel that a mask excludes from growth; seeds drawn on the first or last
  slice then grow like any other, and 2D images (one slice) can be segmented at all;
* images with several channels (RGB) are reduced to the mean of their channels, since
  the filter takes one intensity per voxel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from weakseg.contract import UNLABELLED
from weakseg.methods.spec import PER_IMAGE, SCRIBBLES, MethodSpec

if TYPE_CHECKING:
    from weakseg.io import LoadedImage
    from weakseg.progress import Progress
    from weakseg.weak_labels import Scribbles

MINIMUM_MARGIN = 3
DEFAULT_MARGIN_RATIO = 0.1


def segment_growcut(
    image: LoadedImage,
    scribbles: Scribbles,
    seed_locality: float = 0.0,
    margin_ratio: float = DEFAULT_MARGIN_RATIO,
) -> np.ndarray:
    """Segment ``image`` by growing ``scribbles`` with Slicer's grow-cut filter.

    Args:
        image: intensities ``(C, Z, Y, X)``; channels are averaged.
        scribbles: class codes ``(Z, Y, X)`` on the image grid, 255 = unlabelled.
        seed_locality: extra cost per mm of path, in intensity units; 0 (the Slicer
            default) lets seeds reach as far as intensity allows.
        margin_ratio: growth box margin as a fraction of the seeds' bounding box size.

    Returns:
        uint8 class codes ``(Z, Y, X)``; voxels outside the growth box are background (0).

    Raises:
        ImportError: slicer-core is not installed.
        RuntimeError: the filter returned no result.
    """
    seeds = _seed_labels(scribbles.labels)
    box = growth_box(seeds > 0, margin_ratio)
    intensity = image.array.mean(axis=0, dtype=np.float32)
    grown = _grow(intensity[box], seeds[box], image.spacing_zyx, seed_locality)
    codes = np.zeros(seeds.shape, dtype=np.uint8)
    codes[box] = np.where(grown > 0, grown - 1, 0).astype(np.uint8)
    return codes


def _seed_labels(labels: np.ndarray) -> np.ndarray:
    """WeakSeg codes (0..K, 255 unlabelled) -> grow-cut seeds (1..K+1, 0 unseeded), uint8."""
    labels = np.asarray(labels)
    return np.where(labels == UNLABELLED, 0, labels.astype(np.int32) + 1).astype(np.uint8)


def growth_box(seeded: np.ndarray, margin_ratio: float = DEFAULT_MARGIN_RATIO) -> tuple[slice, slice, slice]:
    """Bounding box of ``seeded`` (bool ``(Z, Y, X)``) grown as the Slicer effect grows it.

    The margin on each axis is ``max(3, int(margin_ratio * (last - first)))`` voxels,
    and the box is clipped to the array.
    """
    present = np.argwhere(seeded)
    if present.size == 0:
        return tuple(slice(0, size) for size in seeded.shape)  # type: ignore[return-value]
    box = []
    for axis, size in enumerate(seeded.shape):
        first, last = int(present[:, axis].min()), int(present[:, axis].max())
        margin = int(max(MINIMUM_MARGIN, margin_ratio * (last - first)))
        box.append(slice(max(0, first - margin), min(size, last + margin + 1)))
    return tuple(box)  # type: ignore[return-value]


def _grow(
    intensity: np.ndarray, seeds: np.ndarray, spacing_zyx: tuple[float, float, float], seed_locality: float
) -> np.ndarray:
    """Run ``vtkImageGrowCutSegment`` on ``(Z, Y, X)`` arrays (spacing in mm); returns grown seed values.

    The arrays are padded by one voxel that a mask excludes from growth (see the module notes).
    """
    filter_class, numpy_support, vtk_image_data = _slicer_growcut()
    padded_intensity = np.pad(intensity.astype(np.float32), 1, mode="edge")
    padded_seeds = np.pad(seeds, 1)
    padding_mask = np.pad(np.zeros(seeds.shape, dtype=np.uint8), 1, constant_values=1)

    spacing_xyz = tuple(float(s) for s in spacing_zyx[::-1])
    grow_cut = filter_class()
    grow_cut.SetIntensityVolume(_to_vtk(padded_intensity, spacing_xyz, numpy_support, vtk_image_data))
    grow_cut.SetSeedLabelVolume(_to_vtk(padded_seeds, spacing_xyz, numpy_support, vtk_image_data))
    grow_cut.SetMaskVolume(_to_vtk(padding_mask, spacing_xyz, numpy_support, vtk_image_data))
    grow_cut.SetDistancePenalty(float(seed_locality))
    grow_cut.Update()
    output = grow_cut.GetOutput()
    scalars = output.GetPointData().GetScalars() if output is not None else None
    if scalars is None or scalars.GetNumberOfTuples() != padded_seeds.size:
        raise RuntimeError("grow-cut (vtkImageGrowCutSegment) produced no result for an input of shape "
                           f"{intensity.shape}")
    grown = numpy_support.vtk_to_numpy(scalars).reshape(padded_seeds.shape)
    return grown[1:-1, 1:-1, 1:-1]


def _to_vtk(array: np.ndarray, spacing_xyz: tuple[float, float, float], numpy_support, vtk_image_data):
    """A ``(Z, Y, X)`` array as single-component ``vtkImageData`` with origin 0 and the spacing."""
    array = np.ascontiguousarray(array)
    image = vtk_image_data()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.SetSpacing(*spacing_xyz)
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def _slicer_growcut():
    """Import the grow-cut filter lazily so that WeakSeg works without slicer-core."""
    try:
        from slicer import vtkImageGrowCutSegment
        from vtkmodules.util import numpy_support
        from vtkmodules.vtkCommonDataModel import vtkImageData
    except ImportError as error:
        raise ImportError(
            "the growcut method needs Slicer's grow-cut filter from the slicer-core package: "
            "pip install slicer-core  (or pip install 'weakseg[slicer]')"
        ) from error
    return vtkImageGrowCutSegment, numpy_support, vtkImageData


def segment(image: LoadedImage, scribbles: Scribbles, settings: None, device: object, progress: Progress,
            seed: int) -> np.ndarray:
    """Run the method on one image (the :attr:`MethodSpec.segment` of this method); no training, no settings."""
    progress.report(0.0, "growing from seeds")
    with progress.stage("pseudo labels"):
        labels = segment_growcut(image, scribbles)
    progress.report(1.0, "done")
    return labels


SPEC = MethodSpec(
    name="growcut",
    summary="Slicer's Grow from seeds on the scribbles (the baseline; no training)",
    learns_from=(SCRIBBLES,),
    usage=PER_IMAGE,
    segment="weakseg.methods.growcut:segment",
)
