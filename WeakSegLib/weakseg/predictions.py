"""``predictions.csv``: what ``weakseg predict`` says of each image beside its segmentation.

One row per image. Columns: ``image`` (the image's file name without its suffix, as the
segmentation file is named), then what the model's method gives: a diagnosis model
``diagnosis`` (the most probable one) and one ``p_<diagnosis>`` column per diagnosis, in
the model's order (:func:`diagnosis_columns`; names from :mod:`weakseg.contract`); a
shape model measurements such as the head circumference (:mod:`weakseg.head_circumference`).
The Slicer module reads the same file (``WeakSegExtensionLib.diagnoses.readPredictions``).
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

from weakseg.atomic import write_atomically
from weakseg.contract import PREDICTIONS_DIAGNOSIS_COLUMN as DIAGNOSIS_COLUMN
from weakseg.contract import PREDICTIONS_IMAGE_COLUMN as IMAGE_COLUMN
from weakseg.contract import PROBABILITY_PREFIX


def diagnosis_columns(diagnosis: str, probabilities: dict[str, float]) -> dict[str, str]:
    """The columns of one image's diagnosis: the diagnosis, then each diagnosis's probability."""
    columns = {DIAGNOSIS_COLUMN: diagnosis}
    columns.update({f"{PROBABILITY_PREFIX}{name}": f"{value:.4f}" for name, value in probabilities.items()})
    return columns


def write_predictions(path: str | os.PathLike, rows: Sequence[tuple[str, dict[str, str]]]) -> None:
    """Write ``(image, {column: text})`` rows atomically; the columns are those of the first row, in order."""
    header = [IMAGE_COLUMN] + list(rows[0][1])

    def write(temporary: str) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for image, columns in rows:
                writer.writerow([image] + [columns.get(name, "") for name in header[1:]])

    write_atomically(path, write)
