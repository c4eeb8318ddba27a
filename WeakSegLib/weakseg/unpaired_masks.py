"""Unpaired masks: full segmentations of *other* images, used as a shape prior.

A method with a shape prior (MAAG, :mod:`weakseg.methods.adversarial`) learns what real
masks look like from masks that need not belong to the training images: other patients,
an atlas, another data set of the same structures. They must label the same classes, and
they must never be the masks of the training images (that would be full supervision in
disguise); both are checked here.

A mask source is a folder. If it holds ``<case>_label.<ext>`` files (the cohort layout) or
``<case>_mask.<ext>`` files (the HC18 layout), those are the masks and a split spec
(:func:`weakseg.cases.parse_split`) may pick cases; otherwise every labelmap file in it is a
mask and the case is the file name without its suffix. A labelmap's codes are the class codes (0 = background); a ``.seg.nrrd`` is
matched to the classes by segment name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from weakseg.data import resize_labels
from weakseg.cases import parse_split
from weakseg.errors import WeakSegInputError
from weakseg.io import read_labelmap, read_sitk, suffix_of
from weakseg.progress import SILENT, Progress
from weakseg.segnrrd import read_seg_nrrd
from weakseg.suffixes import MASK_SUFFIXES



@dataclass
class MaskFile:
    """One unpaired mask: its case name and path."""

    case: str
    path: str


def list_mask_files(folder: str | os.PathLike, split: str | None = None) -> list[MaskFile]:
    """The mask files of ``folder`` (see the module docstring), sorted by case name.

    Raises:
        WeakSegInputError: missing folder, no mask file, or nothing selected by ``split``.
    """
    folder = str(folder)
    if not os.path.isdir(folder):
        raise WeakSegInputError(f"{folder}: no such folder of unpaired masks")
    entries = sorted(entry.name for entry in os.scandir(folder) if entry.is_file() and suffix_of(entry.name) in MASK_SUFFIXES)
    stems = {name: name[: -len(suffix_of(name))] for name in entries}
    masks = [MaskFile(stems[name], str(Path(folder) / name)) for name in entries]
    for role in ("_label", "_mask"):
        labelled = [name for name in entries if stems[name].endswith(role)]
        if labelled:
            masks = [MaskFile(stems[name][: -len(role)], str(Path(folder) / name)) for name in labelled]
            break
    if not masks:
        raise WeakSegInputError(f"{folder}: no mask files (expected <case>_label.<ext>, <case>_mask.<ext> or labelmaps)")
    selected = parse_split(split)
    chosen = [mask for mask in masks if selected(mask.case)]
    if not chosen:
        raise WeakSegInputError(f"{folder}: split {split!r} selects none of its {len(masks)} masks")
    return chosen


def read_mask_codes(mask: MaskFile, class_names: list[str]) -> np.ndarray:
    """The mask as class codes ``(Z, Y, X)``, checked against ``class_names``."""
    reference = read_sitk(mask.path)
    if suffix_of(mask.path) == ".seg.nrrd":
        code_of = {name.lower(): code for code, name in enumerate(class_names)}
        segments = read_seg_nrrd(mask.path, reference)
        unknown = sorted(name for name in segments if name.lower() not in code_of)
        if unknown:
            raise WeakSegInputError(f"{mask.path}: segment(s) {unknown} are not among the classes {class_names}")
        if not segments:
            raise WeakSegInputError(f"{mask.path}: the segmentation has no segments")
        codes = np.zeros(next(iter(segments.values())).shape, dtype=np.int32)
        for name, voxels in segments.items():
            codes[voxels] = code_of[name.lower()]
        return codes
    codes = read_labelmap(mask.path, reference)
    outside = sorted(int(code) for code in np.unique(codes) if not 0 <= code < len(class_names))
    if outside:
        raise WeakSegInputError(
            f"{mask.path}: holds code(s) {outside}, but the classes are {class_names} (codes 0..{len(class_names) - 1})"
        )
    return codes


def load_unpaired_masks(
    masks: list[MaskFile],
    class_names: list[str],
    size: int,
    training_cases: list[str] = (),
    progress: Progress = SILENT,
) -> torch.Tensor:
    """The slices of the masks that show any foreground, resized to ``size`` x ``size``.

    Args:
        masks: from :func:`list_mask_files`.
        class_names: the model's classes, background first.
        training_cases: names of the cases whose scribbles train the model; a mask of one
            of them is refused.

    Returns:
        int64 ``(M, size, size)`` class codes (nearest-neighbour resizing).

    Raises:
        WeakSegInputError: a mask of a training case, a code or segment name outside the
            classes (naming the file), or a foreground class that no mask contains.
    """
    overlap = sorted({mask.case for mask in masks} & set(training_cases))
    if overlap:
        shown = ", ".join(overlap[:5]) + (" ..." if len(overlap) > 5 else "")
        raise WeakSegInputError(
            f"unpaired masks must not belong to the training images, but these cases are in both: {shown}"
        )
    slices, seen = [], set()
    for index, mask in enumerate(masks):
        codes = read_mask_codes(mask, class_names)
        seen.update(int(code) for code in np.unique(codes))
        with_foreground = codes[(codes > 0).reshape(len(codes), -1).any(axis=1)]
        if len(with_foreground):
            slices.append(resize_labels(torch.from_numpy(with_foreground.astype(np.int64)), (size, size)))
        progress.report((index + 1) / len(masks), f"read mask {mask.case}")
    missing = [name for code, name in enumerate(class_names) if code and code not in seen]
    if missing:
        raise WeakSegInputError(
            f"the unpaired masks ({Path(masks[0].path).parent}) never contain class(es) {missing}; "
            f"they must label the same classes as the scribbles: {class_names}"
        )
    return torch.cat(slices)
