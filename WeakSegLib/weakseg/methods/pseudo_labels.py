"""Pseudo pixel labels from image-level labels and activation maps (one 2D image at a time).

The recipe is the pseudo-label generator of Dong et al. (ICCV 2019, "Semantic-transferable
weakly-supervised endoscopic lesions segmentation"): highly confident pixel labels from
seed maps, with *class balance* and a *superpixel spatial prior*. Its class balance is the
one of class-balanced self-training (CBST; Zou et al., ECCV 2018, "Unsupervised domain
adaptation for semantic segmentation via class-balanced self-training"). Steps:

1. **Only classes the image shows.** An image labelled "tumour" can hold tumour and
   background; a healthy image (no class) holds only background, so every pixel of it is
   labelled background. Classes absent from the image label are never given to a pixel,
   whatever their activation.
2. **Class-balanced confidence.** Each pixel goes to the class with the highest
   score among the present ones, foreground class ``c`` scoring its activation ``A_c`` and
   background scoring ``threshold`` (so a pixel is foreground where some ``A_c`` exceeds
   ``threshold``). Among the pixels each class wins, only the most confident
   ``foreground_fraction`` (foreground classes, ranked by ``A_c``) or ``background_fraction``
   (background, ranked by ``1 - max_c A_c``) are kept. Two rules for the cut-off:

   - ``dataset`` (CBST's): one confidence threshold per class, the quantile over *all*
     the images' pixels that class wins (:func:`dataset_cutoffs`), so that the fraction
     ``p`` of the pixels predicted as ``c`` over the whole training set is kept;
   - ``image`` (WeakSeg's variant): the quantile *of that class in that image*, so a
     faint lesion keeps as large a share of its pixels as a bright one.

3. **Superpixel voting.** SLIC superpixels (Achanta et al. 2012, ``skimage.segmentation.slic``)
   follow intensity edges. A superpixel takes class ``k`` as a whole when at least
   ``vote`` of its pixels are confident ``k`` and at least ``purity`` of its confident
   pixels are ``k``; otherwise all its pixels stay unlabelled. Labels thus snap to image
   boundaries, and the uncertain band around them is left out. (The vote and purity
   rule is WeakSeg's reading of "superpixel spatial prior".)

Unlabelled pixels get :data:`~weakseg.weak_labels.UNLABELLED` (255), which the partial
cross-entropy of the segmentation network ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from weakseg.errors import WeakSegInputError, check_fractions
from weakseg.contract import UNLABELLED


@dataclass(frozen=True)
class PseudoLabelParams:
    """Settings of :func:`make_pseudo_labels`.

    Attributes:
        threshold: activation (0..1) above which a pixel is won by a foreground class.
        foreground_fraction: share of each foreground class's winning pixels kept as confident.
        background_fraction: share of the background's winning pixels kept as confident.
        superpixels: approximate number of SLIC superpixels per image; 0 labels pixels
            directly, without voting.
        compactness: SLIC compactness for intensities scaled to 0..1 (larger: squarer
            superpixels, less edge adherence).
        vote: share of a superpixel's pixels that must be confident for one class.
        purity: share of a superpixel's confident pixels that must agree on that class.
    """

    threshold: float = 0.5
    foreground_fraction: float = 0.6
    background_fraction: float = 0.8
    superpixels: int = 200
    compactness: float = 0.1
    vote: float = 0.5
    purity: float = 0.9

    def __post_init__(self) -> None:
        check_fractions("pseudo-label", self, ("threshold", "foreground_fraction", "background_fraction", "vote", "purity"))
        if self.superpixels < 0 or self.compactness <= 0:
            raise WeakSegInputError(
                f"pseudo-label parameters superpixels ({self.superpixels}) and compactness "
                f"({self.compactness}) must be >= 0 and > 0"
            )


def make_pseudo_labels(
    image: np.ndarray,
    activations: np.ndarray,
    present: Sequence[int],
    params: PseudoLabelParams | None = None,
    cutoffs: dict[int, float] | None = None,
) -> np.ndarray:
    """Confident pixel labels of one 2D image from its activation maps and image-level label.

    Args:
        image: float ``(C, H, W)`` intensities (for the superpixels).
        activations: float ``(K - 1, H, W)`` in 0..1, map ``k - 1`` for foreground class ``k``
            (class activation maps, or a network's class probabilities).
        present: the foreground class codes ``1..K-1`` the image label names; empty for a
            healthy image.
        params: see :class:`PseudoLabelParams`.
        cutoffs: per class code, the confidence a won pixel needs (:func:`dataset_cutoffs`,
            CBST's rule); None cuts each class at its quantile in this image.

    Returns:
        uint8 ``(H, W)``: class codes, 0 = background, :data:`UNLABELLED` where unreliable.

    Raises:
        WeakSegInputError: mismatched shapes or a class code outside ``1..K-1``.
    """
    params = params or PseudoLabelParams()
    image = np.asarray(image, dtype=np.float32)
    activations = np.asarray(activations, dtype=np.float32)
    if image.ndim != 3 or activations.ndim != 3 or image.shape[1:] != activations.shape[1:]:
        raise WeakSegInputError(
            f"pseudo labels need an image (C, H, W) and activations (K-1, H, W) of the same size; "
            f"got {image.shape} and {activations.shape}"
        )
    present = sorted({int(code) for code in present})
    if any(not 1 <= code <= activations.shape[0] for code in present):
        raise WeakSegInputError(f"present classes {present} must lie in 1..{activations.shape[0]}")
    if not present:
        return np.zeros(image.shape[1:], dtype=np.uint8)
    confident = confident_pixels(activations, present, params, cutoffs)
    if params.superpixels == 0:
        return confident
    segments = superpixels(image, params.superpixels, params.compactness)
    return vote_in_superpixels(confident, segments, params.vote, params.purity)


def _winners(activations: np.ndarray, present: Sequence[int], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the class it goes to (0 = background) and the best present activation."""
    present = list(present)
    scores = activations[[code - 1 for code in present]]
    best_score = scores.max(axis=0)
    winner = np.where(best_score > threshold, np.asarray(present)[scores.argmax(axis=0)], 0)
    return winner, best_score


def _confidence(code: int, best_score: np.ndarray) -> np.ndarray:
    return 1.0 - best_score if code == 0 else best_score


def _fraction(code: int, params: PseudoLabelParams) -> float:
    return params.background_fraction if code == 0 else params.foreground_fraction


def confident_pixels(activations: np.ndarray, present: Sequence[int], params: PseudoLabelParams,
                     cutoffs: dict[int, float] | None = None) -> np.ndarray:
    """Step 2 of the module docstring: per-class cut-offs (``cutoffs``, or this image's quantiles); uint8 ``(H, W)``."""
    present = list(present)
    winner, best_score = _winners(activations, present, params.threshold)
    labels = np.full(winner.shape, UNLABELLED, dtype=np.uint8)
    for code in [0] + present:
        won = winner == code
        if not won.any() or _fraction(code, params) == 0:
            continue
        confidence = _confidence(code, best_score)
        if cutoffs is None:
            cut = np.quantile(confidence[won], 1.0 - _fraction(code, params))
        else:
            cut = cutoffs.get(code, np.inf)
        labels[won & (confidence >= cut)] = code
    return labels


def dataset_cutoffs(activations: Sequence[np.ndarray], present: Sequence[Sequence[int]],
                    params: PseudoLabelParams) -> dict[int, float]:
    """CBST's class-balanced thresholds (Zou et al., ECCV 2018) over a whole set of images.

    For every class ``c``, the confidence above which the most confident fraction ``p_c``
    (``foreground_fraction``, or ``background_fraction`` for background) of *all* the
    pixels that ``c`` wins in ``activations`` lies: one threshold per class for the set,
    not per image. Images with an empty ``present`` (healthy) take no part.

    Args:
        activations: per image, float ``(K - 1, H, W)`` as :func:`make_pseudo_labels` takes.
        present: per image, the foreground codes its label names.

    Returns:
        class code -> cut-off, for the classes that win at least one pixel.
    """
    won: dict[int, list[np.ndarray]] = {}
    for maps, codes in zip(activations, present):
        codes = sorted({int(code) for code in codes})
        if not codes:
            continue
        winner, best_score = _winners(np.asarray(maps, dtype=np.float32), codes, params.threshold)
        for code in [0] + codes:
            mask = winner == code
            if mask.any():
                won.setdefault(code, []).append(_confidence(code, best_score)[mask])
    return {code: float(np.quantile(np.concatenate(values), 1.0 - _fraction(code, params)))
            for code, values in won.items() if _fraction(code, params) > 0}


def superpixels(image: np.ndarray, count: int, compactness: float) -> np.ndarray:
    """SLIC superpixels of a ``(C, H, W)`` image, each channel scaled to its 1-99 percentiles; int ``(H, W)``."""
    from skimage.segmentation import slic

    scaled = np.empty_like(image, dtype=np.float64)
    for channel, values in enumerate(image):
        low, high = np.percentile(values, (1, 99))
        scaled[channel] = np.clip((values - low) / max(float(high - low), 1e-6), 0, 1)
    return slic(
        np.moveaxis(scaled, 0, -1),
        n_segments=count,
        compactness=compactness,
        channel_axis=-1,
        convert2lab=False,
        start_label=0,
        enforce_connectivity=True,
    )


def vote_in_superpixels(confident: np.ndarray, segments: np.ndarray, vote: float, purity: float) -> np.ndarray:
    """Step 3 of the module docstring: whole superpixels take their dominant confident class."""
    segment_count = int(segments.max()) + 1
    codes = np.where(confident == UNLABELLED, 0, confident.astype(np.int64) + 1)
    class_count = int(codes.max()) + 1
    counts = np.bincount((segments.astype(np.int64) * class_count + codes).ravel(),
                         minlength=segment_count * class_count).reshape(segment_count, class_count)
    sizes = counts.sum(axis=1)
    labelled = counts[:, 1:]
    dominant = labelled.argmax(axis=1) if class_count > 1 else np.zeros(segment_count, dtype=np.int64)
    dominant_count = labelled.max(axis=1) if class_count > 1 else np.zeros(segment_count)
    confident_count = labelled.sum(axis=1)
    accepted = (dominant_count >= vote * sizes) & (dominant_count >= purity * np.maximum(confident_count, 1))
    accepted &= dominant_count > 0
    per_segment = np.where(accepted, dominant, UNLABELLED).astype(np.uint8)
    return per_segment[segments]
