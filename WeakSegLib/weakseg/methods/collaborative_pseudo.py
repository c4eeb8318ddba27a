"""Pseudo masks of the collaborative method: lesion maps refined by the classifier's attention.

For an image without a mask the segmenter gives class probabilities ``p`` (background
first); the lesion-attentive classifier gives, per diagnosis, a class activation map. The
*class-specific attention* ``a`` in [0, 1] is the maps (each rectified and divided by its
maximum) weighted by the classifier's probability of each diagnosis (Zhou et al., CVPR
2019: the attention of the likely diagnoses counts most). The refined probabilities are the
geometric mixture

    p'_c  ∝  p_c^(1-w) · a^w          for the foreground classes c ≥ 1,
    p'_0  ∝  p_0^(1-w) · (1-a)^w      for the background,

with ``w`` the refinement weight (0 = the segmenter's own maps: plain self-training). The
pseudo mask is the arg-max of ``p'``; each pixel's weight is its confidence, the winning
probability rescaled from ``1/K..1`` to ``0..1``, times the image's confidence (how sure
the classifier is of the image's known diagnosis), so uncertain pixels and images count less.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

# Keeps powers and divisions finite where a probability or the attention is 0.
EPSILON = 1e-4


def class_attention(maps: torch.Tensor, probabilities: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class-specific attention ``(N, 1, H, W)`` in [0, 1] from CAMs ``(N, D, h, w)`` and diagnosis probabilities ``(N, D)``."""
    rectified = F.relu(maps)
    peaks = rectified.flatten(2).max(dim=2).values.clamp(min=EPSILON)[..., None, None]
    attention = ((rectified / peaks) * probabilities[..., None, None]).sum(dim=1, keepdim=True)
    return F.interpolate(attention, size=size, mode="bilinear", align_corners=False).clamp(0.0, 1.0)


def refine(probabilities: torch.Tensor, attention: torch.Tensor | None, weight: float) -> torch.Tensor:
    """Segmenter probabilities ``(N, K, H, W)`` mixed with the attention ``(N, 1, H, W)`` (see the module docstring)."""
    if attention is None or weight <= 0.0:
        return probabilities
    foreground = attention.clamp(EPSILON, 1 - EPSILON)
    prior = torch.cat([1.0 - foreground] + [foreground] * (probabilities.shape[1] - 1), dim=1)
    mixed = probabilities.clamp(min=EPSILON) ** (1.0 - weight) * prior ** weight
    return mixed / mixed.sum(dim=1, keepdim=True)


def pseudo_masks(probabilities: torch.Tensor, image_confidence: torch.Tensor | None = None,
                 largest_component: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``(N, H, W)`` int64 and pixel weights ``(N, H, W)`` in [0, 1] from refined probabilities.

    Args:
        probabilities: ``(N, K, H, W)``, summing to 1 over K.
        image_confidence: ``(N,)`` in [0, 1] multiplying every pixel weight of an image, or None.
        largest_component: keep only the largest connected piece of each foreground class
            (a lesion comes in one piece); the pixels dropped become background.
    """
    classes = probabilities.shape[1]
    confidence, labels = probabilities.max(dim=1)
    weights = ((confidence - 1.0 / classes) / (1.0 - 1.0 / classes)).clamp(0.0, 1.0)
    if largest_component:
        from weakseg.components import keep_largest_components

        cleaned = np.stack([keep_largest_components(item, classes) for item in labels.numpy()])
        labels = torch.from_numpy(cleaned).long()
    if image_confidence is not None:
        weights = weights * image_confidence[:, None, None]
    return labels, weights
