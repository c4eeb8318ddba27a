"""Diagnoses of the cohort's volumes: the labels given for training and the ones a model predicts.

A diagnosis (melanoma, common nevus, ...) is what a volume is diagnosed as; it is not a
segmentation class, so it is kept apart from the image-level labels of :mod:`cohort_labels`:

* the diagnosis *label* a user gives a volume (for training method ``collaborative``) is the node
  attribute :data:`LABEL_ATTRIBUTE`, saved with the scene, and written for ``weakseg train`` as a
  ``case,diagnosis`` CSV (:func:`writeDiagnosisCsv`);
* the diagnosis a model *predicts* comes from the ``predictions.csv`` that ``weakseg predict``
  writes for a model with a classifier (:func:`readPredictions`); it is stored as the attributes
  :data:`PREDICTED_ATTRIBUTE` and :data:`PROBABILITY_PREFIX` + diagnosis (one per diagnosis).

The CSV column names are the library's (``contract.json``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from WeakSegExtensionLib.errors import WeakSegInputError
from WeakSegExtensionLib.library_contract import (
    DIAGNOSIS_COLUMN,
    PREDICTIONS_DIAGNOSIS_COLUMN,
    PREDICTIONS_IMAGE_COLUMN,
    PROBABILITY_PREFIX as CSV_PROBABILITY_PREFIX,
)
from WeakSegExtensionLib.mrml_bridge import describeNode

LABEL_ATTRIBUTE = "WeakSeg.DiagnosisLabel"
PREDICTED_ATTRIBUTE = "WeakSeg.Diagnosis"
PROBABILITY_PREFIX = "WeakSeg.DiagnosisProbability."
DIAGNOSES_FILE = "diagnoses.csv"


def setDiagnosisLabel(volumeNode, diagnosis: str | None) -> None:
    """Give a volume its diagnosis for training (None or "" clears it).

    Raises:
        WeakSegInputError: a diagnosis holding a comma (it would break the CSV).
    """
    text = (diagnosis or "").strip()
    if "," in text:
        raise WeakSegInputError(f"{describeNode(volumeNode)}: diagnosis {text!r} must hold no comma")
    volumeNode.SetAttribute(LABEL_ATTRIBUTE, text or None)


def diagnosisLabel(volumeNode) -> str | None:
    """The diagnosis a user gave the volume, or None."""
    return volumeNode.GetAttribute(LABEL_ATTRIBUTE) or None


def writeDiagnosisCsv(path: str | os.PathLike, cases: dict) -> int:
    """Write ``case,diagnosis`` rows of the volumes of ``cases`` (case name -> node) that have one; returns their count."""
    rows = [(case, diagnosisLabel(node)) for case, node in cases.items() if diagnosisLabel(node)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("case", DIAGNOSIS_COLUMN))
        writer.writerows(rows)
    return len(rows)


def readPredictions(path: str | os.PathLike) -> dict[str, tuple[str, dict[str, float]]]:
    """``{image: (diagnosis, {diagnosis: probability})}`` from ``weakseg predict``'s ``predictions.csv``.

    Raises:
        WeakSegInputError: unreadable file, missing columns, or a probability that is not a number.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except OSError as error:
        raise WeakSegInputError(f"{path}: cannot be read ({error.strerror})") from None
    if PREDICTIONS_IMAGE_COLUMN not in columns or PREDICTIONS_DIAGNOSIS_COLUMN not in columns:
        raise WeakSegInputError(f"{path}: needs {PREDICTIONS_IMAGE_COLUMN} and {PREDICTIONS_DIAGNOSIS_COLUMN} columns")
    names = [column[len(CSV_PROBABILITY_PREFIX):] for column in columns if column.startswith(CSV_PROBABILITY_PREFIX)]
    result = {}
    for lineNumber, row in enumerate(rows, start=2):
        try:
            probabilities = {name: float(row[CSV_PROBABILITY_PREFIX + name]) for name in names}
        except (TypeError, ValueError):
            raise WeakSegInputError(f"{path}, line {lineNumber}: a probability is not a number") from None
        result[row[PREDICTIONS_IMAGE_COLUMN]] = (row[PREDICTIONS_DIAGNOSIS_COLUMN], probabilities)
    return result


def storePrediction(volumeNode, diagnosis: str, probabilities: dict[str, float]) -> None:
    """Store a predicted diagnosis and its probabilities as node attributes (replacing earlier ones)."""
    for name in volumeNode.GetAttributeNames() or ():
        if name.startswith(PROBABILITY_PREFIX):
            volumeNode.RemoveAttribute(name)
    volumeNode.SetAttribute(PREDICTED_ATTRIBUTE, diagnosis)
    for name, value in probabilities.items():
        volumeNode.SetAttribute(PROBABILITY_PREFIX + name, f"{value:.4f}")


def storePredictions(path: str | os.PathLike, cases: dict) -> list:
    """Store the predictions of ``path`` on the volumes of ``cases`` (case name -> node); returns the nodes changed.

    A missing file (a model without a classifier) changes nothing.
    """
    if not Path(path).is_file():
        return []
    predictions = readPredictions(path)
    changed = []
    for case, volumeNode in cases.items():
        if case in predictions:
            storePrediction(volumeNode, *predictions[case])
            changed.append(volumeNode)
    return changed


def predictedDiagnosis(volumeNode) -> tuple[str, dict[str, float]] | None:
    """The diagnosis stored by :func:`storePrediction` and its probabilities, or None."""
    diagnosis = volumeNode.GetAttribute(PREDICTED_ATTRIBUTE)
    if not diagnosis:
        return None
    probabilities = {name[len(PROBABILITY_PREFIX):]: float(volumeNode.GetAttribute(name))
                     for name in volumeNode.GetAttributeNames() or () if name.startswith(PROBABILITY_PREFIX)}
    return diagnosis, probabilities


def predictedText(volumeNode) -> str:
    """What the cohort table shows: ``melanoma (0.81)``, or "" without a prediction."""
    predicted = predictedDiagnosis(volumeNode)
    if predicted is None:
        return ""
    diagnosis, probabilities = predicted
    return f"{diagnosis} ({probabilities[diagnosis]:.2f})" if diagnosis in probabilities else diagnosis
