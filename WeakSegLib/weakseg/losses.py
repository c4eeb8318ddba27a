"""Losses for learning from weak labels: plain functions of (prediction, weak label).

Shapes: ``logits`` are ``(N, K, H, W)`` (or any ``(N, K, ...)``); sparse ``labels`` are
``(N, H, W)`` int64 holding a class code or ``ignore_index`` where nothing is known.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from weakseg.contract import UNLABELLED
from weakseg.noisy_labels import noise_weighted_dice_loss


def partial_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = UNLABELLED,
    normaliser: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over labelled voxels only (pCE; Tang et al. 2018, Lin et al. 2016).

    Returns 0 (with a gradient path) when a batch holds no labelled voxel, so callers
    need no special case. The weighted sum is divided by ``normaliser`` when given (the
    weight sum of a larger batch this one is a share of, :mod:`weakseg.distributed`), else by
    this batch's own weight sum (the mean).
    """
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    reduction = "mean" if normaliser is None else "sum"
    loss = F.cross_entropy(logits, labels, weight=class_weights, ignore_index=ignore_index, reduction=reduction)
    return loss if normaliser is None else loss / normaliser


def partial_cross_entropy_and_dice(logits: torch.Tensor, labels: torch.Tensor, dice_weight: float,
                                   class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`partial_cross_entropy` (with ``class_weights``) plus ``dice_weight`` times a soft Dice loss
    over the labelled pixels.

    For networks that learn pseudo labels in which the lesion is a small share of the pixels:
    cross-entropy alone can settle on "background everywhere" (seen with ``cycle`` and ``imagelabel``
    on small training sets); the Dice term weighs each class by its own overlap, whatever its size.
    """
    loss = partial_cross_entropy(logits, labels, class_weights)
    if not dice_weight:
        return loss
    labelled = labels != UNLABELLED
    return loss + dice_weight * noise_weighted_dice_loss(torch.softmax(logits, dim=1), torch.where(labelled, labels, 0),
                                                         labelled.float())


def balanced_class_weights(labels: torch.Tensor, num_classes: int, ignore_index: int = UNLABELLED) -> torch.Tensor:
    """Inverse-frequency class weights of the labelled voxels in this batch, mean 1.

    Scribbles over-represent large classes (background); rescaling per batch keeps thin
    structures such as the myocardium from being drowned out (Valvano et al. 2021).
    Classes absent from the batch get weight 0 (they contribute no term anyway).
    """
    counts = torch.bincount(labels[labels != ignore_index].flatten(), minlength=num_classes)[:num_classes].float()
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1.0), torch.zeros_like(counts))
    present = counts > 0
    if present.any():
        weights = weights / weights[present].mean()
    return weights


def masked_distillation(logits: torch.Tensor, teacher_probabilities: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence from a teacher's softmax to the student's over the pixels where ``mask`` is True.

    Learning without forgetting (Li & Hoiem 2016): a student fine-tuned on a few labels keeps
    the teacher's soft output, boundaries included, wherever those labels say nothing.
    ``teacher_probabilities`` has the shape of ``logits`` and ``mask`` that of a label map;
    an empty mask gives 0 with a gradient path.
    """
    log_teacher = teacher_probabilities.clamp_min(1e-8).log()
    divergence = (teacher_probabilities * (log_teacher - F.log_softmax(logits, dim=1))).sum(dim=1)
    weights = mask.to(divergence.dtype)
    return (divergence * weights).sum() / weights.sum().clamp_min(1.0)


def entropy_minimisation(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of the softmax (Grandvalet & Bengio 2005): pushes confident outputs."""
    log_probabilities = F.log_softmax(logits, dim=1)
    return -(log_probabilities.exp() * log_probabilities).sum(dim=1).mean()


def total_variation(logits: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of softmax maps between in-plane neighbours: favours compact regions."""
    probabilities = F.softmax(logits, dim=1)
    vertical = (probabilities[..., 1:, :] - probabilities[..., :-1, :]).abs().mean()
    horizontal = (probabilities[..., :, 1:] - probabilities[..., :, :-1]).abs().mean()
    return vertical + horizontal


def scribble_regularisers(
    logits: torch.Tensor,
    far: torch.Tensor | None,
    entropy_weight: float,
    tv_weight: float,
    outside_weight: float,
    world_size: int = 1,
    far_total: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scribble methods' terms beside the scribbles' cross-entropy, on ``logits`` ``(N, K, S, S)``.

    Entropy minimisation and total variation favour confident, compact regions; ``far``
    (``(N, S, S)``, 1 beyond the scribbles' hull; None: the prior is off) is pushed to
    background. On one process's share of a data-parallel batch, pass the global batch's
    count of far pixels as ``far_total`` and the number of processes as ``world_size``: the
    prior is then normalised like the global batch's, so the averaged gradient is its gradient.
    """
    loss = logits.sum() * 0.0
    if entropy_weight:
        loss = loss + entropy_weight * entropy_minimisation(logits)
    if tv_weight:
        loss = loss + tv_weight * total_variation(logits)
    if far is not None and outside_weight:
        background = torch.where(far == 1, 0, UNLABELLED).to(logits.device)
        normaliser = None if far_total is None else far_total.to(logits.device)
        loss = loss + outside_weight * world_size * partial_cross_entropy(logits, background, normaliser=normaliser)
    return loss


def least_squares_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor,
                                     fake_target: float = 0.0) -> torch.Tensor:
    """Least-squares GAN critic loss (Mao et al. 2017): real masks towards 1, generated towards ``fake_target``.

    The published MAAG uses ``fake_target=-1`` (Mao et al.'s a=-1, b=1, c=1 coding).
    """
    return 0.5 * ((real_scores - 1.0).pow(2).mean() + (fake_scores - fake_target).pow(2).mean())


def least_squares_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN generator loss: generated segmentations should score as real (1)."""
    return 0.5 * (fake_scores - 1.0).pow(2).mean()


def dynamically_weighted_loss(supervised: torch.Tensor, critic_on_supervised: torch.Tensor,
                              adversarial: torch.Tensor, adversarial_weight: float = 0.2,
                              critic_weight: float = 0.1) -> torch.Tensor:
    """The segmenter's loss of the published MAAG (Valvano et al., TMI 2021; the authors' code).

    ``|critic_on_supervised / supervised|`` x ``supervised`` + ``critic_weight`` x
    ``critic_on_supervised`` + ``adversarial_weight`` x ``adversarial``, the ratio detached:
    the supervised term is rescaled, at every step, to the value of the critic's loss on the
    scribbled batch, so the adversarial share follows the two losses instead of being fixed;
    the ratio carries no gradient, so it only scales the supervised gradient.

    Args:
        supervised: the partial cross-entropy on the scribbled batch (scalar).
        critic_on_supervised: the least-squares critic loss of real masks vs the scribbled
            batch's segmentations (scalar; the authors' code also descends it, weight 0.1).
        adversarial: the least-squares generator loss on the unlabelled batch (scalar).
    """
    ratio = (critic_on_supervised.detach() / supervised.detach()).abs()
    return ratio * supervised + critic_weight * critic_on_supervised + adversarial_weight * adversarial
