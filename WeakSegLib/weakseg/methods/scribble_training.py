"""Training the scribble U-Net of methods cohort, pce and maag (see :mod:`weakseg.methods.scribble_unet`).

One loop for the three methods: balanced partial cross-entropy on the scribbles, the
regularisers and the background prior beyond the scribbles' hull that the settings turn
on, and the multi-scale adversarial shape prior when ``adversarial_weight`` > 0.

Variant ``paper`` of ``maag`` (:data:`~weakseg.methods.scribble_settings.PAPER_MAAG`)
trains as the published method does: each step adds a batch of *unlabelled* slices
(any slice of the training cases, scribbled or not) for the adversarial term
(:class:`~weakseg.methods.adversarial.PaperShapePrior`), the learning rate follows
:func:`~weakseg.methods.adversarial.paper_learning_rate`, and the last
``validation_fraction`` of the training cases is held out: from the second half of the
run on, the network is scored on their scribbles at every epoch
(:func:`~weakseg.methods.scribble_validation.scribble_dice`) and the model file holds the
best-scoring weights (its metadata the scores, the step chosen; the latest weights stay
in the file to resume).
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
from torch.nn import functional as F

from weakseg.cases import CohortCase
from weakseg.components import one_piece_keeps_scribbles
from weakseg.contract import UNLABELLED
from weakseg.data import augment, outside_scribbles, resize_labels
from weakseg.distributed import TrainingContext, for_training, training_context, world_size_from_environment
from weakseg.engine import check_resume, load_checkpoint, restore_random_state, run_training, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.inference import flip_averaged_softmax
from weakseg.io import check_same_channels, read_image
from weakseg.losses import balanced_class_weights, partial_cross_entropy, scribble_regularisers
from weakseg.methods.scribble_settings import ARCHITECTURE_SETTINGS, CohortConfig
from weakseg.methods.spec import TrainingRequest
from weakseg.methods.scribble_unet import (
    METHOD_NAME,
    NORMALISATION,
    _resolve_device,
    build_scribble_network,
    prepare_slices,
)
from weakseg.progress import SILENT, Progress
from weakseg.unpaired_masks import MaskFile, load_unpaired_masks
from weakseg.weak_labels import check_class_names, load_scribbles
from weakseg.weight_average import restored_average


def _load_training_data(cases, class_names, size, progress: Progress):
    """All slices of all cases, resized, with their resized scribbles, and each case's slice count."""
    images, labels, slice_counts = [], [], []
    channels = None
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        channels = check_same_channels(channels, image.array.shape[0], case.image_path)
        scribbles = load_scribbles(case.scribble_path, image, class_names)
        images.append(prepare_slices(image, size))
        labels.append(resize_labels(torch.from_numpy(scribbles.labels.astype(np.int64)), (size, size)))
        slice_counts.append(len(images[-1]))
        progress.report((index + 1) / len(cases), f"loaded {case.name}")
    return torch.cat(images), torch.cat(labels), channels, slice_counts


def _choose_components(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       slice_counts: list[int], num_classes: int, device: torch.device) -> dict:
    """The clean-up the trained ``network`` gets at prediction, judged on its training volumes' scribbles.

    Each training volume is predicted as at test time (flip-averaged softmax, argmax) on the
    network's grid and :func:`weakseg.components.one_piece_keeps_scribbles` decides whether all
    foreground classes are kept as one connected piece before each class's largest component.
    """
    was_training = network.training
    predictions, scribbles, start = [], [], 0
    for count in slice_counts:
        probabilities = flip_averaged_softmax(network, images[start : start + count], device)
        predictions.append(probabilities.argmax(dim=1).numpy().astype(np.uint8))
        scribbles.append(labels[start : start + count].numpy())
        start += count
    network.train(was_training)
    return one_piece_keeps_scribbles(predictions, scribbles, num_classes)[1]




def _weak_loss(logits, labels, num_classes, config: CohortConfig, pseudo_weight: float, context: TrainingContext,
               global_labels: torch.Tensor) -> torch.Tensor:
    """Balanced pCE (+ self-training on confident predictions); the regularisers are added beside it.

    ``labels`` are this process's share of the global batch's ``global_labels``: the class
    weights and the pCE's normaliser come from the global batch, and the share is scaled by
    the number of processes, so that their averaged gradient is the global batch's. (The
    self-training term, off by default and not a command-line option, is this share's own.)
    """
    weights = balanced_class_weights(global_labels, num_classes).to(logits.device)
    labelled = global_labels[global_labels != UNLABELLED].to(logits.device)
    loss = context.world_size * partial_cross_entropy(logits, labels, weights, normaliser=weights[labelled].sum())
    if pseudo_weight:
        with torch.no_grad():
            confidence, predicted = F.softmax(logits.detach(), dim=1).max(dim=1)
            pseudo = torch.where(
                (confidence > config.pseudo_label_threshold) & (labels == UNLABELLED),
                predicted,
                torch.full_like(predicted, UNLABELLED),
            )
        pseudo_weights = balanced_class_weights(pseudo, num_classes).to(logits.device)
        loss = loss + pseudo_weight * partial_cross_entropy(logits, pseudo, pseudo_weights)
    return loss


def train_cohort(
    cases: list[CohortCase],
    out_path: str | os.PathLike,
    config: CohortConfig,
    class_names: list[str],
    progress: Progress = SILENT,
    resume: bool = False,
    device: torch.device | str | None = "cpu",
    unpaired_masks: list[MaskFile] | None = None,
) -> None:
    """Train a cohort model on the scribbles of ``cases`` and write it to ``out_path``.

    The file is rewritten atomically every ``config.checkpoint_every`` steps and at the
    end; a run interrupted (Ctrl-C, :class:`~weakseg.errors.CancelledError`, crash)
    continues with ``resume=True`` from the last checkpoint.

    Args:
        cases: from :func:`list_cases`; each needs ``scribble_path``. Label files are ignored.
        class_names: class of each scribble code, ``"background"`` first.
        resume: continue the run stored in ``out_path`` up to ``config.steps``.
        unpaired_masks: masks of other images (:func:`weakseg.unpaired_masks.list_mask_files`)
            for the adversarial shape prior; required when ``config.adversarial_weight > 0``.

    Raises:
        WeakSegInputError: unusable cases or scribbles; unpaired masks missing, unusable,
            of a training case, or given to a method without the prior; on resume, a
            missing/foreign checkpoint, different class names or network settings, or
            ``config.steps`` not beyond the stored step.
    """
    if config.variant == "paper" and world_size_from_environment() > 1:
        raise WeakSegInputError("maag --variant paper trains in one process only (its unlabelled batch and "
                                "checkpoint selection are not data-parallel): run it without torchrun")
    context = training_context(_resolve_device(device), config.batch_size)
    device = context.device
    if not context.is_main:
        progress = progress.muted()
    class_names = list(class_names)
    check_class_names(class_names, "class names")
    if not cases:
        raise WeakSegInputError("no training cases given")
    for case in cases:
        if not case.scribble_path:
            raise WeakSegInputError(f"{case.image_path}: case {case.name!r} has no scribble file")
    out_path = str(out_path)
    start_step, stored = 0, None
    if bool(config.adversarial_weight) != bool(unpaired_masks):
        raise WeakSegInputError(
            "the adversarial shape prior (method maag) needs unpaired masks, and only it uses them: "
            + ("give a folder or split of masks" if config.adversarial_weight else "drop the unpaired masks")
        )
    if resume:
        stored = load_checkpoint(out_path, "cpu")
        start_step = _check_resumable(stored, out_path, config, class_names)

    paper = config.variant == "paper"
    cases, validation_cases = _held_out(cases, config)
    images, labels, in_channels, slice_counts = _load_training_data(cases, class_names, config.image_size,
                                                                    progress.part(0.0, 0.05))
    validation = _validation_slices(validation_cases, class_names, config.image_size)
    outside = outside_scribbles(labels, config.outside_margin).long()
    scribbled = torch.nonzero((labels != UNLABELLED).flatten(1).any(dim=1)).flatten()
    if not len(scribbled):
        raise WeakSegInputError("none of the training cases has a scribbled voxel")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = for_training(build_scribble_network(in_channels, len(class_names), config), context).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if stored is not None:
        if stored["metadata"].get("model_config", {}).get("in_channels") != in_channels:
            raise WeakSegInputError(
                f"{out_path}: model was trained on {stored['metadata']['model_config'].get('in_channels')}-channel "
                f"images but these cases have {in_channels} channel(s)"
            )
        network.load_state_dict((stored.get("extra") or {}).get("latest_model") or stored["model"])
        if stored.get("optimizer"):
            optimizer.load_state_dict(stored["optimizer"])
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + start_step)
    warmup_steps = int(config.pseudo_label_warmup * config.steps)
    case_names = [case.name for case in cases]
    prior = None
    steps_per_epoch = math.ceil(len(scribbled) / config.batch_size)
    learning_rate_at = None
    if config.adversarial_weight:
        from weakseg.methods.adversarial import AdversarialShapePrior, PaperShapePrior, paper_learning_rate

        masks = load_unpaired_masks(unpaired_masks, class_names, config.image_size, case_names, progress.part(0.05, 0.06))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            if paper:
                prior = PaperShapePrior(masks, len(class_names), network.scale_count, config.image_size,
                                        config.adversarial_weight, device, generator)
            else:
                prior = AdversarialShapePrior(
                    masks, len(class_names), network.scale_count, config.adversarial_weight, device, generator
                )
        if stored is not None and (stored.get("extra") or {}).get("shape_prior"):
            prior.load_state(stored["extra"]["shape_prior"])
        if paper:
            def learning_rate_at(step: int) -> float:
                return paper_learning_rate(config.learning_rate, step, config.steps, steps_per_epoch)

    forward = context.wrap(_AllScales(network) if prior else network)

    def compute_loss(step: int) -> torch.Tensor:
        pick = scribbled[torch.randint(len(scribbled), (config.batch_size,), generator=generator)]
        batch, (target, far) = augment(
            images[pick], [labels[pick], outside[pick]], generator, config.max_rotation_degrees, config.max_scale
        )
        global_target, global_far = target, far
        batch, target, far = context.shard(batch), context.shard(target), context.shard(far)
        if prior:
            scale_logits = forward(batch.to(device))
            logits = scale_logits[0]
        else:
            logits = forward(batch.to(device))
        pseudo_weight = 0.0
        if config.pseudo_label_weight and step >= warmup_steps:
            ramp = min(1.0, (step - warmup_steps + 1) / max(1, config.steps // 10))
            pseudo_weight = config.pseudo_label_weight * ramp
        loss = _weak_loss(logits, target.to(device), len(class_names), config, pseudo_weight, context, global_target)
        loss = loss + scribble_regularisers(logits, far, config.entropy_weight, config.tv_weight, config.outside_weight,
                                            context.world_size, (global_far == 1).sum())
        if paper:
            unlabelled, _ = augment(images[torch.randint(len(images), (config.batch_size,), generator=generator)], [],
                                    generator, config.max_rotation_degrees, config.max_scale)
            unlabelled_logits = network.forward_scales(unlabelled.to(device))
            prior.train_critic(scale_logits, unlabelled_logits, learning_rate_at(step))
            return prior.segmenter_loss(scale_logits, unlabelled_logits, loss)
        if prior:
            prior.train_critic(context.gather(scale_logits), step, config.steps)
            loss = loss + prior.segmenter_loss(scale_logits, loss, context.average)
        return loss

    selection = _Selection.restored(stored, network) if validation else None
    average = restored_average(stored, network, config.ema_decay) if config.ema_decay else None

    def checkpoint(step: int) -> None:
        if selection is not None and step >= config.steps // 2:
            selection.score(step, network, validation, len(class_names), device)
        metadata = {
            "method": METHOD_NAME,
            "class_names": class_names,
            "config": config.as_dict(),
            "model_config": dict(network.config),
            "image_size": config.image_size,
            "normalisation": NORMALISATION,
            "step": step,
            "training_cases": case_names,
            "unpaired_mask_cases": [mask.case for mask in unpaired_masks or []],
        }
        extra = {"shape_prior": prior.state()} if prior else None
        saved = network
        if average is not None:
            metadata["ema"] = {"decay": config.ema_decay, "updates": average.updates}
            saved, extra = average.network, {**(extra or {}), "latest_model": network.state_dict()}
        if selection is not None:
            metadata["validation"] = selection.metadata([case.name for case in validation_cases])
            if selection.network is not None:
                saved, extra = selection.network, {**extra, "latest_model": network.state_dict()}
        if context.is_main:
            if step == config.steps:
                metadata["components"] = _choose_components(saved, images, labels, slice_counts, len(class_names), device)
            save_checkpoint(out_path, saved, optimizer, step, metadata, extra, generator)
        context.barrier()

    if stored is not None:
        restore_random_state(stored, generator)
    else:
        torch.manual_seed(config.seed)  # dropout draws from torch's global generator: same seed, same run
    try:
        run_training(network, optimizer, compute_loss, config.steps, config.learning_rate, progress.part(0.06, 1.0),
                     start_step=start_step, checkpoint=checkpoint,
                     checkpoint_every=steps_per_epoch if selection is not None else config.checkpoint_every,
                     learning_rate_at=learning_rate_at,
                     after_step=(lambda done: average.update(network)) if average is not None else None)
    finally:
        context.close()


class _AllScales(torch.nn.Module):
    """The segmenter's logits at every scale through ``forward``, so DistributedDataParallel sees the call."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return self.network.forward_scales(batch)


def _held_out(cases: list[CohortCase], config: CohortConfig) -> tuple[list[CohortCase], list[CohortCase]]:
    """Training and validation cases: variant ``paper`` holds out the last ``validation_fraction`` of them."""
    if config.variant != "paper":
        return cases, []
    count = max(1, round(config.validation_fraction * len(cases)))
    if count >= len(cases):
        raise WeakSegInputError(f"--variant paper holds out {count} of the {len(cases)} training case(s) for "
                                "checkpoint selection; give more cases")
    return cases[:-count], cases[-count:]


def _validation_slices(cases: list[CohortCase], class_names: list[str], size: int):
    """The scribbled slices of the validation cases and their scribbles, or None without cases."""
    if not cases:
        return None
    images, labels, *_ = _load_training_data(cases, class_names, size, SILENT)
    keep = (labels != UNLABELLED).flatten(1).any(dim=1)
    if not keep.any():
        raise WeakSegInputError(f"validation cases {[case.name for case in cases]} have no scribbled voxel")
    return images[keep], labels[keep]


class _Selection:
    """The best-validation weights of a run (variant ``paper``), with every score measured."""

    CRITERION = "mean foreground Dice of the raw prediction on the held-out cases' scribbled pixels"

    def __init__(self) -> None:
        self.history: list[list[float]] = []
        self.best_step: int | None = None
        self.best_score: float | None = None
        self.network: torch.nn.Module | None = None

    @classmethod
    def restored(cls, stored: dict | None, network: torch.nn.Module) -> "_Selection":
        """A fresh selection, or the one a resumed run's checkpoint recorded (its ``model`` is the best)."""
        selection = cls()
        record = ((stored or {}).get("metadata") or {}).get("validation") or {}
        if record.get("selected_step") is not None:
            selection.history = [list(item) for item in record["history"]]
            selection.best_step, selection.best_score = int(record["selected_step"]), float(record["dice"])
            selection.network = copy.deepcopy(network)
            selection.network.load_state_dict(stored["model"])
        return selection

    def score(self, step: int, network: torch.nn.Module, validation, num_classes: int, device) -> None:
        """Score ``network`` on the validation slices; keep a copy of its weights when they are the best so far."""
        from weakseg.methods.scribble_validation import scribble_dice

        images, labels = validation
        value = scribble_dice(network, images, labels, num_classes, device)
        self.history.append([step, value])
        if self.best_score is None or value > self.best_score:
            self.best_step, self.best_score = step, value
            self.network = copy.deepcopy(network)

    def metadata(self, case_names: list[str]) -> dict:
        """What the model file records about the selection (plain values)."""
        return {"cases": case_names, "criterion": self.CRITERION, "history": self.history,
                "selected_step": self.best_step, "dice": self.best_score}


def _check_resumable(stored: dict, path: str, config: CohortConfig, class_names: list[str]) -> int:
    """The step an interrupted run resumes from (:func:`weakseg.engine.check_resume`, network settings kept)."""
    check_resume(stored, path, METHOD_NAME, class_names, config.as_dict(), ARCHITECTURE_SETTINGS)
    step = int(stored.get("step", 0))
    if step >= config.steps:
        raise WeakSegInputError(f"{path}: already trained for {step} steps; ask for more than {step} steps to resume")
    return step


def train(request: TrainingRequest) -> None:
    """Train the method of ``request.settings`` on the cohort folder's cases (:class:`~weakseg.methods.spec.TrainingRequest`)."""
    from weakseg.cases import list_cases

    cases = list_cases(request.data_dir, request.split)
    class_names = request.class_names or classes_of_scribbles(cases[0])
    train_cohort(cases, request.out_path, request.settings, class_names, request.progress, resume=request.resume,
                 device=request.device, unpaired_masks=request.unpaired_masks)


def classes_of_scribbles(case: CohortCase) -> list[str]:
    """The class names a case's scribbles imply: a ``.seg.nrrd``'s segment names (background first), or
    ``background, class_1 ...`` up to a labelmap's highest code."""
    return load_scribbles(case.scribble_path, read_image(case.image_path), None).class_names
