"""Image-level labels: which classes an image, a volume or a range of its slices shows.

File format
===========

A CSV file with a header row and one row per labelled image, volume or slice range::

    image,slices,label
    case01,,tumour              the whole volume (or 2D image) shows a tumour
    case02,0-40,healthy         slices 0..40 (K index, inclusive) show nothing
    case02,41-90,tumour
    case03,,tumour;oedema       several classes: separated by ';'

Columns:

* ``image`` (also read as ``case`` or ``volume``, the names the Slicer cohort panel
  writes): a case name or an image file name;
* ``slices``: empty for the whole image/volume, ``a-b`` or ``a`` for slice indices along
  the array's first axis (inclusive). The Slicer panel's ``first_slice`` and ``last_slice``
  columns are accepted instead;
* ``label``: ``healthy`` (no foreground class anywhere in these slices) or one or more
  class names separated by ``;``.

Slices of a volume that no range covers take the volume's own label (a row with empty
slices), as in the Slicer panel; slices with neither are unlabelled and are not used.
Two ranges of one image must not overlap, and an image has at most one whole-image row.

Diagnoses
=========

A CSV may also carry a ``diagnosis`` column: what the image is diagnosed as (melanoma,
common nevus, ...), one value per image or volume. A diagnosis is *not* a segmentation
class: the classes say what to segment, the diagnoses what to diagnose, and the two are
kept as separate lists (:func:`read_diagnoses`; method ``collaborative`` learns both).
A diagnosis CSV needs the image column and ``diagnosis``; ``label`` is then optional::

    case,diagnosis
    IMD002,atypical_nevus
    IMD058,melanoma
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field

import numpy as np

from weakseg.contract import CLASS_SEPARATOR, DIAGNOSIS_COLUMN, HEALTHY
from weakseg.contract import LABEL_CSV_NAME_COLUMNS as NAME_COLUMNS
from weakseg.errors import WeakSegInputError
from weakseg.suffixes import LABELLED_IMAGE_SUFFIXES



@dataclass(frozen=True)
class SliceRange:
    """Slices ``first..last`` (inclusive) showing exactly ``classes`` (empty = healthy)."""

    first: int
    last: int
    classes: frozenset[str]
    line: int


@dataclass
class ImageLabels:
    """The image-level labels of one image or volume.

    Attributes:
        name: the image's name as written in the CSV.
        whole: classes of the whole image (empty set = healthy), or None when not given.
        ranges: labelled slice ranges, which take precedence over ``whole``.
    """

    name: str
    whole: frozenset[str] | None = None
    ranges: list[SliceRange] = field(default_factory=list)

    def class_names(self) -> set[str]:
        """Every class name these labels use."""
        names = set(self.whole or ())
        for item in self.ranges:
            names |= item.classes
        return names

    def per_slice(self, slice_count: int) -> list[frozenset[str] | None]:
        """The classes of every slice ``0..slice_count-1``; None where a slice is unlabelled.

        Raises:
            WeakSegInputError: a range reaches beyond the image's last slice.
        """
        labels: list[frozenset[str] | None] = [self.whole] * slice_count
        for item in self.ranges:
            if item.last >= slice_count:
                raise WeakSegInputError(
                    f"image labels line {item.line}: slices {item.first}-{item.last} of {self.name!r} "
                    f"go beyond its {slice_count} slices (0..{slice_count - 1})"
                )
            for index in range(item.first, item.last + 1):
                labels[index] = item.classes
        return labels


def read_image_labels(path: str | os.PathLike, class_names: list[str] | None = None) -> dict[str, ImageLabels]:
    """Read an image-labels CSV (see the module docstring) into labels per image name.

    Args:
        path: the CSV file.
        class_names: the known classes, background first; every label must be one of
            them (case-insensitive; the class list's spelling is kept) or ``healthy``.
            None accepts any name.

    Raises:
        WeakSegInputError: missing file or columns, bad slice ranges, overlapping ranges,
            a repeated whole-image row, ``background`` or an unknown class as a label; the
            message names the file and line.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise WeakSegInputError(f"{path}: no such image-labels file")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        reader.fieldnames = columns
        name_column = next((name for name in NAME_COLUMNS if name in columns), None)
        if name_column is None or "label" not in columns:
            raise WeakSegInputError(
                f"{path}: needs a header with an image (or case/volume) column and a label column; found {columns}"
            )
        result: dict[str, ImageLabels] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            name = (row.get(name_column) or "").strip()
            if not name:
                raise WeakSegInputError(f"{where}: the {name_column} column is empty")
            classes = _parse_classes(row.get("label") or "", class_names, where)
            first_last = _parse_slices(row, where)
            entry = result.setdefault(name, ImageLabels(name))
            if first_last is None:
                if entry.whole is not None:
                    raise WeakSegInputError(f"{where}: {name!r} already has a whole-image label")
                entry.whole = classes
                continue
            first, last = first_last
            for other in entry.ranges:
                if first <= other.last and other.first <= last:
                    raise WeakSegInputError(
                        f"{where}: slices {first}-{last} of {name!r} overlap slices "
                        f"{other.first}-{other.last} (line {other.line})"
                    )
            entry.ranges.append(SliceRange(first, last, classes, line))
    if not result:
        raise WeakSegInputError(f"{path}: holds no labelled image")
    return result


def _parse_classes(text: str, class_names: list[str] | None, where: str) -> frozenset[str]:
    """``healthy`` -> empty set; ``a;b`` -> {a, b}, checked against ``class_names``."""
    names = [part.strip() for part in text.split(CLASS_SEPARATOR) if part.strip()]
    if not names:
        raise WeakSegInputError(f"{where}: the label is empty; write a class name or '{HEALTHY}'")
    if len(names) == 1 and names[0].lower() == HEALTHY:
        return frozenset()
    known = {name.lower(): name for name in (class_names or [])[1:]}
    checked = []
    for name in names:
        if name.lower() == HEALTHY:
            raise WeakSegInputError(f"{where}: '{HEALTHY}' cannot be combined with a class ({text!r})")
        if name.lower() == "background":
            raise WeakSegInputError(f"{where}: 'background' is not an image label; use '{HEALTHY}'")
        if class_names is not None:
            if name.lower() not in known:
                raise WeakSegInputError(f"{where}: label {name!r} is not one of {list(known.values()) + [HEALTHY]}")
            name = known[name.lower()]
        checked.append(name)
    return frozenset(checked)


def _parse_slices(row: dict, where: str) -> tuple[int, int] | None:
    """``(first, last)`` from the ``slices`` column or ``first_slice``/``last_slice``; None for the whole image."""
    text = (row.get("slices") or "").strip()
    if not text:
        ends = [(row.get(column) or "").strip() for column in ("first_slice", "last_slice")]
        if not any(ends):
            return None
        text = f"{ends[0] or ends[1]}-{ends[1] or ends[0]}"
    match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", text)
    if not match:
        raise WeakSegInputError(f"{where}: slices {text!r} must be empty, 'a' or 'a-b' (whole numbers)")
    first = int(match.group(1))
    last = int(match.group(2) if match.group(2) is not None else first)
    if first > last:
        raise WeakSegInputError(f"{where}: slice range {text!r} starts after it ends")
    return first, last


@dataclass(frozen=True)
class Diagnoses:
    """The diagnosis of every image a CSV names, and the list of diagnoses (sorted, or as given)."""

    per_image: dict[str, str]
    names: list[str]

    def index_of(self, image: str) -> int:
        """The code of ``image``'s diagnosis in :attr:`names`, -1 when the CSV gives none."""
        diagnosis = self.per_image.get(image)
        return -1 if diagnosis is None else self.names.index(diagnosis)


def read_diagnoses(path: str | os.PathLike, names: list[str] | None = None) -> Diagnoses:
    """Read the ``diagnosis`` column of a CSV: one diagnosis per image or volume.

    Rows with an empty diagnosis are skipped (an image without a diagnosis); an image may
    appear in several rows (slice ranges of :func:`read_image_labels`) if they agree.

    Args:
        path: the CSV file (an image/case/volume column and a ``diagnosis`` column).
        names: the known diagnoses (a model's); every value must be one of them
            (case-insensitive; the list's spelling is kept). None takes the values found, sorted.

    Raises:
        WeakSegInputError: missing file or column, an image with two diagnoses, an unknown
            diagnosis, or no diagnosis at all; the message names the file and line.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise WeakSegInputError(f"{path}: no such image-labels file")
    known = {name.lower(): name for name in names} if names is not None else None
    per_image: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        reader.fieldnames = columns
        name_column = next((name for name in NAME_COLUMNS if name in columns), None)
        if name_column is None or DIAGNOSIS_COLUMN not in columns:
            raise WeakSegInputError(f"{path}: needs a header with an image (or case/volume) column and a "
                                    f"{DIAGNOSIS_COLUMN} column; found {columns}")
        for line, row in enumerate(reader, start=2):
            name = (row.get(name_column) or "").strip()
            diagnosis = (row.get(DIAGNOSIS_COLUMN) or "").strip()
            if not name or not diagnosis:
                continue
            if known is not None:
                if diagnosis.lower() not in known:
                    raise WeakSegInputError(f"{path}, line {line}: diagnosis {diagnosis!r} is not one of "
                                            f"{list(known.values())}")
                diagnosis = known[diagnosis.lower()]
            if per_image.setdefault(name, diagnosis) != diagnosis:
                raise WeakSegInputError(f"{path}, line {line}: {name!r} has two diagnoses, "
                                        f"{per_image[name]!r} and {diagnosis!r}")
    if not per_image:
        raise WeakSegInputError(f"{path}: no image has a diagnosis")
    return Diagnoses(per_image, list(names) if names is not None else sorted(set(per_image.values())))


def resolve_image_path(folder: str | os.PathLike, name: str, csv_path: str | os.PathLike) -> str:
    """The image a CSV row names: ``folder/name`` itself, else ``folder/name<ext>`` or ``folder/name_image<ext>``.

    Raises:
        WeakSegInputError: no such file; the message names the CSV and the folder.
    """
    candidates = [os.path.join(folder, name)]
    candidates += [os.path.join(folder, f"{name}{role}{suffix}") for role in ("", "_image") for suffix in LABELLED_IMAGE_SUFFIXES]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise WeakSegInputError(
        f"{csv_path}: image {name!r} not found in {folder} (tried {name}, {name}<ext> and {name}_image<ext>)"
    )


def slice_labels_from_mask(mask: np.ndarray, class_names: list[str]) -> list[frozenset[str]]:
    """The classes each slice of a ``(Z, Y, X)`` labelmap holds (codes index ``class_names``).

    For benchmarks only: derives the image-level labels a reader would have given, from
    a full mask that the method itself never sees.
    """
    result = []
    for slice_codes in np.asarray(mask):
        present = np.unique(slice_codes)
        result.append(frozenset(class_names[int(code)] for code in present if 0 < code < len(class_names)))
    return result


def write_image_labels(path: str | os.PathLike, labels: dict[str, list[frozenset[str]]]) -> None:
    """Write per-slice labels as an ``image,slices,label`` CSV (atomically), runs of equal slices as one range.

    Args:
        labels: image name -> the classes of each of its slices (empty: healthy), as
            :func:`slice_labels_from_mask` gives them.
    """
    from weakseg.atomic import write_atomically

    rows = []
    for name, per_slice in labels.items():
        start = 0
        for index in range(1, len(per_slice) + 1):
            if index == len(per_slice) or per_slice[index] != per_slice[start]:
                classes = CLASS_SEPARATOR.join(sorted(per_slice[start])) or HEALTHY
                slices = f"{start}" if index - 1 == start else f"{start}-{index - 1}"
                rows.append((name, slices, classes))
                start = index

    def write(temporary: str) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("image", "slices", "label"))
            writer.writerows(rows)

    write_atomically(path, write)
