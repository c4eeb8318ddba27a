"""Tiny synthetic tasks on which each method must clearly beat a broken or trivial variant.

Every task is a handful of 32x32 (or 40x40) slices with fixed seeds, so a method trains on
it in seconds on one CPU thread; the learning-regression, resume and mutation checks share
them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from weakseg.weak_labels import UNLABELLED

TWO_BLOBS = ["background", "disk", "square"]
DISK_ONLY = ["background", "disk"]
DISK_LEVEL, BAND_LEVEL = 1.8, 1.1  # above a background of 0 +- 0.25 (decoy_case)


def dice(prediction: np.ndarray, truth: np.ndarray, code: int) -> float:
    """Dice of class ``code``; 1.0 when neither array holds it."""
    a, b = prediction == code, truth == code
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def write_volume(array: np.ndarray, path: Path, spacing=(1.5, 1.5, 6.0)) -> Path:
    """Write ``array`` ``(Z, Y, X)`` with a non-trivial spacing, origin and direction."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 2.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    sitk.WriteImage(image, str(path))
    return path


def two_blob_case(rng: np.random.Generator, shape=(3, 32, 32)):
    """A bright disk (1) and a dark square (2) on noise: image, full label, scribbles.

    Scribbles are a short stroke in each blob and strokes along three borders for the
    background, on every slice.
    """
    depth, height, width = shape
    rows, cols = np.mgrid[:height, :width]
    label = np.zeros(shape, np.uint8)
    cy, cx = rng.integers(8, height - 8), rng.integers(6, width // 2 - 2)
    sy, sx = rng.integers(6, height - 12), rng.integers(width // 2 + 1, width - 10)
    label[:, (rows - cy) ** 2 + (cols - cx) ** 2 <= 25] = 1
    label[:, sy : sy + 7, sx : sx + 7] = 2
    image = rng.normal(0.0, 0.25, shape).astype(np.float32)
    image[label == 1] += 1.5
    image[label == 2] -= 1.5
    scribbles = np.full(shape, UNLABELLED, np.uint8)
    scribbles[:, cy, cx - 2 : cx + 3] = 1
    scribbles[:, sy + 3, sx + 1 : sx + 6] = 2
    scribbles[:, 1, 1:-1] = 0
    scribbles[:, -2, 1:-1] = 0
    scribbles[:, 2:-2, 1] = 0
    return image, label, scribbles


def write_two_blob_cohort(folder: Path, count: int, seed: int = 0, shape=(3, 32, 32)) -> Path:
    """``case001..`` of :func:`two_blob_case` as ``_image``, ``_label`` and ``_scribble`` files."""
    rng = np.random.default_rng(seed)
    for number in range(1, count + 1):
        image, label, scribbles = two_blob_case(rng, shape)
        write_volume(image, folder / f"case{number:03d}_image.nii.gz")
        write_volume(label, folder / f"case{number:03d}_label.nii.gz")
        write_volume(scribbles, folder / f"case{number:03d}_scribble.nii.gz")
    return folder


def decoy_case(rng: np.random.Generator, shape=(3, 32, 32)):
    """A bright disk (1) near the centre and a less bright band along a far border.

    The scribbles mark the disk and a tight background ring around it, never the band: a
    network trained on the scribbles alone puts its threshold between the scribbled
    background and disk intensities and so labels the band as disk, and since the band is
    the larger component, keeping the largest component then drops the real disk. A shape
    prior (the masks hold one small disk and no band) pushes the threshold above the band.
    Returns image, full label (band = background) and scribbles.
    """
    depth, height, width = shape
    rows, cols = np.mgrid[:height, :width]
    cy, cx = rng.integers(13, height - 13), rng.integers(13, width - 13)
    label = np.zeros(shape, np.uint8)
    label[:, (rows - cy) ** 2 + (cols - cx) ** 2 <= 16] = 1
    band = np.zeros((height, width), bool)
    side = rng.integers(4)
    band[{0: np.s_[:6, :], 1: np.s_[-6:, :], 2: np.s_[:, :6], 3: np.s_[:, -6:]}[int(side)]] = True
    image = rng.normal(0.0, 0.25, shape).astype(np.float32)
    image[label == 1] += DISK_LEVEL
    image[:, band] += BAND_LEVEL
    scribbles = np.full(shape, UNLABELLED, np.uint8)
    scribbles[:, cy, cx - 2 : cx + 3] = 1
    ring = np.abs(np.hypot(rows - cy, cols - cx) - 6.5) < 0.5
    scribbles[:, ring] = 0
    return image, label, scribbles


def write_decoy_cohort(folder: Path, count: int, seed: int = 0) -> Path:
    """``case001..`` of :func:`decoy_case` as ``_image``, ``_label`` and ``_scribble`` files."""
    rng = np.random.default_rng(seed)
    for number in range(1, count + 1):
        image, label, scribbles = decoy_case(rng)
        write_volume(image, folder / f"case{number:03d}_image.nii.gz")
        write_volume(label, folder / f"case{number:03d}_label.nii.gz")
        write_volume(scribbles, folder / f"case{number:03d}_scribble.nii.gz")
    return folder
