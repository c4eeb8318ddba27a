"""Method ``collaborative``: a few full masks and many diagnoses, segmentation and classification together.

Clinics hold many images with a diagnosis (melanoma, atypical or common nevus) and a
handful with a lesion mask. Following Zhou et al. (CVPR 2019, "Collaborative learning of
semi-supervised segmentation and classification for medical images"), each part
switchable for ablation:

1. a **segmenter** (2D U-Net) learns from the few masks (``--masks-split``);
2. a **lesion-attentive classifier** (:class:`~weakseg.models.AttentiveClassifier`) learns
   every image's diagnosis, its features gated by the segmenter's lesion map
   (``--classifier-steps 0``: no classifier; ``--image-only-classifier``: no attention);
3. its **class-specific attention** (class activation maps weighted by the diagnosis
   probabilities) refines the segmenter's maps of the images without masks into
   **confidence-weighted pseudo masks** (``--refinement-weight 0``: the segmenter's own
   maps; ``--uniform-pseudo-weights``: no confidence weighting);
4. **semi-supervised fine-tuning rounds** on masks + pseudo masks (``--rounds 0``: none),
   the classifier refreshed on the new lesion maps after each;
5. an **adversarial term**: a least-squares critic tells the lesion maps of masked images
   from those of unmasked ones and the segmenter learns to make them alike
   (``--adversarial-weight 0``: off).

The classes (what to segment) and the diagnoses (what to diagnose) are separate lists,
both stored in the model file. Volumes are handled slice by slice (a 2D network; a
volume's diagnosis is the lesion-area-weighted mean of its slices' probabilities).
Training: :mod:`weakseg.methods.collaborative_data` (folders) and
:mod:`weakseg.methods.collaborative_training` (arrays).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage
from weakseg.methods.spec import IMAGE_LABELS, MASKS, TRAINED, MethodSpec, setting
from weakseg.progress import SILENT, Progress
from weakseg.settings import StoredSettings, check_unet_image_size

MODEL_KIND = "collaborative-unet2d"
# Lesion-area weight every slice keeps when a volume's slice diagnoses are averaged.
SLICE_WEIGHT_FLOOR = 1e-3


@dataclass
class CollaborativeConfig(StoredSettings):
    """Settings of a collaborative training run (stored in the model file; see the module docstring).

    Attributes:
        image_size: square side every slice is resized to; channels, dropout: the U-Net's.
        classifier_channels: the classifier's widths per level, finest first.
        steps: segmenter steps on the masks; batch_size, learning_rate, weight_decay: AdamW, poly decay.
        classifier_steps, classifier_learning_rate: the classifier's first training (0 = no classifier).
        image_only_classifier: the classifier ignores the lesion maps.
        rounds, round_steps: semi-supervised fine-tuning rounds and steps in each.
        classifier_round_steps: classifier steps after each round (0 = not refreshed).
        refinement_weight: weight of the classifier's attention in the pseudo masks.
        uniform_pseudo_weights: every pseudo-mask pixel weighs 1 (no confidence weighting).
        pseudo_weight: weight of the pseudo-mask loss against the masks' loss.
        adversarial_weight: weight of the adversarial term on lesion maps.
        largest_component: keep each class's largest connected piece (pseudo masks and prediction).
        checkpoint_every: segmenter steps between checkpoints; seed: initialisation and batches.
    """

    image_size: int = setting(128, "--image-size", "side in pixels every slice is resized to (192-256 on a GPU)", 16, 2048)
    channels: tuple[int, ...] = setting(None, "--channels", "U-Net widths per level, finest first (16,32,64,128,256 on a GPU)", 1, 4096, default_factory=lambda: (8, 16, 32, 64, 128))
    classifier_channels: tuple[int, ...] = field(default_factory=lambda: (8, 16, 32, 64))
    dropout: float = 0.1
    steps: int = setting(600, "--steps", "training steps", 1, 10_000_000)
    batch_size: int = setting(8, "--batch-size", "slices per training step", 2, 4096)
    learning_rate: float = setting(2e-3, "--learning-rate", "initial learning rate (polynomial decay to 0)", 1e-8, 10.0)
    weight_decay: float = 1e-4
    classifier_steps: int = setting(400, "--classifier-steps", "collaborative: steps of the diagnosis classifier (0 = no classifier)", 0, 10_000_000)
    classifier_learning_rate: float = 1e-3
    image_only_classifier: bool = setting(False, "--image-only-classifier", "collaborative: the classifier ignores the lesion maps (ablation)")
    rounds: int = setting(2, "--rounds", "self-training rounds", 0, 100)
    round_steps: int = setting(200, "--round-steps", "collaborative: segmenter steps of each semi-supervised round", 1, 10_000_000)
    classifier_round_steps: int = 100
    refinement_weight: float = setting(0.5, "--refinement-weight", "collaborative: weight of the classifier's attention in the pseudo masks (0 = the segmenter's own maps)", 0.0, 1.0)
    uniform_pseudo_weights: bool = setting(False, "--uniform-pseudo-weights", "collaborative: every pseudo-mask pixel weighs 1 (no confidence weighting)")
    pseudo_weight: float = 1.0
    adversarial_weight: float = setting(0.05, "--adversarial-weight", "adversarial term's weight (maag: relative to the supervised term; transfer: output-space critic)", 0.0, 100.0)
    largest_component: bool = True
    checkpoint_every: int = 100
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` when the settings cannot build the networks (before any work)."""
        check_unet_image_size(self.image_size, self.channels, 2 ** (len(self.classifier_channels) - 1))


@dataclass
class CollaborativeModel:
    """A trained collaborative model: the segmenter, the classifier (or None) and their class lists."""

    segmenter: Any
    classifier: Any
    class_names: list[str]
    diagnoses: list[str]
    config: CollaborativeConfig
    device: Any
    path: str = ""
    last_pass: tuple = ()  # (image, post_processing, slices, probabilities) of the latest segmenter pass


def load_collaborative_model(path: str | os.PathLike, device: Any = "cpu", payload: dict | None = None) -> CollaborativeModel:
    """A model file written by ``weakseg train --method collaborative``.

    Raises:
        WeakSegInputError: missing, unreadable or damaged file, or a model of another method.
    """
    import torch

    from weakseg.engine import load_model_checkpoint
    from weakseg.models import build_classifier, build_network

    payload, metadata = load_model_checkpoint(path, device, MODEL_KIND, "collaborative", payload)
    try:
        config = CollaborativeConfig.from_dict(metadata["config"])
        segmenter = build_network(metadata["model_config"])
        segmenter.load_state_dict(payload["model"])
        classifier = None
        state = (payload.get("extra") or {}).get("classifier")
        if metadata.get("classifier_config") and state is not None:
            classifier = build_classifier(metadata["classifier_config"])
            classifier.load_state_dict(state)
            classifier.to(torch.device(device)).eval()
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeakSegInputError(f"{path}: damaged collaborative model ({type(error).__name__}: {error})") from None
    segmenter.to(torch.device(device)).eval()
    return CollaborativeModel(segmenter, classifier, list(metadata["class_names"]), list(metadata.get("diagnoses", [])),
                              config, device, str(path))


def _slice_probabilities(model: CollaborativeModel, image: LoadedImage, post_processing: bool = True):
    """The image's normalised slices at the network size and the segmenter's softmax on them (CPU tensors).

    ``post_processing=False``: one pass, no flip averaging. The latest pass is kept on the model, so
    that ``predict`` segmenting an image and then diagnosing it runs the segmenter once.
    """
    from weakseg.inference import check_channels, flip_averaged_softmax
    from weakseg.methods.scribble_unet import prepare_slices

    if model.last_pass and model.last_pass[0] is image and model.last_pass[1] == post_processing:
        return model.last_pass[2], model.last_pass[3]
    check_channels(int(model.segmenter.config["in_channels"]), image.array.shape[0], image.path, model.path)
    slices = prepare_slices(image, model.config.image_size)
    probabilities = flip_averaged_softmax(model.segmenter, slices, model.device, post_processing=post_processing)
    model.last_pass = (image, post_processing, slices, probabilities)
    return slices, probabilities


def predict_image(model: CollaborativeModel, image: LoadedImage, progress: Progress = SILENT,
                  post_processing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(Z, Y, X)`` uint8 and probabilities ``(K, Z, Y, X)`` of the segmenter on ``image``.

    ``post_processing=False``: the raw output (no flip averaging, no largest-component filter).
    """
    from weakseg.components import keep_largest_components
    from weakseg.inference import to_image_grid

    _, probabilities = _slice_probabilities(model, image, post_processing)
    progress.report(0.8, "segmenting")
    on_grid = to_image_grid(probabilities, image.shape_zyx[1:], 1e-6)
    labels = on_grid.argmax(axis=0).astype(np.uint8)
    if post_processing and model.config.largest_component:
        labels = keep_largest_components(labels, len(model.class_names))
    progress.report(1.0, "segmented")
    return labels, on_grid


def diagnose_image(model: CollaborativeModel, image: LoadedImage) -> tuple[str, dict[str, float]]:
    """The most probable diagnosis of ``image`` and every diagnosis's probability.

    A volume's probabilities are its slices' averaged with the slices' lesion areas as weights.

    Raises:
        WeakSegInputError: the model has no classifier.
    """
    import torch
    from torch.nn import functional as F

    if model.classifier is None:
        raise WeakSegInputError(f"{model.path}: this model has no diagnosis classifier")
    slices, probabilities = _slice_probabilities(model, image)
    lesion = 1.0 - probabilities[:, :1]
    with torch.no_grad():
        logits, _ = model.classifier(slices.to(model.device), lesion.to(model.device))
    per_slice = F.softmax(logits, dim=1).cpu()
    weights = lesion.mean(dim=(1, 2, 3)) + SLICE_WEIGHT_FLOOR
    combined = (per_slice * weights[:, None]).sum(dim=0) / weights.sum()
    values = {name: float(value) for name, value in zip(model.diagnoses, combined.tolist())}
    return model.diagnoses[int(combined.argmax())], values


SPEC = MethodSpec(
    name="collaborative",
    summary="a few full masks (--masks-split) + every image's diagnosis (--image-labels): segmenter, "
            "lesion-attentive classifier, attention-refined pseudo masks, semi-supervised rounds, adversarial term",
    learns_from=(MASKS, IMAGE_LABELS),
    usage=TRAINED,
    settings=CollaborativeConfig,
    train="weakseg.methods.collaborative_data:train",
    load="weakseg.methods.collaborative:load_collaborative_model",
    predict="weakseg.methods.collaborative:predict_image",
    diagnose="weakseg.methods.collaborative:diagnose_image",
    model_kind=MODEL_KIND,
)
