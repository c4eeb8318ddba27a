"""Per-volume appearance model: a coarse localiser says where each class surely is, intensity draws its edge.

Class activation maps and a network trained on two volumes both find lesions but place
their edges poorly: CAMs are blobs at a quarter of the input resolution, and a U-Net
trained with partial cross-entropy on pseudo labels grows its lesions across the
unlabelled band around them (on the BraTS val patients to 1.6-1.9 times the true
volume). Within one volume, though, a lesion and the tissue around it differ in
intensity far more consistently than across volumes. So, for each volume and each
foreground class ``k`` (the seeding idea of GrabCut, Rother et al. 2004, and of the
seed-expansion steps of weakly-supervised segmentation):

1. **Seeds.** Pixels where the localiser's score for ``k`` is at least ``seed`` (its
   surest pixels) sample the class's intensities; pixels of the region (the image minus
   its darkest 1%, i.e. the brain of a skull-stripped MRI) where the score is below
   ``background_seed`` sample everything else.
2. **Likelihoods.** One histogram per channel and per side (``bins`` bins over the
   channel's range in the region, one count added to every bin); channels are treated
   as independent (naive Bayes).
3. **Posterior.** ``P(k | intensity)`` with the prior ``prior`` (0.5: the likelier
   side wins).
4. **Gate.** A pixel keeps that posterior only where the localiser gives ``k`` more
   than ``gate`` on a slice allowed to show ``k`` (the slice's image label in training,
   the network's own slice-level decision at prediction); everywhere else it is 0.
5. **Following the lesion along the slices** (prediction only, ``follow_slices``): a
   lesion tapers towards its first and last slices, where a 2D network often finds
   nothing (on the BraTS val patients, 23 of 155 tumour slices, all with under 400
   tumour pixels). Walking outward from each slice where the class was found, an empty
   neighbour slice takes the pixels that both look like the class (posterior above 0.5)
   and lie under the class's pixels of the slice before it. The footprint can only
   shrink from slice to slice, so the walk stops where the lesion ends.

A class without seeds on either side in a volume keeps the localiser's score unchanged.
The result is a score per foreground class in 0..1, used by
:mod:`weakseg.methods.imagelabel` as the activations of the first round's pseudo labels
(seeded by CAMs) and to sharpen the network's prediction before the CRF.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weakseg.errors import WeakSegInputError, check_fractions


@dataclass(frozen=True)
class AppearanceParams:
    """Settings of :func:`refine_with_appearance` (see the module docstring).

    Attributes:
        seed: localiser score at or above which a pixel samples the class's intensities.
        background_seed: score below which a region pixel samples the background.
        gate: score a pixel needs before its appearance may make it the class.
        prior: prior probability of the class for a gated pixel; 0.5 lets the
            likelihood ratio alone decide.
        bins: histogram bins per channel.
    """

    seed: float = 0.9
    background_seed: float = 0.1
    gate: float = 0.1
    prior: float = 0.5
    bins: int = 64

    def __post_init__(self) -> None:
        check_fractions("appearance", self, ("seed", "background_seed", "gate"))
        if not 0.0 < self.prior < 1.0 or self.bins < 2:
            raise WeakSegInputError(f"appearance prior ({self.prior}) must lie in (0, 1) and bins ({self.bins}) be >= 2")


def foreground_region(intensities: np.ndarray) -> np.ndarray:
    """Pixels whose channel mean is above the darkest 1% of a ``(C, ...)`` array (skull-stripped MRI: the brain)."""
    grey = np.asarray(intensities, dtype=np.float32).mean(axis=0)
    return grey > np.percentile(grey, 1)


def class_posterior(
    intensities: np.ndarray, class_seeds: np.ndarray, background_seeds: np.ndarray, region: np.ndarray,
    prior: float = 0.5, bins: int = 64,
) -> np.ndarray:
    """``P(class | intensity)`` of every pixel, from naive-Bayes histograms of the two seed sets.

    Args:
        intensities: float ``(C, ...)``.
        class_seeds, background_seeds: bool ``(...)`` samples of each side (both non-empty).
        region: bool ``(...)`` pixels whose range sets the histogram bins.
        prior: prior probability of the class.
        bins: bins per channel.

    Returns:
        float32 ``(...)`` in 0..1.
    """
    log_ratio = np.full(intensities.shape[1:], np.log(prior / (1.0 - prior)), dtype=np.float64)
    for channel in intensities:
        low, high = float(channel[region].min()), float(channel[region].max())
        edges = np.linspace(low, max(high, low + 1e-6), bins + 1)
        class_counts = np.histogram(channel[class_seeds], edges)[0] + 1.0
        background_counts = np.histogram(channel[background_seeds], edges)[0] + 1.0
        index = np.clip(np.digitize(channel, edges) - 1, 0, bins - 1)
        log_ratio += np.log(class_counts / class_counts.sum())[index] - np.log(background_counts / background_counts.sum())[index]
    return (1.0 / (1.0 + np.exp(-log_ratio))).astype(np.float32)


def refine_with_appearance(
    intensities: np.ndarray, scores: np.ndarray, allowed: np.ndarray, region: np.ndarray, params: AppearanceParams,
    follow_slices: bool = False,
) -> np.ndarray:
    """Appearance-refined scores of one volume (module docstring).

    Args:
        intensities: float ``(C, Z, Y, X)`` (normalised; a 2D image has Z = 1).
        scores: float ``(K - 1, Z, Y, X)`` in 0..1, the localiser's score per foreground class.
        allowed: bool ``(K - 1, Z)``, whether slice ``z`` may show class ``k``.
        region: bool ``(Z, Y, X)``, the pixels that may seed the background.
        params: see :class:`AppearanceParams`.
        follow_slices: extend each class into the empty slices beyond its ends (step 5).

    Returns:
        float32 ``(K - 1, Z, Y, X)`` in 0..1.

    Raises:
        WeakSegInputError: mismatched shapes.
    """
    intensities = np.asarray(intensities, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if (intensities.ndim != 4 or scores.ndim != 4 or intensities.shape[1:] != scores.shape[1:]
            or np.shape(allowed) != scores.shape[:2] or np.shape(region) != scores.shape[1:]):
        raise WeakSegInputError(
            f"appearance refinement needs intensities (C, Z, Y, X), scores (K-1, Z, Y, X), allowed (K-1, Z) and "
            f"region (Z, Y, X); got {intensities.shape}, {scores.shape}, {np.shape(allowed)}, {np.shape(region)}"
        )
    refined = scores.copy()
    for index, score in enumerate(scores):
        slice_allowed = np.asarray(allowed[index], dtype=bool)[:, None, None]
        class_seeds = (score >= params.seed) & slice_allowed
        background_seeds = region & ((score < params.background_seed) | ~slice_allowed)
        if not class_seeds.any() or not background_seeds.any():
            continue
        posterior = class_posterior(intensities, class_seeds, background_seeds, region, params.prior, params.bins)
        kept = (score > params.gate) & slice_allowed
        if follow_slices:
            kept |= extend_along_slices(kept & (posterior > 0.5), posterior > 0.5)
        refined[index] = np.where(kept, posterior, 0.0)
    return refined


def extend_along_slices(found: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """``found`` (bool ``(Z, Y, X)``) plus, in slices where it is empty, the ``candidate`` pixels under
    the result of the adjacent slice, walking away from the slices with findings (step 5 of the
    module docstring)."""
    result = found.copy()
    empty = ~found.reshape(found.shape[0], -1).any(axis=1)
    for step, order in ((1, range(1, found.shape[0])), (-1, range(found.shape[0] - 2, -1, -1))):
        for z in order:
            if empty[z] and not result[z].any():
                result[z] = candidate[z] & result[z - step]
    return result
