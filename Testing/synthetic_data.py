"""Small synthetic cases for the tests, written as real image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from weakseg.weak_labels import UNLABELLED

CLASSES = "background,bright,dim"


@dataclass
class SyntheticCase:
    image: Path
    scribbles: Path
    label: Path
    truth: np.ndarray


def make_blob_volume(seed: int = 0, shape=(4, 40, 48)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy ``(Z, Y, X)`` volume with a bright disc (class 1) and a dim disc (class 2).

    Returns (intensities float32, truth uint8, scribbles uint8 with 255 = unlabelled):
    scribbles are a short stroke inside each disc and background strokes near the
    border, on every slice but the last, so the method must fill in one slice itself.
    """
    depth, height, width = shape
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[0:depth, 0:height, 0:width]
    cy, cx1, cx2 = height // 2, width // 4 + 2, 3 * width // 4 - 2
    radius = min(height, width) // 5
    truth = np.zeros(shape, dtype=np.uint8)
    truth[(y - cy) ** 2 + (x - cx1) ** 2 <= radius**2] = 1
    truth[(y - cy) ** 2 + (x - cx2) ** 2 <= radius**2] = 2
    intensity = np.choose(truth, [10.0, 90.0, 50.0]) + rng.normal(0, 6.0, shape)
    scribbles = np.full(shape, UNLABELLED, dtype=np.uint8)
    for z in range(depth - 1):
        scribbles[z, cy, cx1 - radius // 2 : cx1 + radius // 2] = 1
        scribbles[z, cy - radius // 2 : cy + radius // 2, cx2] = 2
        scribbles[z, 3, 3 : width - 3] = 0
        scribbles[z, height - 4, 3 : width - 3] = 0
    return intensity.astype(np.float32), truth, scribbles


def write_volume(array: np.ndarray, path: Path, spacing=(1.2, 1.2, 3.0), origin=(10.0, -5.0, 2.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    sitk.WriteImage(image, str(path))
    return path


def write_case(folder: Path, name: str, seed: int) -> SyntheticCase:
    intensity, truth, scribbles = make_blob_volume(seed)
    return SyntheticCase(
        image=write_volume(intensity, folder / f"{name}_image.nii.gz"),
        scribbles=write_volume(scribbles, folder / f"{name}_scribble.nii.gz"),
        label=write_volume(truth, folder / f"{name}_label.nii.gz"),
        truth=truth,
    )


def dice(prediction: np.ndarray, truth: np.ndarray, code: int) -> float:
    a, b = prediction == code, truth == code
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
