"""Inputs of method ``shape-gan`` as tensors: the training slices, their grid, the auxiliary masks.

Images are 2D or 3D; a 3D volume is a stack of 2D samples (one per slice), and so is the
shape model's output: the method is 2D throughout. Every slice is resized to one grid,
``width`` = the settings' ``image_size`` and the height that keeps the first image's
aspect ratio (in mm), rounded to a multiple of 16 (so the networks can halve it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weakseg.data import normalise_intensity, resize_images, resize_labels, volume_to_slices
from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage, read_labelmap, read_sitk
from weakseg.shape_models import parse_shape_model
from weakseg.unpaired_masks import MaskFile

GRID_MULTIPLE = 16


@dataclass(frozen=True)
class Grid:
    """The network grid ``height`` x ``width`` and the height/width of one grid pixel in mm-proportions."""

    height: int
    width: int
    pixel_aspect: float


def grid_for(image: LoadedImage, width: int) -> Grid:
    """The grid of a run whose first image is ``image`` (see the module docstring)."""
    _, rows, columns = image.shape_zyx
    _, row_mm, column_mm = image.spacing_zyx
    height = max(GRID_MULTIPLE, int(round(width * rows * row_mm / (columns * column_mm) / GRID_MULTIPLE)) * GRID_MULTIPLE)
    pixel_aspect = (rows * row_mm / height) / (columns * column_mm / width)
    return Grid(height, width, pixel_aspect)


def image_slices(image: LoadedImage, grid: Grid) -> torch.Tensor:
    """``(Z, C, H, W)`` normalised slices of ``image`` on ``grid``."""
    return resize_images(volume_to_slices(normalise_intensity(image.array)), (grid.height, grid.width))


def binary_mask(path: str, reference=None) -> np.ndarray:
    """A mask file as bool ``(Z, Y, X)``: every non-zero value is the structure (0/1, 0/255, ...)."""
    codes = read_labelmap(path, reference if reference is not None else read_sitk(path))
    return codes != 0


def mask_slices(masks: list[MaskFile], grid: Grid, training_cases: list[str]) -> torch.Tensor:
    """Float ``(M, 1, H, W)`` 0/1 slices of the unpaired masks that show the structure.

    Raises:
        WeakSegInputError: a mask of a training case (that would be full supervision), or
            no mask with any foreground.
    """
    overlap = sorted({mask.case for mask in masks} & set(training_cases))
    if overlap:
        shown = ", ".join(overlap[:5]) + (" ..." if len(overlap) > 5 else "")
        raise WeakSegInputError(f"unpaired masks must not belong to the training images, but these cases are in both: "
                                f"{shown}")
    slices = []
    for mask in masks:
        voxels = binary_mask(mask.path)
        shown = voxels[voxels.reshape(len(voxels), -1).any(axis=1)]
        if len(shown):
            slices.append(resize_labels(torch.from_numpy(shown.astype(np.int64)), (grid.height, grid.width)))
    if not slices:
        raise WeakSegInputError(f"the unpaired masks ({masks[0].path} ...) hold no foreground at all")
    return torch.cat(slices)[:, None].float()


class AuxiliaryMasks:
    """The "real" masks of the game: drawn from a shape model, or picked from unpaired mask slices.

    Args:
        shape_model: ``--shape-model`` text, or "" to use ``unpaired``.
        unpaired: ``(M, 1, H, W)`` slices from :func:`mask_slices`, or None.
    """

    def __init__(self, shape_model: str, unpaired: torch.Tensor | None, grid: Grid) -> None:
        if bool(shape_model) == (unpaired is not None):
            raise WeakSegInputError("method shape-gan needs exactly one source of auxiliary masks: --shape-model "
                                    "ellipse[:params] or unpaired masks (--unpaired-split / --unpaired-masks)")
        self.model = parse_shape_model(shape_model) if shape_model else None
        self.unpaired = unpaired
        self.grid = grid

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` masks ``(count, 1, H, W)``; unpaired ones randomly flipped."""
        if self.model is not None:
            return self.model.draw(count, self.grid.height, self.grid.width, generator, self.grid.pixel_aspect)[:, None]
        picked = self.unpaired[torch.randint(len(self.unpaired), (count,), generator=generator)]
        if torch.rand(1, generator=generator).item() < 0.5:
            picked = picked.flip(-1)
        if torch.rand(1, generator=generator).item() < 0.5:
            picked = picked.flip(-2)
        return picked
