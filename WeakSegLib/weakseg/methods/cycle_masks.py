"""Lesion masks of method ``cycle``: what the lesion -> healthy translation changed, fused with the CAM.

For a slice ``x`` the classifier calls (or its label says) lesion, with CAM ``c`` in 0..1:

1. the guide is ``c`` and the healthy counterpart ``h = to_healthy(x, c)``;
2. the difference ``d = mean over channels |x - h|``, divided by its maximum in the slice;
3. the fused score ``s = (1 - w) d + w c`` (``w`` = ``cam_fusion``; the paper fuses the
   translation's mask with the CAM, this weighted mean is WeakSeg's form of it);
4. a per-slice Otsu threshold ``t`` over all the slice's scores;
5. a lesion probability that is 0.5 at ``t``, rising linearly to 1 at ``s = 1`` and falling
   to 0 at ``s = 0``, refined by the slice-wise dense CRF (:func:`weakseg.crf.refine_with_crf`).

Slices not called lesion get probability 0. Everything is on the network grid ``(N, S, S)``.

The fusion and the threshold were chosen on the BraTS training patients (pat0005, pat0006; one
run, seed 2, 96 px), by the Dice of the masks against the truth: weighted mean 0.586, geometric
mean 0.523, the difference alone 0.391 (Otsu over all scores); a first rule, the geometric mean
cut by Otsu over the changed pixels only, gave 0.397 (it kept the strongest changes alone).
"""

from __future__ import annotations

import numpy as np
import torch

from weakseg.contract import UNLABELLED
from weakseg.crf import refine_with_crf
from weakseg.methods.cam import CamClassifier, class_activation_maps
from weakseg.methods.prediction_refinement import crf_params
from weakseg.models.cycle_nets import GuidedGenerator

UNSURE_BAND = (0.3, 0.7)


def slice_cams(classifier: CamClassifier, classifier_slices: torch.Tensor,
               scales: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's lesion probability ``(N,)`` and CAM ``(N, 1, S, S)`` of every slice."""
    probabilities, maps = class_activation_maps(classifier, classifier_slices, scales)
    return probabilities[:, 0], maps[:, :1]


@torch.no_grad()
def translate(generator: GuidedGenerator, images: torch.Tensor, guides: torch.Tensor, device: torch.device,
              batch_size: int = 16) -> torch.Tensor:
    """``generator(images, guides)`` in eval mode, in batches, on the CPU."""
    generator.eval()
    return torch.cat([generator(images[start:start + batch_size].to(device),
                                guides[start:start + batch_size].to(device)).cpu()
                      for start in range(0, len(images), batch_size)])


def guide_maps(cams: torch.Tensor, cam_guide: bool) -> torch.Tensor:
    """Where the generators may change each slice: its CAM, or everywhere (all ones) without CAM guidance."""
    return cams if cam_guide else torch.ones_like(cams)


def mask_fusion(cam_fusion: float, cam_guide: bool) -> float:
    """The CAM's weight in the fused score: none without CAM guidance (the mask is what changed)."""
    return cam_fusion if cam_guide else 0.0


def fused_scores(images: torch.Tensor, translated: torch.Tensor, cams: torch.Tensor, cam_fusion: float) -> np.ndarray:
    """Steps 2-3 of the module docstring: ``(N, S, S)`` scores in 0..1."""
    difference = (images - translated).abs().mean(dim=1)
    difference = difference / difference.amax(dim=(1, 2), keepdim=True).clamp(min=1e-6)
    return ((1 - cam_fusion) * difference + cam_fusion * cams[:, 0].clamp(min=0)).numpy()


def _otsu_probability(score: np.ndarray) -> np.ndarray:
    """Steps 4-5 (before the CRF) for one slice's scores ``(S, S)``."""
    from skimage.filters import threshold_otsu

    if score.max() <= 0 or score.min() == score.max():
        return np.zeros_like(score, dtype=np.float32)
    cut = float(threshold_otsu(score))
    below = score / (2 * cut)
    above = 0.5 + 0.5 * (score - cut) / max(1.0 - cut, 1e-6)
    return np.clip(np.where(score < cut, below, above), 0.0, 1.0).astype(np.float32)


def lesion_probabilities(images: torch.Tensor, scores: np.ndarray, lesion_slices: np.ndarray,
                         crf: bool) -> np.ndarray:
    """Lesion probability ``(N, S, S)`` of the slices from their fused ``scores`` (0 where not ``lesion_slices``).

    Args:
        images: ``(N, C, S, S)`` slices the CRF reads (the image channels).
        lesion_slices: bool ``(N,)``.
    """
    probability = np.zeros(scores.shape, dtype=np.float32)
    for index in np.flatnonzero(lesion_slices):
        probability[index] = _otsu_probability(scores[index])
    chosen = np.flatnonzero(lesion_slices & (probability.reshape(len(probability), -1).max(axis=1) > 0))
    if crf and chosen.size:
        image = images[chosen].permute(1, 0, 2, 3).numpy()
        foreground = probability[chosen][None]
        refined = refine_with_crf(image, np.concatenate([1 - foreground, foreground]), (1.0, 1.0, 1.0), crf_params())
        probability[chosen] = refined[1]
    return probability


def pseudo_labels(probability: np.ndarray) -> torch.Tensor:
    """Labels ``(N, S, S)`` int64 for the segmenter: 1 above the unsure band, 0 below, unlabelled inside it."""
    labels = (probability >= 0.5).astype(np.int64)
    unsure = (probability > UNSURE_BAND[0]) & (probability < UNSURE_BAND[1])
    labels[unsure] = UNLABELLED
    return torch.from_numpy(labels)
