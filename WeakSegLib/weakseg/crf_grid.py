"""Voxel-grid helpers shared by the dense CRF's two back-ends (:mod:`weakseg.crf`, :mod:`weakseg.crf_torch`)."""

from __future__ import annotations

import numpy as np


def positions_mm(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """float32 ``(D, N)`` voxel-centre coordinates in mm of a grid of ``shape`` (D axes)."""
    axes = [np.arange(size, dtype=np.float32) * np.float32(step) for size, step in zip(shape, spacing)]
    return np.stack([grid.ravel() for grid in np.meshgrid(*axes, indexing="ij")])



def blocks(mode: str, shape_zyx: tuple[int, int, int]) -> list[slice]:
    """Ranges of slices refined independently: one slice each in 2D, the whole volume in 3D."""
    if mode == "2d":
        return [slice(z, z + 1) for z in range(shape_zyx[0])]
    return [slice(0, shape_zyx[0])]



def active_axes(mode: str) -> tuple[int, ...]:
    """Array axes (of Z, Y, X) along which voxels exchange messages."""
    return (1, 2) if mode == "2d" else (0, 1, 2)


# ----------------------------------------------------------------------------- pydensecrf
