"""Folders to training arrays for method ``transfer`` (the file layer over :mod:`weakseg.methods.transfer_training`).

* **Source**: a cohort folder (:mod:`weakseg.cases`) whose cases all have a full mask
  ``<case>_label.<ext>`` (labelmap with the class codes, or a ``.seg.nrrd`` matched by
  segment name).
* **Target**: the images an image-level label CSV (:mod:`weakseg.image_labels`) names, in
  the target folder; a target case's ``<case>_scribble.<ext>`` beside its image is used as
  pixel labels too, unless the settings say ``ignore_scribbles``.

Every volume is normalised as prediction normalises it (:func:`weakseg.methods.scribble_unet.prepare_slices`)
and every slice resized to the training size, so :func:`build_arrays` can be saved once
(:func:`~weakseg.methods.transfer_training.save_arrays`) and trained anywhere.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from weakseg.cases import CohortCase, list_cases, parse_split
from weakseg.contract import UNLABELLED
from weakseg.data import resize_labels
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import read_image_labels, resolve_image_path
from weakseg.io import read_image
from weakseg.methods.scribble_unet import prepare_slices
from weakseg.methods.transfer_training import TransferArrays, train_transfer_arrays
from weakseg.progress import SILENT, Progress
from weakseg.unpaired_masks import MaskFile, read_mask_codes
from weakseg.weak_labels import check_class_names, load_scribbles


def source_cases(folder: str | os.PathLike, split: str | None) -> list[CohortCase]:
    """The source cohort's cases; every one must have a full mask.

    Raises:
        WeakSegInputError: no such folder, nothing selected, or cases without ``<case>_label``.
    """
    cases = list_cases(folder, split, require_scribbles=False)
    missing = [case.name for case in cases if case.label_path is None]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise WeakSegInputError(f"{folder}: {len(missing)} source case(s) have no full mask <case>_label file: {shown}")
    return cases


def read_source(cases: list[CohortCase], class_names: list[str], size: int,
                progress: Progress = SILENT) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised source slices ``(N, C, size, size)`` and their masks ``(N, size, size)`` int64."""
    images, masks = [], []
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        codes = read_mask_codes(MaskFile(case.name, case.label_path), class_names)
        if codes.shape != image.shape_zyx:
            raise WeakSegInputError(f"{case.label_path}: mask {codes.shape} does not match its image {image.shape_zyx}")
        images.append(prepare_slices(image, size))
        masks.append(resize_labels(torch.from_numpy(codes.astype(np.int64)), (size, size)))
        progress.report((index + 1) / len(cases), f"read source {case.name}")
    return torch.cat(images), torch.cat(masks)


def read_target(folder: str | os.PathLike, image_labels: str, class_names: list[str], size: int,
                split: str | None = None, use_scribbles: bool = True,
                progress: Progress = SILENT) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]:
    """The target slices of the images ``image_labels`` names (selected by ``split``).

    Returns:
        images ``(N, C, size, size)``, present classes bool ``(N, K-1)``, labelled bool
        ``(N,)``, scribbles int64 ``(N, size, size)`` (None when no case has scribbles or
        ``use_scribbles`` is False) and the image names.
    """
    labels = read_image_labels(image_labels, class_names)
    selected = parse_split(split)
    labels = {name: entry for name, entry in labels.items() if selected(name)}
    if not labels:
        raise WeakSegInputError(f"{image_labels}: --split {split!r} selects none of its images")
    scribble_of = {}
    if use_scribbles:
        scribble_of = {os.path.abspath(case.image_path): case.scribble_path
                       for case in list_cases(folder, None, require_scribbles=False) if case.scribble_path}
    code_of = {name.lower(): code for code, name in enumerate(class_names)}
    images, present, labelled, scribbles = [], [], [], []
    for index, (name, entry) in enumerate(labels.items()):
        path = resolve_image_path(folder, name, image_labels)
        image = read_image(path)
        slices = prepare_slices(image, size)
        per_slice = entry.per_slice(len(slices))
        shows = torch.zeros(len(slices), len(class_names) - 1, dtype=torch.bool)
        for slice_index, classes in enumerate(per_slice):
            for class_name in classes or ():
                shows[slice_index, code_of[class_name.lower()] - 1] = True
        images.append(slices)
        present.append(shows)
        labelled.append(torch.tensor([classes is not None for classes in per_slice]))
        scribble_path = scribble_of.get(os.path.abspath(path))
        codes = np.full(image.shape_zyx, UNLABELLED, dtype=np.int64)
        if scribble_path:
            codes = load_scribbles(scribble_path, image, class_names).labels.astype(np.int64)
        scribbles.append(resize_labels(torch.from_numpy(codes), (size, size)))
        progress.report((index + 1) / len(labels), f"read target {name}")
    any_scribbles = any(bool((item != UNLABELLED).any()) for item in scribbles)
    return (torch.cat(images), torch.cat(present), torch.cat(labelled),
            torch.cat(scribbles) if any_scribbles else None, list(labels))


def build_arrays(source_dir: str, source_split: str | None, target_dir: str, image_labels: str,
                 class_names: list[str], size: int, target_split: str | None = None, use_scribbles: bool = True,
                 progress: Progress = SILENT) -> TransferArrays:
    """Read both cohorts into :class:`~weakseg.methods.transfer_training.TransferArrays`."""
    check_class_names(class_names, "class names")
    cases = source_cases(source_dir, source_split)
    source_images, source_masks = read_source(cases, class_names, size, progress.part(0.0, 0.6))
    images, present, labelled, scribbles, names = read_target(target_dir, image_labels, class_names, size,
                                                              target_split, use_scribbles, progress.part(0.6, 1.0))
    return TransferArrays(source_images, source_masks, images, present, labelled, scribbles,
                          [case.name for case in cases], names)


def train(request) -> None:
    """``weakseg train TARGET --method transfer --source SOURCE --image-labels CSV`` (a :class:`~weakseg.methods.spec.TrainingRequest`)."""
    if not request.source_dir:
        raise WeakSegInputError("method transfer needs --source FOLDER (the fully segmented source cohort)")
    if not request.image_labels:
        raise WeakSegInputError("method transfer needs --image-labels CSV (the target's image-level labels)")
    if not request.class_names:
        raise WeakSegInputError("method transfer needs --classes (background first), the names that match the "
                                "source masks' codes to the image labels")
    settings = request.settings
    arrays = build_arrays(request.source_dir, request.source_split, request.data_dir, request.image_labels,
                          list(request.class_names), settings.image_size, request.split,
                          not settings.ignore_scribbles, request.progress.part(0.0, 0.05))
    train_transfer_arrays(arrays, list(request.class_names), request.out_path, settings, request.device,
                          request.progress.part(0.05, 1.0), resume=request.resume)
