"""Checks the command line runs on every argument before any work starts.

Each raises :class:`~weakseg.errors.WeakSegInputError` with one line naming the option,
the file or the value, so that ``weakseg`` exits with status 2 having computed nothing and
written nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from weakseg.errors import WeakSegInputError
from weakseg.io import suffix_of
from weakseg.methods.spec import OptionField


def _first_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path(".")


def _check_parent(path: Path, option: str) -> None:
    """The folder that will hold ``path`` exists and is writable, or can be made."""
    parent = path.parent if str(path.parent) else Path(".")
    existing = _first_existing(parent)
    if not existing.is_dir():
        raise WeakSegInputError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WeakSegInputError(f"{option} {path}: cannot write in {existing} (permission denied)")


def check_output_file(path: str, option: str, suffixes: tuple[str, ...]) -> None:
    """``path`` can receive an output file ending in one of ``suffixes``."""
    target = Path(path)
    if target.is_dir() or path.endswith(os.sep):
        raise WeakSegInputError(f"{option} {path}: is a folder; give a file name ending in {' or '.join(suffixes)}")
    if suffix_of(path) not in suffixes:
        raise WeakSegInputError(f"{option} {path}: must end in {' or '.join(suffixes)}")
    if target.exists() and not os.access(target, os.W_OK):
        raise WeakSegInputError(f"{option} {path}: exists and cannot be replaced (permission denied)")
    _check_parent(target, option)


def check_output_folder(path: str, option: str) -> None:
    """``path`` is a writable folder, or one that can be made."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise WeakSegInputError(f"{option} {path}: is a file; give a folder")
        if not os.access(target, os.W_OK | os.X_OK):
            raise WeakSegInputError(f"{option} {path}: cannot write in this folder (permission denied)")
        return
    _check_parent(target, option)


def check_input_file(path: str, what: str) -> None:
    """``path`` exists and is readable (a file, or a DICOM folder where ``what`` allows one)."""
    if not os.path.exists(path):
        raise WeakSegInputError(f"{path}: no such file ({what})")
    if not os.access(path, os.R_OK):
        raise WeakSegInputError(f"{path}: cannot read the {what} (permission denied)")


def parse_option(field: OptionField, text: Any) -> Any:
    """The value of ``field``'s option from the command line, checked against its range."""
    if field.kind == "bool":
        return bool(text)
    if field.kind == "str":
        if field.choices and text not in field.choices:
            raise WeakSegInputError(f"{field.option} {text!r}: expected one of {', '.join(field.choices)}")
        return str(text)
    if field.kind == "ints":
        try:
            values = tuple(int(item) for item in str(text).split(","))
        except ValueError:
            values = ()
        if not values:
            raise WeakSegInputError(f"{field.option} {text!r}: expected a comma list of positive integers")
        for value in values:
            _check_range(field, value, text)
        return values
    caster = int if field.kind == "int" else float
    try:
        value = caster(text)
    except (TypeError, ValueError):
        raise WeakSegInputError(f"{field.option} {text!r}: expected {'an integer' if caster is int else 'a number'}") from None
    if caster is float and value != value:
        raise WeakSegInputError(f"{field.option} {text!r}: expected a number")
    _check_range(field, value, text)
    return value


def _check_range(field: OptionField, value: float, text: Any) -> None:
    low, high = field.minimum, field.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise WeakSegInputError(f"{field.option} {text}: must be {bounds}")


def check_count(option: str, value: int | None, minimum: int = 1) -> None:
    """An integer option that must be at least ``minimum`` (when given)."""
    if value is not None and value < minimum:
        raise WeakSegInputError(f"{option} {value}: must be at least {minimum}")
