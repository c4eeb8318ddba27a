"""``predictions.csv``: the diagnosis ``weakseg predict`` gives each image, with every diagnosis's probability.

Columns: ``image`` (the image's file name without its suffix, as the segmentation file is
named), ``diagnosis`` (the most probable one), then one ``p_<diagnosis>`` column per
diagnosis of the model, in the model's order (the names are the contract's,
:mod:`weakseg.contract`). The Slicer module reads the same file
(``WeakSegExtensionLib.diagnoses.readPredictions``).
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

from weakseg.atomic import write_atomically
from weakseg.contract import PREDICTIONS_DIAGNOSIS_COLUMN as DIAGNOSIS_COLUMN
from weakseg.contract import PREDICTIONS_IMAGE_COLUMN as IMAGE_COLUMN
from weakseg.contract import PROBABILITY_PREFIX


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
