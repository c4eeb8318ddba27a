"""What the extension and WeakSegLib agree on, read from the ``contract.json`` file the library ships.

The unlabelled code, the background / healthy names, the exit codes, the label CSV's
columns, the class palette and the standard terminology of known structures are the
library's (``weakseg/contract.json``); the extension reads that file instead of keeping
copies, so a class gets the same colour from the command line and in Slicer. The file is
found in the installed library, else in the WeakSegLib sources shipped with (or beside) the
module. Reading it needs no torch and imports no library code.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from WeakSegExtensionLib.install import bundledLibrarySource

CONTRACT_FILE = "contract.json"


def contractPath() -> Path:
    """The contract file of the installed WeakSegLib, else of the sources shipped with the module."""
    spec = importlib.util.find_spec("weakseg")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / CONTRACT_FILE
            if candidate.is_file():
                return candidate
    source = bundledLibrarySource(Path(__file__).resolve().parents[1])
    if source is None or not (source / "weakseg" / CONTRACT_FILE).is_file():
        raise FileNotFoundError("WeakSegLib's contract.json: neither installed nor shipped beside the module")
    return source / "weakseg" / CONTRACT_FILE


_DATA = json.loads(contractPath().read_text(encoding="utf-8"))

UNLABELLED = int(_DATA["unlabelled_code"])
BACKGROUND = _DATA["background_name"]
HEALTHY = _DATA["healthy_name"]
EXIT_OK = int(_DATA["exit_codes"]["ok"])
EXIT_BAD_INPUT = int(_DATA["exit_codes"]["bad_input"])
EXIT_CANCELLED = int(_DATA["exit_codes"]["cancelled"])
ERROR_PREFIX = _DATA["error_prefix"]
FORMER_COPY_MARK = _DATA["former_copy_mark"]
LABEL_CSV_COLUMNS = tuple(_DATA["label_csv"]["columns"])
LABEL_CSV_NAME_COLUMNS = tuple(_DATA["label_csv"]["read_name_columns"])
DIAGNOSIS_COLUMN = _DATA["diagnosis_column"]
PREDICTIONS_FILE = _DATA["predictions_csv"]["file"]
PREDICTIONS_IMAGE_COLUMN = _DATA["predictions_csv"]["image_column"]
PREDICTIONS_DIAGNOSIS_COLUMN = _DATA["predictions_csv"]["diagnosis_column"]
PROBABILITY_PREFIX = _DATA["predictions_csv"]["probability_prefix"]
PALETTE = tuple(tuple(colour) for colour in _DATA["palette"])
TERMINOLOGY_CONTEXT = _DATA["terminology_context"]
_STRUCTURES = {name: entry for entry in _DATA["structures"] for name in entry["names"]}


def classColor(className: str, code: int) -> tuple[float, float, float]:
    """The display colour of a class: its structure's colour if known, else a palette colour by code."""
    known = _STRUCTURES.get(className.strip().lower())
    return tuple(known["color"]) if known else PALETTE[(code - 1) % len(PALETTE)]


def classTerminology(className: str) -> tuple[str, str, str, str, str, str, str] | None:
    """``(context, categoryScheme, categoryCode, categoryMeaning, typeScheme, typeCode, typeMeaning)`` of a
    known structure that Slicer's terminology list has, else None (name and colour only)."""
    known = _STRUCTURES.get(className.strip().lower())
    if not known or "code" not in known:
        return None
    category = _DATA["categories"][known["category"]]
    return (TERMINOLOGY_CONTEXT, category["scheme"], category["code"], category["meaning"], "SCT", known["code"],
            known["meaning"])
