"""Training the scribble U-Net of methods cohort, pce and maag (see :mod:`weakseg.methods.scribble_unet`).

One loop for the three methods: balanced partial cross-entropy on the scribbles, the
regularisers and the background prior beyond the scribbles' hull that the settings turn
on, and the multi-scale adversarial shape prior when ``adversarial_weight`` > 0.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.nn import functional as F

from weakseg.cases import CohortCase
from weakseg.contract import UNLABELLED
from weakseg.data import augment, resize_labels
from weakseg.distributed import TrainingContext, for_training, training_context
from weakseg.engine import check_resume, load_checkpoint, restore_random_state, run_training, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.io import read_image
from weakseg.losses import balanced_class_weights, entropy_minimisation, partial_cross_entropy, total_variation
from weakseg.methods.scribble_settings import ARCHITECTURE_SETTINGS, CohortConfig
from weakseg.methods.spec import TrainingRequest
from weakseg.methods.scribble_unet import (
    METHOD_NAME,
    NORMALISATION,
    _resolve_device,
    build_scribble_network,
    outside_scribbles,
    prepare_slices,
)
from weakseg.progress import SILENT, Progress
from weakseg.unpaired_masks import MaskFile, load_unpaired_masks
from weakseg.weak_labels import check_class_names, load_scribbles


def _load_training_data(cases, class_names, size, progress: Progress):
    """All slices of all cases, resized, with their resized scribbles."""
    images, labels = [], []
    channels = None
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        if channels is None:
            channels = image.array.shape[0]
        elif image.array.shape[0] != channels:
            raise WeakSegInputError(
                f"{case.image_path}: has {image.array.shape[0]} channels but earlier cases have {channels}"
            )
        scribbles = load_scribbles(case.scribble_path, image, class_names)
        images.append(prepare_slices(image, size))
        labels.append(resize_labels(torch.from_numpy(scribbles.labels.astype(np.int64)), (size, size)))
        progress.report((index + 1) / len(cases), f"loaded {case.name}")
    return torch.cat(images), torch.cat(labels), channels




def _weak_loss(logits, labels, num_classes, config: CohortConfig, pseudo_weight: float, context: TrainingContext,
               global_labels: torch.Tensor) -> torch.Tensor:
    """Balanced pCE + regularisers (+ self-training on confident predictions).

    ``labels`` are this process's share of the global batch's ``global_labels``: the class
    weights and the pCE's normaliser come from the global batch, and the share is scaled by
    the number of processes, so that their averaged gradient is the global batch's. (The
    self-training term, off by default and not a command-line option, is this share's own.)
    """
    weights = balanced_class_weights(global_labels, num_classes).to(logits.device)
    labelled = global_labels[global_labels != UNLABELLED].to(logits.device)
    loss = context.world_size * partial_cross_entropy(logits, labels, weights, normaliser=weights[labelled].sum())
    if config.entropy_weight:
        loss = loss + config.entropy_weight * entropy_minimisation(logits)
    if config.tv_weight:
        loss = loss + config.tv_weight * total_variation(logits)
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

    images, labels, in_channels = _load_training_data(cases, class_names, config.image_size, progress.part(0.0, 0.05))
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
        network.load_state_dict(stored["model"])
        if stored.get("optimizer"):
            optimizer.load_state_dict(stored["optimizer"])
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + start_step)
    warmup_steps = int(config.pseudo_label_warmup * config.steps)
    case_names = [case.name for case in cases]
    prior = None
    if config.adversarial_weight:
        from weakseg.methods.adversarial import AdversarialShapePrior

        masks = load_unpaired_masks(unpaired_masks, class_names, config.image_size, case_names, progress.part(0.05, 0.06))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            prior = AdversarialShapePrior(
                masks, len(class_names), network.scale_count, config.adversarial_weight, device, generator
            )
        if stored is not None and (stored.get("extra") or {}).get("shape_prior"):
            prior.load_state(stored["extra"]["shape_prior"])

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
        if config.outside_weight:
            background = torch.where(far == 1, 0, UNLABELLED).to(device)
            loss = loss + config.outside_weight * context.world_size * partial_cross_entropy(
                logits, background, normaliser=(global_far == 1).sum().to(device))
        if prior:
            prior.train_critic(context.gather(scale_logits), step, config.steps)
            loss = loss + prior.segmenter_loss(scale_logits, loss, context.average)
        return loss

    def checkpoint(step: int) -> None:
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
        if context.is_main:
            save_checkpoint(out_path, network, optimizer, step, metadata, extra, generator)
        context.barrier()

    if stored is not None:
        restore_random_state(stored, generator)
    else:
        torch.manual_seed(config.seed)  # dropout draws from torch's global generator: same seed, same run
    try:
        run_training(network, optimizer, compute_loss, config.steps, config.learning_rate, progress.part(0.06, 1.0),
                     start_step=start_step, checkpoint=checkpoint, checkpoint_every=config.checkpoint_every)
    finally:
        context.close()


class _AllScales(torch.nn.Module):
    """The segmenter's logits at every scale through ``forward``, so DistributedDataParallel sees the call."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return self.network.forward_scales(batch)


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
