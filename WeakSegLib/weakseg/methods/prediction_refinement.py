"""The prediction step of the image-label methods (``imagelabel``, ``cycle``): appearance, then the dense CRF.

A network trained on the pseudo masks of two or three volumes finds lesions but grows them
beyond their edges (:mod:`weakseg.methods.appearance`); within one image, intensity draws
those edges better. So both methods pass their network's probabilities through the image's
own appearance model, seeded by the network's surest pixels on the slices where it predicts
the class, and then through the slice-wise dense CRF (:mod:`weakseg.crf`).
"""

from __future__ import annotations

import numpy as np

from weakseg.crf import CrfParams, refine_with_crf
from weakseg.data import normalise_intensity
from weakseg.methods.appearance import AppearanceParams, foreground_region, refine_with_appearance


def crf_params() -> CrfParams:
    """The CRF of the image-label methods (their predictions, their CAM baselines, ``cycle``'s pseudo masks):
    slice by slice."""
    return CrfParams(mode="2d")


def refine_prediction(array: np.ndarray, probabilities: np.ndarray, spacing_zyx: tuple[float, float, float],
                      appearance: AppearanceParams | None, crf: bool,
                      intensities: np.ndarray | None = None) -> np.ndarray:
    """A network's ``(K, Z, Y, X)`` probabilities of the ``(C, Z, Y, X)`` image ``array``, each foreground
    class's edges redrawn by the image's appearance model (skipped when ``appearance`` is None), then
    refined by the CRF (when ``crf``); float32, summing to 1 over classes.

    Args:
        intensities: ``normalise_intensity(array)`` when the caller has computed it already, so
            it is not computed twice.
    """
    if appearance is not None:
        if intensities is None:
            intensities = normalise_intensity(array)
        winner = probabilities.argmax(axis=0)
        allowed = np.stack([(winner == code).reshape(winner.shape[0], -1).any(axis=1)
                            for code in range(1, probabilities.shape[0])])
        scores = refine_with_appearance(intensities, probabilities[1:], allowed, foreground_region(intensities),
                                        appearance, follow_slices=True)
        background = np.prod(1.0 - scores, axis=0, keepdims=True)
        combined = np.concatenate([background, scores])
        probabilities = (combined / np.maximum(combined.sum(axis=0, keepdims=True), 1e-6)).astype(np.float32)
    if crf:
        probabilities = refine_with_crf(array, probabilities, spacing_zyx, crf_params())
    return probabilities
