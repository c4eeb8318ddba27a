"""What the library and the Slicer extension agree on, read from ``contract.json``.

The extension reads the same JSON file (shipped inside the ``weakseg`` package and beside
the module as the WeakSegLib sources), so both sides use one unlabelled code, one pair of
background / healthy names, one set of exit codes, one label CSV dialect, and give a class
the same colour and the same terminology whether a result comes from the command line or
from Slicer.

Terminology codes are those of the terminology list Slicer ships
(``SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json``); a known name that has no
entry there (myocardium, lesion) gets a colour and no terminology.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CONTRACT_PATH = Path(__file__).with_name("contract.json")
_DATA = json.loads(CONTRACT_PATH.read_text(encoding="utf-8"))

UNLABELLED: int = int(_DATA["unlabelled_code"])
BACKGROUND: str = _DATA["background_name"]
HEALTHY: str = _DATA["healthy_name"]
EXIT_OK: int = int(_DATA["exit_codes"]["ok"])
EXIT_BAD_INPUT: int = int(_DATA["exit_codes"]["bad_input"])
EXIT_CANCELLED: int = int(_DATA["exit_codes"]["cancelled"])
ERROR_PREFIX: str = _DATA["error_prefix"]
FORMER_COPY_MARK: str = _DATA["former_copy_mark"]  # <stem><mark><suffix>: the copy of a file a run replaces
LABEL_CSV_COLUMNS: tuple[str, ...] = tuple(_DATA["label_csv"]["columns"])
LABEL_CSV_NAME_COLUMNS: tuple[str, ...] = tuple(_DATA["label_csv"]["read_name_columns"])
CLASS_SEPARATOR: str = _DATA["label_csv"]["class_separator"]
DIAGNOSIS_COLUMN: str = _DATA["diagnosis_column"]
PREDICTIONS_FILE: str = _DATA["predictions_csv"]["file"]
PREDICTIONS_IMAGE_COLUMN: str = _DATA["predictions_csv"]["image_column"]
PREDICTIONS_DIAGNOSIS_COLUMN: str = _DATA["predictions_csv"]["diagnosis_column"]
PROBABILITY_PREFIX: str = _DATA["predictions_csv"]["probability_prefix"]
PALETTE: tuple[tuple[float, float, float], ...] = tuple(tuple(colour) for colour in _DATA["palette"])
TERMINOLOGY_CONTEXT: str = _DATA["terminology_context"]


@dataclass(frozen=True)
class Terminology:
    """A standard code for a structure: category and type, SNOMED CT codes of Slicer's list."""

    category_scheme: str
    category_code: str
    category_meaning: str
    type_scheme: str
    type_code: str
    type_meaning: str


def _structures() -> dict[str, tuple[tuple[float, float, float], Terminology | None]]:
    known = {}
    for entry in _DATA["structures"]:
        terminology = None
        if "code" in entry:
            category = _DATA["categories"][entry["category"]]
            terminology = Terminology(category["scheme"], category["code"], category["meaning"],
                                      "SCT", entry["code"], entry["meaning"])
        for name in entry["names"]:
            known[name] = (tuple(entry["color"]), terminology)
    return known


KNOWN_STRUCTURES = _structures()


def class_color(class_name: str, code: int) -> tuple[float, float, float]:
    """RGB in [0, 1] of a class: its structure's colour when the name is known, else a palette colour by code."""
    known = KNOWN_STRUCTURES.get(class_name.strip().lower())
    return known[0] if known else palette_color(code)


def palette_color(code: int) -> tuple[float, float, float]:
    """RGB in [0, 1] of a class code when its name is unknown (codes cycle through the palette)."""
    return PALETTE[(code - 1) % len(PALETTE)]


def class_terminology(class_name: str) -> Terminology | None:
    """The standard terminology of a known structure name, or None."""
    known = KNOWN_STRUCTURES.get(class_name.strip().lower())
    return known[1] if known else None
