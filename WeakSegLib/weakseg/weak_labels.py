"""Scribbles: sparse per-voxel class annotations drawn on an image.

Two file forms are accepted:

* a labelmap on the image's grid with class codes ``0..K`` (0 = background) and
  ``255`` = unlabelled, the form of the ACDC scribbles of Valvano et al.;
* a Slicer ``.seg.nrrd`` whose segments are matched to classes **by name**, never by
  their order in the file.

Class names always travel with the codes so that results can be written as named
segments and matched against a trained model's classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from weakseg.contract import BACKGROUND, UNLABELLED
from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage, read_labelmap, suffix_of
from weakseg.segnrrd import read_seg_nrrd



@dataclass
class Scribbles:
    """Sparse labels for one image.

    Attributes:
        labels: uint8 ``(Z, Y, X)`` on the image grid, codes ``0..K`` or :data:`UNLABELLED`.
        class_names: ``class_names[code]`` names each code; ``class_names[0]`` is background.
        path: source file, for messages.
    """

    labels: np.ndarray
    class_names: list[str]
    path: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, int]:
        """Scribbled voxels per class name."""
        return {name: int(np.count_nonzero(self.labels == code)) for code, name in enumerate(self.class_names)}


def default_class_names(num_classes: int) -> list[str]:
    """``["background", "class_1", ...]`` for ``num_classes`` codes."""
    return [BACKGROUND] + [f"class_{code}" for code in range(1, num_classes)]


def load_scribbles(path: str | os.PathLike, image: LoadedImage, class_names: list[str] | None = None) -> Scribbles:
    """Read scribbles for ``image`` and check that they can train a model.

    Args:
        path: labelmap (codes, 255 = unlabelled) or ``.seg.nrrd`` (segments by name).
        image: the image the scribbles were drawn on; grids must match.
        class_names: the classes in code order, background first. For a ``.seg.nrrd``
            every segment name must be one of them. When omitted, a labelmap gets
            :func:`default_class_names` up to its highest code, and a ``.seg.nrrd`` gets
            "background" followed by its other segment names in alphabetical order.

    Raises:
        WeakSegInputError: grid mismatch, unknown segment name, codes outside the classes,
            no scribbles at all, no background scribbles, or a single scribbled class.
    """
    path = str(path)
    if class_names is not None:
        check_class_names(class_names, path)
    if suffix_of(path) == ".seg.nrrd":
        labels, class_names = _labels_from_segments(path, image, class_names)
    else:
        labels, class_names = _labels_from_labelmap(path, image, class_names)
    scribbles = Scribbles(labels=labels, class_names=class_names, path=path)
    _check_usable(scribbles)
    return scribbles


def check_class_names(class_names: list[str], path: str) -> None:
    """Raise WeakSegInputError unless ``class_names`` starts with background, names another class and has no repeats."""
    if len(class_names) < 2 or class_names[0].lower() != BACKGROUND:
        raise WeakSegInputError(
            f"{path}: class list {class_names} must start with 'background' and name at least one more class"
        )
    if len({name.lower() for name in class_names}) != len(class_names):
        raise WeakSegInputError(f"{path}: class list {class_names} repeats a name")


def _labels_from_labelmap(path: str, image: LoadedImage, class_names: list[str] | None):
    codes = read_labelmap(path, image.reference)
    labelled = codes[codes != UNLABELLED]
    if labelled.size and (labelled.min() < 0 or labelled.max() >= UNLABELLED):
        bad = labelled[(labelled < 0) | (labelled >= UNLABELLED)][0]
        raise WeakSegInputError(f"{path}: value {int(bad)} is neither a class code (0..254) nor 255 (unlabelled)")
    highest = int(labelled.max()) if labelled.size else 0
    if class_names is None:
        class_names = default_class_names(max(highest + 1, 2))
    elif highest >= len(class_names):
        raise WeakSegInputError(
            f"{path}: holds class code {highest} but only {len(class_names)} classes were given: {class_names}"
        )
    return codes.astype(np.uint8), list(class_names)


def _labels_from_segments(path: str, image: LoadedImage, class_names: list[str] | None):
    masks = read_seg_nrrd(path, image.reference)
    if class_names is None:
        others = sorted(name for name in masks if name.lower() != BACKGROUND)
        backgrounds = [name for name in masks if name.lower() == BACKGROUND]
        class_names = [BACKGROUND] + others
        if not backgrounds:
            raise WeakSegInputError(f"{path}: no segment named 'background' among {sorted(masks)}")
    code_of = {name.lower(): code for code, name in enumerate(class_names)}
    labels = np.full(image.shape_zyx, UNLABELLED, dtype=np.uint8)
    for name, mask in masks.items():
        if name.lower() not in code_of:
            raise WeakSegInputError(f"{path}: segment {name!r} is not one of the classes {class_names}")
        code = code_of[name.lower()]
        overlap = mask & (labels != UNLABELLED) & (labels != code)
        if overlap.any():
            raise WeakSegInputError(f"{path}: segment {name!r} overlaps another class's scribbles")
        labels[mask] = code
    return labels, list(class_names)


def _check_usable(scribbles: Scribbles) -> None:
    counts = scribbles.counts()
    scribbled = [name for name, count in counts.items() if count]
    if not scribbled:
        raise WeakSegInputError(f"{scribbles.path}: contains no scribbles (every voxel is unlabelled)")
    if counts[scribbles.class_names[0]] == 0:
        raise WeakSegInputError(f"{scribbles.path}: no background scribbles; draw some outside the structures")
    if len(scribbled) < 2:
        raise WeakSegInputError(
            f"{scribbles.path}: only class {scribbled[0]!r} is scribbled; at least two classes are needed"
        )
