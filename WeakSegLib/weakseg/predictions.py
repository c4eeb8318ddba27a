"""``predictions.csv``: the diagnosis ``weakseg predict`` gives each image, with every diagnosis's probability.

Columns: ``image`` (the image's file name without its suffix, as the segmentation file is
named), ``diagnosis`` (the most probable one), then one ``p_<diagnosis>`` column per
diagnosis of the model, in the model's order (the names are the contract's,
:mod:`weakseg.contract`). The Slicer module reads the same file.
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

from weakseg.atomic import write_atomically
from weakseg.contract import PREDICTIONS_DIAGNOSIS_COLUMN as DIAGNOSIS_COLUMN
from weakseg.contract import PREDICTIONS_IMAGE_COLUMN as IMAGE_COLUMN
from weakseg.contract import PROBABILITY_PREFIX
from weakseg.errors import WeakSegInputError


def write_predictions(path: str | os.PathLike, rows: Sequence[tuple[str, str, dict[str, float]]]) -> None:
    """Write ``(image, diagnosis, {diagnosis: probability})`` rows atomically (see the module docstring)."""
    names = list(rows[0][2])
    header = [IMAGE_COLUMN, DIAGNOSIS_COLUMN] + [f"{PROBABILITY_PREFIX}{name}" for name in names]

    def write(temporary: str) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for image, diagnosis, probabilities in rows:
                writer.writerow([image, diagnosis] + [f"{probabilities[name]:.4f}" for name in names])

    write_atomically(path, write)


def read_predictions(path: str | os.PathLike) -> dict[str, tuple[str, dict[str, float]]]:
    """``{image: (diagnosis, {diagnosis: probability})}`` from a file :func:`write_predictions` wrote.

    Raises:
        WeakSegInputError: missing file or columns, or a probability that is not a number.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise WeakSegInputError(f"{path}: no such predictions file")
    result = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if IMAGE_COLUMN not in columns or DIAGNOSIS_COLUMN not in columns:
            raise WeakSegInputError(f"{path}: needs {IMAGE_COLUMN} and {DIAGNOSIS_COLUMN} columns; found {columns}")
        names = [column[len(PROBABILITY_PREFIX):] for column in columns if column.startswith(PROBABILITY_PREFIX)]
        for line, row in enumerate(reader, start=2):
            try:
                probabilities = {name: float(row[f"{PROBABILITY_PREFIX}{name}"]) for name in names}
            except (TypeError, ValueError):
                raise WeakSegInputError(f"{path}, line {line}: a probability is not a number") from None
            result[row[IMAGE_COLUMN]] = (row[DIAGNOSIS_COLUMN], probabilities)
    return result
