"""Overlay pictures for people: image, scribbles, truth and prediction side by side."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from weakseg.io import write_atomically
from weakseg.contract import UNLABELLED, palette_color


def overlay_picture(
    image: np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray,
    scribbles: np.ndarray | None = None,
    slice_index: int | None = None,
    opacity: float = 0.45,
    more_images: tuple[np.ndarray, ...] = (),
) -> np.ndarray:
    """Panels of one slice: image with scribbles | truth | prediction [| more images], as uint8 RGB.

    Args:
        image: ``(C, Z, Y, X)`` intensities; grey images are shown in grey, RGB as is.
        truth: ``(Z, Y, X)`` class codes, or None to leave that panel out.
        prediction: ``(Z, Y, X)`` class codes.
        scribbles: ``(Z, Y, X)`` codes with 255 = unlabelled, drawn opaque on panel one.
        slice_index: the slice to show; default is the slice with most foreground in
            ``truth`` (or in ``prediction`` when there is no truth).
        more_images: ``(C, Z, Y, X)`` images on the same grid shown after the prediction
            (e.g. a translated image), each stretched to its own percentiles.

    Returns:
        uint8 ``(Y, n * X, 3)``.
    """
    reference = truth if truth is not None else prediction
    if slice_index is None:
        slice_index = int(np.argmax((reference > 0).reshape(reference.shape[0], -1).sum(axis=1)))
    grey = _to_rgb(image[:, slice_index])
    scribble_codes = np.zeros(prediction.shape[1:], dtype=np.int32)
    if scribbles is not None:
        drawn = scribbles[slice_index].astype(np.int32)
        scribble_codes = np.where(drawn == UNLABELLED, 0, drawn + 1)
    panels = [_paint(grey, scribble_codes, 1.0, shift=1)]
    if truth is not None:
        panels.append(_paint(grey, truth[slice_index], opacity))
    panels.append(_paint(grey, prediction[slice_index], opacity))
    panels += [(_to_rgb(more[:, slice_index]) * 255).astype(np.uint8) for more in more_images]
    return np.concatenate(panels, axis=1)


def paint_slice(
    image: np.ndarray, codes: np.ndarray | None, slice_index: int, scribbles: bool = False, opacity: float = 0.45
) -> np.ndarray:
    """One slice of ``image`` ``(C, Z, Y, X)`` with ``codes`` ``(Z, Y, X)`` blended on, as uint8 RGB.

    With ``scribbles=True`` the codes are scribbles (255 = unlabelled) drawn opaque, their
    background strokes in light grey; otherwise class code 0 is left unpainted.
    """
    grey = _to_rgb(image[:, slice_index])
    if codes is None:
        return (grey * 255).astype(np.uint8)
    if scribbles:
        drawn = codes[slice_index].astype(np.int32)
        return _paint(grey, np.where(drawn == UNLABELLED, 0, drawn + 1), 1.0, shift=1)
    return _paint(grey, codes[slice_index], opacity)


def _to_rgb(channels: np.ndarray) -> np.ndarray:
    """``(C, Y, X)`` -> float RGB in [0, 1], each channel stretched to its 1-99 percentiles."""
    shown = channels if channels.shape[0] == 3 else np.repeat(channels[:1], 3, axis=0)
    low, high = np.percentile(shown, (1, 99))
    return np.clip((np.moveaxis(shown, 0, -1) - low) / max(high - low, 1e-6), 0, 1)


def _paint(rgb: np.ndarray, codes: np.ndarray, opacity: float, shift: int = 0) -> np.ndarray:
    """Blend each non-zero class code's colour onto ``rgb``; returns uint8 when done."""
    painted = rgb.astype(np.float32).copy()
    for code in np.unique(codes):
        if code == 0:
            continue
        colour = (0.85, 0.85, 0.85) if code - shift == 0 else palette_color(int(code) - shift)
        mask = codes == code
        painted[mask] = (1 - opacity) * painted[mask] + opacity * np.array(colour)
    return (np.clip(painted, 0, 1) * 255).astype(np.uint8)


def write_png(path: str | os.PathLike, picture: np.ndarray) -> None:
    """Write a uint8 ``(Y, X, 3)`` picture as PNG, atomically."""
    image = sitk.GetImageFromArray(picture, isVector=True)
    write_atomically(path, lambda temporary: sitk.WriteImage(image, temporary))
