"""Writing a class labelmap as the user asked: a Slicer segmentation or a plain labelmap."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from weakseg.errors import WeakSegInputError
from weakseg.io import labels_to_image, suffix_of, write_image
from weakseg.contract import class_color
from weakseg.segnrrd import Segment, write_seg_nrrd
from weakseg.suffixes import PICTURE_SUFFIXES, RESULT_SUFFIXES



def check_result_path(path: str | os.PathLike, reference: sitk.Image | None = None) -> None:
    """Fail before any work is done when ``path`` cannot receive a result.

    Raises:
        WeakSegInputError: unknown suffix, or a 2D picture format for a 3D result.
    """
    suffix = suffix_of(path)
    if suffix not in RESULT_SUFFIXES:
        raise WeakSegInputError(f"{path}: output must end in one of {', '.join(RESULT_SUFFIXES)}")
    if reference is not None and reference.GetDimension() == 3 and suffix in PICTURE_SUFFIXES:
        raise WeakSegInputError(f"{path}: a 3D result cannot be written as {suffix}; use .seg.nrrd or .nii.gz")


def write_result(path: str | os.PathLike, labels: np.ndarray, reference: sitk.Image, class_names: list[str]) -> None:
    """Write ``(Z, Y, X)`` class codes on ``reference``'s grid, atomically.

    ``.seg.nrrd`` gives a Slicer segmentation with one named, coloured segment per
    non-background class (label value = class code); any other suffix gives a labelmap.
    """
    check_result_path(path, reference)
    if suffix_of(path) == ".seg.nrrd":
        segments = [Segment(name, code, class_color(name, code)) for code, name in enumerate(class_names) if code > 0]
        write_seg_nrrd(path, labels, reference, segments)
    else:
        write_image(labels_to_image(np.asarray(labels).astype(np.uint8), reference), path)
