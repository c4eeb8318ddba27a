"""A trained ``cycle`` model: loading it, predicting with its segmenter, and its translation masks.

Prediction is one pass of the segmentation network per slice (flip-averaged softmax on the
training grid, resized back to the image), whose edges are then redrawn by the image's own
appearance model and the dense CRF, as ``imagelabel`` predicts
(:mod:`weakseg.methods.prediction_refinement`; the settings ``appearance``
and ``crf``). :func:`translation_masks` gives what the
segmenter learnt from, on any image: the masks read from the lesion -> healthy translation
(``weakseg bench imagelabel`` row ``cycle``) and the translated healthy image itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from weakseg.data import Normalisation, resize_images, stored_normalisation
from weakseg.engine import load_model_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.inference import check_channels, flip_averaged_softmax, to_image_grid
from weakseg.io import LoadedImage
from weakseg.methods.appearance import AppearanceParams
from weakseg.methods.cam import CamClassifier
from weakseg.methods.cycle import MODEL_KIND, CycleSettings
from weakseg.methods.imagelabel_pipeline import prepare_slices
from weakseg.methods.prediction_refinement import refine_prediction
from weakseg.models import UNet2D
from weakseg.models.cycle_nets import GuidedGenerator
from weakseg.progress import SILENT, Progress


@dataclass
class CycleModel:
    """The classifier, the lesion -> healthy generator and the segmenter, with what applying them needs
    (``intensities``: the training cohort's statistics when the model normalises by them, else None)."""

    classifier: CamClassifier
    to_healthy: GuidedGenerator
    segmenter: UNet2D
    class_names: list[str]
    config: CycleSettings
    device: torch.device
    intensities: Normalisation = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def image_slices(model: CycleModel, array: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image slices ``(Z, C, S, S)`` and the classifier's input (with the mirror channel when set)."""
    from weakseg.methods.cycle_game import classifier_input

    if np.ndim(array) != 4:
        raise WeakSegInputError(f"image of shape {np.shape(array)}: expected (C, Z, Y, X) intensities")
    check_channels(model.to_healthy.config["in_channels"], array.shape[0], "image")
    slices = prepare_slices(array, model.config.image_size, intensities=model.intensities)
    return slices, classifier_input(slices, model.config.mirror_excess)


def segment_array(model: CycleModel, array: np.ndarray, spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
                  post_processing: bool = True, appearance: bool | None = None,
                  crf: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(Z, Y, X)`` uint8 and probabilities ``(2, Z, Y, X)`` of a ``(C, Z, Y, X)`` image by the segmenter.

    ``appearance`` and ``crf`` override the model's settings (None keeps them; both False: the
    network alone); ``post_processing=False`` drops the flip averaging.
    """
    slices, _ = image_slices(model, array)
    softmax = flip_averaged_softmax(model.segmenter, slices, model.device, post_processing=post_processing)
    sharpen = model.config.appearance if appearance is None else appearance
    probabilities = refine_prediction(array, to_image_grid(softmax, array.shape[-2:], 1e-6), spacing_zyx,
                                      AppearanceParams() if sharpen else None, model.config.crf if crf is None else crf)
    return probabilities.argmax(axis=0).astype(np.uint8), probabilities


def translation_masks(model: CycleModel, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The masks read from the translation (before the segmenter) and the translated healthy image.

    Slices the classifier calls lesion (probability >= 0.5) are translated with their CAM as guide;
    the others are left as they are. Returns uint8 labels ``(Z, Y, X)`` and the healthy translation
    ``(C, Z, Y, X)`` in normalised intensities, both on the image grid.
    """
    from weakseg.methods.cycle_masks import (fused_scores, guide_maps, lesion_probabilities, mask_fusion, slice_cams,
                                             translate)

    slices, classifier_slices = image_slices(model, array)
    probability, cams = slice_cams(model.classifier, classifier_slices, model.config.cam_scales)
    lesion = probability.numpy() >= 0.5
    cam_guide = not model.config.no_cam_guide
    guides = guide_maps(cams, cam_guide) * torch.from_numpy(lesion).float()[:, None, None, None]
    translated = translate(model.to_healthy, slices, guides, model.device)
    scores = fused_scores(slices, translated, guides, mask_fusion(model.config.cam_fusion, cam_guide))
    foreground = torch.from_numpy(lesion_probabilities(slices, scores, lesion, model.config.crf))[:, None]
    probabilities = to_image_grid(torch.cat([1 - foreground, foreground], dim=1), array.shape[-2:], 1e-6)
    healthy = resize_images(translated, tuple(array.shape[-2:])).permute(1, 0, 2, 3).numpy()
    return probabilities.argmax(axis=0).astype(np.uint8), healthy


def load_model(path: str, device: torch.device | str = "cpu", payload: dict | None = None) -> CycleModel:
    """A ``cycle`` model file (see :func:`weakseg.apply.load_model`).

    Raises:
        WeakSegInputError: not a cycle model, a damaged one, or a run that has not finished.
    """
    from weakseg.methods.cycle_game import TranslationNetworks

    device = torch.device(device)
    payload, metadata = load_model_checkpoint(path, device, MODEL_KIND, "cycle", payload)
    if (metadata.get("state") or {}).get("stage") != "done":
        raise WeakSegInputError(f"{path}: the cycle training did not finish; continue it with weakseg train ... --resume")
    try:
        settings = CycleSettings.from_dict(metadata["config"])
        channels = int(metadata["in_channels"])
        classifier = CamClassifier(channels * (2 if settings.mirror_excess else 1), 1, settings.classifier_channels,
                                   settings.cam_top_fraction)
        translation = TranslationNetworks(channels, settings.generator_channels)
        segmenter = UNet2D(channels, 2, settings.segmenter_channels, settings.dropout)
        nn.ModuleDict({"classifier": classifier, "translation": translation, "segmenter": segmenter}).load_state_dict(
            payload["model"])
        intensities = stored_normalisation(metadata.get("intensities"))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeakSegInputError(f"{path}: damaged cycle model ({type(error).__name__}: {error})") from None
    return CycleModel(classifier.to(device).eval(), translation.to_healthy.to(device).eval(),
                      segmenter.to(device).eval(), list(metadata["class_names"]), settings, device, intensities)


def predict_image(model: CycleModel, image: LoadedImage, progress: Progress = SILENT,
                  post_processing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Segment a :class:`~weakseg.io.LoadedImage` with the segmentation network (the ``predict`` of the method spec)."""
    progress.report(0.0, "segmenting")
    labels, probabilities = segment_array(model, image.array, image.spacing_zyx, post_processing)
    progress.report(1.0, "segmented")
    return labels, probabilities
