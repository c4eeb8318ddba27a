"""Learning from noisy pseudo labels: the noise-weighted Dice loss and its pixel weights.

Pseudo labels made by a network (here the image-to-mask generator of ``shape-gan``) are
wrong in places. The noise-weighted Dice loss (Wang et al., IEEE TMI 2021) counts every
pixel of the Dice's numerator and denominator with a weight in ``[0, 1]``, its estimated
trustworthiness, so that pixels believed mislabelled pull less on the segmenter. The
weights are re-estimated between training rounds:

* round 1 trusts a pixel as much as the pseudo-label source was sure of it:
  ``|2 g - 1|`` for the generator's foreground probability ``g``;
* later rounds trust a pixel as much as the segmenter of the previous round agrees with
  its pseudo label: ``1 - |p - y|`` for its foreground probability ``p`` and the label
  ``y``, so pixels it confidently contradicts fade out while agreed ones keep full weight.

With all weights 1 the loss is the plain soft Dice loss (the ``--plain-dice`` ablation).
"""

from __future__ import annotations

import torch

SMOOTH = 1e-5


def noise_weighted_dice_loss(probabilities: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``1 - mean over classes of 2 sum(w p y) / sum(w (p + y))``.

    Args:
        probabilities: softmax output ``(N, K, H, W)``.
        labels: class codes ``(N, H, W)`` int64.
        weights: per-pixel trust ``(N, H, W)`` in ``[0, 1]``.
    """
    one_hot = torch.nn.functional.one_hot(labels, probabilities.shape[1]).permute(0, 3, 1, 2).float()
    weighted = weights[:, None]
    overlap = (weighted * probabilities * one_hot).sum(dim=(0, 2, 3))
    total = (weighted * (probabilities + one_hot)).sum(dim=(0, 2, 3))
    return 1 - ((2 * overlap + SMOOTH) / (total + SMOOTH)).mean()


def confidence_weights(foreground_probability: torch.Tensor) -> torch.Tensor:
    """Round-1 weights: how sure the pseudo-label source was, ``|2 g - 1|``."""
    return (2 * foreground_probability - 1).abs()


def agreement_weights(foreground_probability: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Later rounds' weights: agreement of the previous segmenter with the pseudo labels, ``1 - |p - y|``."""
    return 1 - (foreground_probability - labels.float()).abs()
