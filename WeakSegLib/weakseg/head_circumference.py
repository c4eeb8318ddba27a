"""Head circumference (HC18's official measure) from a segmented head: an ellipse fit and its perimeter.

The ellipse is the one with the mask's second moments (in mm, so anisotropic pixels are
handled): semi-axes ``2 sqrt(lambda)`` of the eigenvalues ``lambda`` of the covariance of
the pixel centres, which is exact for a filled ellipse. Its perimeter is Ramanujan's
approximation ``pi (3 (a + b) - sqrt((3a + b)(a + 3b)))`` (error below 0.01 % at the
aspect ratios of heads).

The pixel size comes from a CSV beside the image when one lists it (HC18's
``hc18_pixel_size.csv``: columns ``case`` and ``pixel_size_mm``), else from the image's
spacing. :func:`head_circumference_columns` gives the columns ``weakseg predict`` adds to
``predictions.csv`` (:mod:`weakseg.predictions`).
"""

from __future__ import annotations

import csv
import functools
import math
import os
from pathlib import Path

import numpy as np

from weakseg.errors import WeakSegInputError

PIXEL_SIZE_CSV = "hc18_pixel_size.csv"


def ellipse_axes_mm(mask: np.ndarray, spacing_yx: tuple[float, float]) -> tuple[float, float]:
    """Semi-axes ``(a, b)`` in mm, ``a >= b``, of the moment ellipse of a 2D bool mask; (0, 0) when empty."""
    rows, columns = np.nonzero(mask)
    if len(rows) < 3:
        return 0.0, 0.0
    points = np.stack([rows * spacing_yx[0], columns * spacing_yx[1]])
    eigenvalues = np.linalg.eigvalsh(np.cov(points) + np.diag(np.square(spacing_yx)) / 12)
    minor, major = (2 * math.sqrt(max(value, 0.0)) for value in eigenvalues)
    return major, minor


def ramanujan_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a`` and ``b`` (Ramanujan's first approximation)."""
    return math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))


def head_circumference_mm(mask: np.ndarray, spacing_yx: tuple[float, float]) -> float:
    """HC in mm of a 2D head mask: the perimeter of its fitted ellipse."""
    return ramanujan_perimeter(*ellipse_axes_mm(mask, spacing_yx))


def pixel_size_from_csv(image_path: str | os.PathLike) -> float | None:
    """The pixel size (mm) that ``hc18_pixel_size.csv`` beside the image gives its case, or None.

    The case is the file name up to ``_image`` (``012_image.png`` -> ``012``) or its stem. The
    table is read once per file version, not once per image of a folder.

    Raises:
        WeakSegInputError: a row of the table holds a pixel size that is not a positive number.
    """
    table = Path(image_path).parent / PIXEL_SIZE_CSV
    if not table.is_file():
        return None
    name = Path(image_path).name
    case = name.split("_image")[0] if "_image" in name else name.split(".")[0]
    return _pixel_sizes(str(table), table.stat().st_mtime_ns).get(case)


@functools.lru_cache(maxsize=8)
def _pixel_sizes(table: str, modified_ns: int) -> dict[str, float]:
    """Case -> pixel size (mm) of one table; ``modified_ns`` makes an edited table be read again."""
    sizes = {}
    with open(table, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            text = (row.get("pixel_size_mm") or "").strip()
            if not row.get("case") or not text:
                continue
            try:
                size = float(text)
            except ValueError:
                size = 0.0
            if not size > 0 or math.isinf(size):
                raise WeakSegInputError(f"{table}, line {line}: pixel_size_mm {text!r} is not a positive number of mm")
            sizes[row["case"]] = size
    return sizes


def head_circumference_columns(image, labels: np.ndarray) -> dict[str, str]:
    """The ``predictions.csv`` columns of a 2D one-structure prediction: pixel size, its source and HC in mm.

    Nothing for a 3D image (a head circumference is measured on one plane).
    """
    if not image.is_2d:
        return {}
    size = pixel_size_from_csv(image.path)
    spacing = (size, size) if size is not None else tuple(image.spacing_zyx[1:])
    return {"pixel_size_mm": f"{spacing[1]:.6g}",
            "pixel_size_source": "csv" if size is not None else "image spacing",
            "head_circumference_mm": f"{head_circumference_mm(labels[0] > 0, spacing):.2f}"}
