"""The CAM baselines of the image-label pipeline (rows ``cam`` and ``cam+crf`` of ``weakseg bench imagelabel``).

They use the pipeline's classifier alone: its class activation maps on the slices it calls
lesion, with or without the dense CRF.
"""

from __future__ import annotations

import numpy as np
import torch

from weakseg.crf import refine_with_crf
from weakseg.methods.cam import class_activation_maps
from weakseg.methods.imagelabel_pipeline import ImageLabelModel, _check_channels, _to_image_grid, prepare_slices
from weakseg.methods.prediction_refinement import crf_params


def cam_probabilities(model: ImageLabelModel, array: np.ndarray) -> np.ndarray:
    """CAM baseline probabilities ``(K, Z, Y, X)`` of a ``(C, Z, Y, X)`` image.

    A class scores its CAM on slices where the classifier finds it (probability >= 0.5)
    and 0 elsewhere; background scores ``cam_threshold``; scores are divided by their sum,
    so the argmax is "CAM above the threshold, on slices classified as showing the class".
    """
    _check_channels(model, array)
    classifier_probability, maps = class_activation_maps(model.classifier, _classifier_input(model, array),
                                                         model.config.cam_scales)
    maps = maps * (classifier_probability >= 0.5)[:, :, None, None]
    background = torch.full_like(maps[:, :1], model.config.cam_threshold)
    scores = torch.cat([background, maps], dim=1)
    return _to_image_grid(scores / scores.sum(dim=1, keepdim=True), array.shape[-2:])


def slice_classifier_probabilities(model: ImageLabelModel, array: np.ndarray) -> np.ndarray:
    """The classifier's ``(Z, K - 1)`` class probabilities of every slice of a ``(C, Z, Y, X)`` image."""
    _check_channels(model, array)
    probability, _ = class_activation_maps(model.classifier, _classifier_input(model, array), model.config.cam_scales)
    return probability.numpy()


def _classifier_input(model: ImageLabelModel, array: np.ndarray) -> torch.Tensor:
    """The classifier's slices of ``array``, normalised as the model's training images were."""
    return prepare_slices(array, model.config.image_size, model.config.mirror_excess, model.intensities)


def refine_probabilities(array: np.ndarray, probabilities: np.ndarray,
                         spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Slice-wise dense CRF of ``(K, Z, Y, X)`` probabilities on the image, with this method's parameters."""
    return refine_with_crf(array, probabilities, spacing_zyx, crf_params())
