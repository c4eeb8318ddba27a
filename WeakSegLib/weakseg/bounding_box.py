"""The bounding box of a mask, so that work on a sparse mask can skip the empty rest of a volume."""

from __future__ import annotations

import numpy as np


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box of slices (one per axis) holding every True voxel of ``mask``; None when none is True.

    Each axis is searched within the box of the axes before it, so a mask that fills a small
    part of a large volume costs about one pass over the volume.
    """
    box: list[slice] = []
    for axis in range(mask.ndim):
        within = mask[tuple(box)]
        others = tuple(other for other in range(mask.ndim) if other != axis)
        present = np.flatnonzero(within.any(axis=others))
        if present.size == 0:
            return None
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)
