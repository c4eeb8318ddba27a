"""Turning volumes into network-ready 2D slices: normalisation, resizing, augmentation.

Shapes: an image is ``(C, Z, Y, X)`` as :class:`weakseg.io.LoadedImage` holds it; a batch
of slices is ``(N, C, H, W)`` with labels ``(N, H, W)`` (int64, 255 = unlabelled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
import torch
from torch.nn import functional as F

from weakseg.contract import UNLABELLED
from weakseg.errors import WeakSegInputError


def normalise_intensity(array: np.ndarray) -> np.ndarray:
    """Clip each channel to its 0.5-99.5 percentiles, then z-score it.

    Robust to the bright outliers of MRI and the wide range of CT; makes one model
    usable across scanners without per-dataset settings.
    """
    result = np.empty_like(array, dtype=np.float32)
    for channel in range(array.shape[0]):
        values = array[channel]
        low, high = np.percentile(values, (0.5, 99.5))
        clipped = np.clip(values, low, high)
        result[channel] = (clipped - clipped.mean()) / max(float(clipped.std()), 1e-6)
    return result


@dataclass(frozen=True)
class CohortIntensities:
    """One clip range and z-score per channel for every image of a cohort (stored in a model file).

    :func:`normalise_intensity` rescales each image by its own statistics, which is right where
    intensities have no absolute meaning (MRI) but erases what tells images apart where they do:
    a dermoscopy photograph of healthy skin, z-scored alone, shows its faint texture at the same
    contrast as a lesion (nnU-Net normalises CT with dataset-wide statistics for the same reason).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CohortIntensities":
        return cls(**{name: tuple(float(value) for value in values[name]) for name in ("low", "high", "mean", "std")})


def cohort_intensities(arrays: Sequence[np.ndarray], samples_per_image: int = 1_000_000) -> CohortIntensities:
    """Per-channel 0.5-99.5 percentiles over all ``(C, Z, Y, X)`` arrays, and the mean and standard
    deviation of the clipped values; each array contributes at most ``samples_per_image`` evenly
    strided voxels, so a cohort of large volumes costs little memory."""
    channels = {int(array.shape[0]) for array in arrays}
    if len(channels) != 1:
        raise WeakSegInputError(f"cohort normalisation needs training images of one channel count; got "
                                f"{sorted(channels)} channels")
    samples = []
    for array in arrays:
        flat = np.asarray(array, dtype=np.float32).reshape(array.shape[0], -1)
        samples.append(flat[:, :: -(-flat.shape[1] // samples_per_image)])  # the stride rounded up: at most that many
    values = np.concatenate(samples, axis=1)
    low, high = np.percentile(values, (0.5, 99.5), axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    return CohortIntensities(tuple(low.tolist()), tuple(high.tolist()), tuple(clipped.mean(axis=1).tolist()),
                             tuple(np.maximum(clipped.std(axis=1), 1e-6).tolist()))


def normalise_by_median(array: np.ndarray) -> np.ndarray:
    """Each channel's values above its minimum divided by its foreground median, minus 1.

    The median tissue maps to 0 and the background to -1, whatever the image's scaling.
    Unlike a z-score, the scale does not depend on how much bright lesion the image holds:
    MRI slices exported one by one, each stretched to its own range (so that a tumour, the
    brightest tissue, darkens the rest of its slice), keep their healthy tissue at one level.
    Foreground: the values more than 2 % of the channel's range above its minimum.
    """
    result = np.empty_like(array, dtype=np.float32)
    for channel in range(array.shape[0]):
        values = np.asarray(array[channel], dtype=np.float32)
        floor = float(values.min())
        foreground = values[values > floor + 0.02 * (float(values.max()) - floor)]
        median = float(np.median(foreground)) if foreground.size else 1.0
        result[channel] = (values - floor) / max(median - floor, 1e-6) - 1.0
    return result


@dataclass(frozen=True)
class MedianScaling:
    """Normalise every image by its own foreground median (:func:`normalise_by_median`), stored in a model file."""

    def as_dict(self) -> dict:
        return {"kind": "median"}


# How a model normalises its input (see training_intensities); None: each image by its own z-score.
Normalisation = Union[CohortIntensities, MedianScaling, None]


def stored_normalisation(values: dict | None) -> Normalisation:
    """What a model file's ``metadata["intensities"]`` says to normalise by (None: each image by its own z-score)."""
    if not values:
        return None
    if values.get("kind") == "median":
        return MedianScaling()
    return CohortIntensities.from_dict(values)


def normalise_with(array: np.ndarray, intensities: Normalisation) -> np.ndarray:
    """``array`` normalised as ``intensities`` says: by the cohort's statistics, by its own foreground median,
    or (None) by its own clip and z-score."""
    if intensities is None:
        return normalise_intensity(array)
    if isinstance(intensities, MedianScaling):
        return normalise_by_median(array)
    shape = (-1,) + (1,) * (array.ndim - 1)
    low, high, mean, std = (np.asarray(values, dtype=np.float32).reshape(shape) for values in
                            (intensities.low, intensities.high, intensities.mean, intensities.std))
    return ((np.clip(np.asarray(array, dtype=np.float32), low, high) - mean) / std).astype(np.float32)


def training_intensities(arrays: Sequence[np.ndarray], normalisation: str) -> Normalisation:
    """What a run normalises by, from the ``normalisation`` setting and the training ``arrays``.

    ``volume``: None (each image by its own z-score); ``median``: :class:`MedianScaling`;
    ``cohort``: the statistics of ``arrays``; ``auto``: cohort when every array is a colour picture, else volume.
    """
    if normalisation == "median":
        return MedianScaling()
    if normalisation == "volume" or (normalisation == "auto" and not all(map(is_colour_picture, arrays))):
        return None
    return cohort_intensities(arrays)


def is_colour_picture(array: np.ndarray) -> bool:
    """Three channels that are not all equal (a grey image saved as RGB is not a colour picture)."""
    return array.shape[0] == 3 and not (np.array_equal(array[0], array[1]) and np.array_equal(array[0], array[2]))


def volume_to_slices(array: np.ndarray) -> torch.Tensor:
    """``(C, Z, Y, X)`` -> ``(Z, C, Y, X)`` float tensor: one 2D sample per slice."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, 1, 0))).float()


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` images or probability maps."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``(N, H, W)`` integer labels (255 stays 255)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def pad_to_multiple(tensor: torch.Tensor, multiple: int, value: float) -> torch.Tensor:
    """Pad the last two dimensions at their far ends up to a multiple of ``multiple``."""
    height, width = tensor.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if not pad_h and not pad_w:
        return tensor
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def augment(
    images: torch.Tensor,
    labels: list[torch.Tensor],
    generator: torch.Generator,
    max_rotation_degrees: float = 15.0,
    max_scale: float = 0.1,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Random flips, rotation/scaling and intensity jitter, applied alike to images and labels.

    Args:
        images: ``(N, C, H, W)``.
        labels: label maps ``(N, H, W)`` that must follow the images' geometry.
        generator: source of randomness, so runs are reproducible.
    """
    count = images.shape[0]
    if torch.rand(1, generator=generator).item() < 0.5:
        images, labels = images.flip(-1), [label.flip(-1) for label in labels]
    if torch.rand(1, generator=generator).item() < 0.5:
        images, labels = images.flip(-2), [label.flip(-2) for label in labels]
    if max_rotation_degrees or max_scale:
        angle = (torch.rand(count, generator=generator) * 2 - 1) * np.deg2rad(max_rotation_degrees)
        scale = 1 + (torch.rand(count, generator=generator) * 2 - 1) * max_scale
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zeros = torch.zeros(count)
        theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        labels = [
            F.grid_sample(label[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
            .round()
            .long()
            .where(_inside(grid), torch.full_like(label, UNLABELLED))
            for label in labels
        ]
    gain = 1 + 0.1 * torch.randn(count, 1, 1, 1, generator=generator)
    shift = 0.1 * torch.randn(count, 1, 1, 1, generator=generator)
    return images * gain + shift, labels


def _inside(grid: torch.Tensor) -> torch.Tensor:
    """Pixels whose sampling position lies inside the source image, ``(N, H, W)`` bool."""
    return (grid.abs() <= 1).all(dim=-1)


def outside_scribbles(labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Pixels farther than ``margin`` x slice size from the convex hull of a slice's scribbles.

    ``labels`` ``(N, H, W)`` (255 = unlabelled); returns bool ``(N, H, W)``, all False on
    slices without scribbles.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import convex_hull_image

    result = torch.zeros(labels.shape, dtype=torch.bool)
    distance = margin * max(labels.shape[-2:])
    for index, slice_labels in enumerate(labels.numpy()):
        scribbled = slice_labels != UNLABELLED
        if not scribbled.any():
            continue
        hull = convex_hull_image(scribbled) | scribbled
        result[index] = torch.from_numpy(distance_transform_edt(~hull) > distance)
    return result
