"""Cohort folders: which cases a folder holds, and which of them a split spec selects.

A cohort folder holds, for every case ``<case>``::

    <case>_image.<ext>       the image (grey or multi-channel, 2D or 3D)
    <case>_scribble.<ext>    scribbles on the image's grid: a labelmap with class codes
                             0..K (0 = background) and 255 = unlabelled (the form of the ACDC
                             scribbles of Valvano et al.), or a ``.seg.nrrd`` whose segments
                             are matched to the class names by name
    <case>_label.<ext>       optional full mask: scoring, or the unpaired masks of a shape prior
                             (``<case>_mask.<ext>`` is read the same way, as PH2 and HC18 name them)

``<ext>`` is any of :data:`~weakseg.suffixes.COHORT_IMAGE_SUFFIXES` (a scribble may also be
``.seg.nrrd``); the three files of a case need not share the suffix. This is the layout of
``/work/shared/data/acdc`` (``patient001_frame01_image.nii.gz`` ...).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from weakseg.errors import WeakSegInputError
from weakseg.io import suffix_of
from weakseg.suffixes import COHORT_IMAGE_SUFFIXES, SCRIBBLE_SUFFIXES


@dataclass
class CohortCase:
    """One case of a cohort folder (see the module docstring for the naming)."""

    name: str
    image_path: str
    scribble_path: str | None = None
    label_path: str | None = None


def parse_split(spec: str | None) -> Callable[[str], bool]:
    """Turn a split spec into a predicate on case names (None or "" selects every case).

    The spec is a comma-separated list; a case is selected if any item matches it:

    * ``"A-B"`` (digits): the case name's first run of digits, read as a number, lies in
      ``A..B`` inclusive: ``"001-060"`` selects ``patient001_frame01`` ... ``patient060_*``;
    * ``"N"`` (digits): the same with ``A == B == N``;
    * anything else: a case-name prefix, e.g. ``"patient061_frame01,patient062"``.

    Raises:
        WeakSegInputError: an empty item or a range whose start exceeds its end.
    """
    if spec is None or not spec.strip():
        return lambda name: True
    ranges: list[tuple[int, int]] = []
    prefixes: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            raise WeakSegInputError(f"split {spec!r}: empty item between commas")
        numbers = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item) or re.fullmatch(r"(\d+)()", item)
        if numbers:
            low = int(numbers.group(1))
            high = int(numbers.group(2) or low)
            if low > high:
                raise WeakSegInputError(f"split {spec!r}: range {item!r} starts after it ends")
            ranges.append((low, high))
        else:
            prefixes.append(item)

    def selected(name: str) -> bool:
        if any(name.startswith(prefix) for prefix in prefixes):
            return True
        first_number = re.search(r"\d+", name)
        return first_number is not None and any(low <= int(first_number.group()) <= high for low, high in ranges)

    return selected


def list_cases(folder: str | os.PathLike, split: str | None = None, require_scribbles: bool = True) -> list[CohortCase]:
    """The cases of a cohort folder, sorted by name, optionally restricted by a split spec.

    Args:
        folder: holds ``<case>_image.<ext>`` and ``<case>_scribble.<ext>`` files.
        split: see :func:`parse_split`.
        require_scribbles: every selected case must have a scribble file (training); with
            False, cases without one are listed with ``scribble_path=None`` (prediction).

    Raises:
        WeakSegInputError: missing folder, no images, nothing selected by the split, or
            (with ``require_scribbles``) images without scribbles; the message names the folder.
    """
    folder = str(folder)
    if not os.path.isdir(folder):
        raise WeakSegInputError(f"{folder}: no such folder")
    files = {entry.name: str(Path(folder) / entry.name) for entry in os.scandir(folder) if entry.is_file()}

    def find(case: str, role: str, suffixes) -> str | None:
        for suffix in suffixes:
            name = f"{case}_{role}{suffix}"
            if name in files:
                return files[name]
        return None

    names = sorted(
        {
            name[: -len(f"_image{suffix_of(name)}")]
            for name in files
            if suffix_of(name) in COHORT_IMAGE_SUFFIXES and name[: -len(suffix_of(name))].endswith("_image")
        }
    )
    if not names:
        raise WeakSegInputError(
            f"{folder}: no images found; expected files named <case>_image.<ext> with <ext> one of "
            + ", ".join(COHORT_IMAGE_SUFFIXES)
        )
    selected = parse_split(split)
    cases = [
        CohortCase(
            name=name,
            image_path=find(name, "image", COHORT_IMAGE_SUFFIXES),
            scribble_path=find(name, "scribble", SCRIBBLE_SUFFIXES),
            label_path=find(name, "label", COHORT_IMAGE_SUFFIXES) or find(name, "mask", COHORT_IMAGE_SUFFIXES),
        )
        for name in names
        if selected(name)
    ]
    if not cases:
        raise WeakSegInputError(f"{folder}: split {split!r} selects none of its {len(names)} cases")
    if require_scribbles:
        missing = [case.name for case in cases if case.scribble_path is None]
        if len(missing) == len(cases):
            raise WeakSegInputError(
                f"{folder}: no scribbles found; expected <case>_scribble.<ext> beside each <case>_image.<ext>"
            )
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise WeakSegInputError(f"{folder}: {len(missing)} case(s) have no <case>_scribble file: {shown}")
    return cases
