"""The collaborative method's data and training run: folder + diagnosis CSV in, model file out.

Cases come from a cohort folder (:mod:`weakseg.cases`: ``<case>_image.<ext>``, full masks as
``<case>_label.<ext>`` or ``<case>_mask.<ext>``); the diagnoses from the ``diagnosis`` column
of the ``--image-labels`` CSV (:func:`weakseg.image_labels.read_diagnoses`). A case is
trained on when the CSV gives its diagnosis or ``--masks-split`` selects it; only the masks
of the cases ``--masks-split`` selects are read (those it selects without a mask file count as
unmasked). Masks hold class codes ``0..K-1``; a
two-class model (background, lesion) also reads any non-zero value as the lesion, so
0/255 masks (PH2) work as they are.

Checkpoints (atomic, with the random state) are written every ``checkpoint_every`` steps of
the segmenter's first stage and after every later stage; ``--resume`` continues from the
last one, and on the CPU ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from weakseg.cases import CohortCase, list_cases, parse_split
from weakseg.contract import BACKGROUND, UNLABELLED
from weakseg.data import resize_labels
from weakseg.engine import check_resume, load_checkpoint, restore_random_state, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import Diagnoses, read_diagnoses
from weakseg.io import check_same_channels, read_image, read_labelmap
from weakseg.methods.collaborative import MODEL_KIND, CollaborativeConfig
from weakseg.methods.collaborative_training import CollaborativeArrays, CollaborativeTrainer
from weakseg.methods.scribble_unet import prepare_slices
from weakseg.methods.spec import TrainingRequest
from weakseg.progress import SILENT, Progress

DEFAULT_CLASSES = [BACKGROUND, "lesion"]


def mask_codes(path: str, reference, class_names: list[str]) -> np.ndarray:
    """A case's full mask as class codes ``(Z, Y, X)`` (see the module docstring for 0/255 masks).

    Raises:
        WeakSegInputError: off the image's grid, or codes beyond the class list.
    """
    codes = read_labelmap(path, reference)
    if len(class_names) == 2:
        return (codes > 0).astype(np.int64)
    if codes.min() < 0 or codes.max() >= len(class_names):
        raise WeakSegInputError(f"{path}: mask codes {int(codes.min())}..{int(codes.max())} do not fit the "
                                f"{len(class_names)} classes {class_names}")
    return codes.astype(np.int64)


def build_arrays(cases: Sequence[CohortCase], diagnoses: Diagnoses | None, masked: set[str], class_names: list[str],
                 size: int, progress: Progress = SILENT) -> CollaborativeArrays:
    """Training slices of ``cases`` at ``size`` x ``size``; masks only of the cases named in ``masked``.

    Raises:
        WeakSegInputError: images with different channel counts, or a masked case without a mask file.
    """
    images, masks, flags, codes, volumes = [], [], [], [], []
    channels = None
    for number, case in enumerate(cases):
        image = read_image(case.image_path)
        channels = check_same_channels(channels, image.array.shape[0], case.image_path)
        slices = prepare_slices(image, size)
        count = len(slices)
        if case.name in masked:
            if case.label_path is None:
                raise WeakSegInputError(f"{case.image_path}: --masks-split selects {case.name} but it has no "
                                        "<case>_label or <case>_mask file")
            mask = torch.from_numpy(mask_codes(case.label_path, image.reference, class_names))
            masks.append(resize_labels(mask, (size, size)))
        else:
            masks.append(torch.full((count, size, size), UNLABELLED, dtype=torch.long))
        images.append(slices)
        flags.append(torch.full((count,), case.name in masked, dtype=torch.bool))
        codes.append(torch.full((count,), diagnoses.index_of(case.name) if diagnoses else -1, dtype=torch.long))
        volumes.append(torch.full((count,), number, dtype=torch.long))
        progress.report((number + 1) / len(cases), f"read {case.name}")
    return CollaborativeArrays(torch.cat(images), torch.cat(masks), torch.cat(flags), torch.cat(codes), torch.cat(volumes))


def training_cases(request: TrainingRequest, diagnoses: Diagnoses) -> tuple[list[CohortCase], set[str]]:
    """The cases to train on and the names of those whose masks are used.

    A case ``--masks-split`` selects is masked when it has a mask file (a name prefix may select
    more cases than meant, e.g. ``case1`` also ``case10``; those without a mask keep their diagnosis only).

    Raises:
        WeakSegInputError: no --masks-split, or it selects no training case with a mask file.
    """
    if not request.masks_split:
        raise WeakSegInputError("method collaborative needs --masks-split CASES (the cases whose full masks it learns from)")
    selected = parse_split(request.masks_split)
    cases = [case for case in list_cases(request.data_dir, request.split, require_scribbles=False)
             if case.name in diagnoses.per_image or selected(case.name)]
    masked = {case.name for case in cases if selected(case.name) and case.label_path is not None}
    if not masked:
        raise WeakSegInputError(f"--masks-split {request.masks_split}: selects no training case with a <case>_label "
                                f"or <case>_mask file in {request.data_dir}")
    return cases, masked


def _metadata(trainer: CollaborativeTrainer, config: CollaborativeConfig, class_names: list[str],
              diagnosis_names: list[str]) -> dict:
    return {"method": MODEL_KIND, "class_names": list(class_names), "diagnoses": list(diagnosis_names),
            "config": config.as_dict(), "model_config": dict(trainer.segmenter.config),
            "classifier_config": dict(trainer.classifier.config) if trainer.classifier is not None else None,
            "image_size": config.image_size}


def train(request: TrainingRequest) -> None:
    """``weakseg train --method collaborative``: read the data, run every stage, write the model file."""
    config: CollaborativeConfig = request.settings
    config.check()
    class_names = list(request.class_names or DEFAULT_CLASSES)
    diagnoses = read_diagnoses(request.image_labels)
    cases, masked = training_cases(request, diagnoses)
    progress = request.progress
    arrays = build_arrays(cases, diagnoses, masked, class_names, config.image_size, progress.part(0.0, 0.05))
    payload = None
    if request.resume:
        payload = load_checkpoint(request.out_path, request.device)
        check_resume(payload, request.out_path, MODEL_KIND, class_names, config.as_dict())
    run_stages(arrays, config, class_names, diagnoses.names, request.device, request.out_path,
               progress.part(0.05, 1.0), payload)


def run_stages(arrays: CollaborativeArrays, config: CollaborativeConfig, class_names: list[str],
               diagnosis_names: list[str], device: torch.device, out_path: str, progress: Progress = SILENT,
               payload: dict | None = None) -> CollaborativeTrainer:
    """Every stage of a run, a checkpoint to ``out_path`` after each (and during the first); resumes from ``payload``."""
    trainer = CollaborativeTrainer(arrays, config, len(class_names), len(diagnosis_names), device)
    metadata = _metadata(trainer, config, class_names, diagnosis_names)
    later = trainer.stages()
    done, step, optimizer_state = 0, 0, None
    if payload is not None:
        extra = payload.get("extra") or {}
        trainer.segmenter.load_state_dict(payload["model"])
        trainer.load_state(extra)
        restore_random_state(payload, trainer.generator)
        done, step = int(extra.get("stages_done", 0)), int(payload["step"])
        optimizer_state = payload.get("optimizer") if done == 0 else None

    def save(stages_done: int, stage_step: int, optimizer=None) -> None:
        save_checkpoint(out_path, trainer.segmenter, optimizer, stage_step, metadata,
                        {**trainer.state(), "stages_done": stages_done}, trainer.generator)

    share = config.steps / (config.steps + config.classifier_steps * 0.4 + config.rounds * config.round_steps * 1.3)
    if done == 0:
        trainer.train_segmenter(progress.part(0.0, share), step, optimizer_state,
                                lambda finished, optimizer: save(0 if finished < config.steps else 1, finished, optimizer))
        done = 1
    for number, (name, stage) in enumerate(later, start=1):
        if number < done:
            continue
        start = share + (1 - share) * (number - 1) / len(later)
        stage(progress.part(start, share + (1 - share) * number / len(later)))
        save(number + 1, 0)
    progress.report(1.0, "trained")
    return trainer
