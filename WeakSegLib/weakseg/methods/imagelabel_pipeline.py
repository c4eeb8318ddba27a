"""Segmentation from image-level labels: CAM -> pseudo labels -> self-training -> dense CRF.

Input: images or volumes whose slices carry image-level labels (the classes a slice
shows, or healthy; see :mod:`weakseg.image_labels`). Everything is slice-wise 2D, each
slice normalised per volume (:func:`weakseg.data.normalise_intensity`), or for colour
pictures by the training cohort's statistics (setting ``normalisation``), and resized to
``image_size`` squared; predictions are resized back, so results keep the image's grid.

1. **Classifier** (:mod:`weakseg.methods.cam`) trained on the labelled slices with
   multi-label BCE, batches drawn half from slices showing a class and half from healthy
   ones. Its class activation maps localise each class.
2. **Pseudo labels** (:mod:`weakseg.methods.pseudo_labels`) of every labelled slice: only
   the classes its label names, class-balanced confidence (per slice, or per class over
   all slices as class-balanced self-training defines it: ``class_balance``), SLIC
   superpixel voting; unreliable pixels unlabelled; healthy slices all background: the
   generator of Dong et al. (ICCV 2019). In the first round the activations are the CAMs
   sharpened by each volume's appearance model (:mod:`weakseg.methods.appearance`, seeded
   where the CAM is at least ``cam_seed``; WeakSeg's own step, in no paper cited here).
3. **Segmentation network** (:class:`~weakseg.models.UNet2D`) trained with partial
   cross-entropy on the confident pixels, in ``rounds`` rounds of self-training
   (pseudo-labels, Lee 2013; iteratively adding harder samples as Dong et al., ICCV 2019
   "Semantic-transferable weakly-supervised endoscopic lesions segmentation", do): the first round uses only the
   ``first_round_share`` of lesion slices the classifier is most sure of; every later
   round regenerates the pseudo labels from the network's own probabilities (same
   generator, same class restriction) and adds the next, harder slices, ranked by the
   network's confidence, until the last round uses all of them. Healthy slices are
   used in every round.
4. **Appearance refinement** (WeakSeg's own) at the image's own resolution: the network's surest pixels
   (probability at least ``network_seed``) seed the image's own appearance model, which
   redraws the edges of what the network found (on the slices where it found a class),
   and follows each lesion into the slices beyond its ends where the network found
   nothing. Without it the network's lesions spread to 1.6-1.9 times their true volume
   on the BraTS val patients.
5. **Dense CRF** (:func:`weakseg.crf.refine_with_crf`, slice by slice) on those
   probabilities, then the argmax.

The classifier's CAMs also give the two baselines of ``weakseg bench imagelabel``
(:mod:`weakseg.methods.imagelabel_baselines`): CAM alone and CAM with the CRF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from weakseg.data import (Normalisation, augment, normalise_intensity, normalise_with, resize_images, stored_normalisation,
                          training_intensities, volume_to_slices)
from weakseg.inference import check_channels, flip_averaged_softmax, to_image_grid
from weakseg.engine import check_resume, load_checkpoint, load_model_checkpoint, run_training, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage, check_same_channels, read_image
from weakseg.losses import balanced_class_weights, partial_cross_entropy_and_dice
from weakseg.methods.appearance import foreground_region, refine_with_appearance
from weakseg.methods.cam import CamClassifier, class_activation_maps
from weakseg.methods.imagelabel import MODEL_KIND as METHOD_NAME
from weakseg.methods.imagelabel import ImageLabelConfig
from weakseg.methods.prediction_refinement import refine_prediction
from weakseg.methods.pseudo_labels import dataset_cutoffs, make_pseudo_labels
from weakseg.methods.spec import TrainingRequest
from weakseg.models import UNet2D
from weakseg.progress import SILENT, Progress
from weakseg.weak_labels import check_class_names


@dataclass
class LabelledVolume:
    """An image or volume with its image-level labels.

    Attributes:
        name: for messages.
        array: float ``(C, Z, Y, X)`` intensities (a 2D image has Z = 1).
        slice_classes: per slice, the class names it shows (empty = healthy), or None
            when the slice is unlabelled (it is then not used).
    """

    name: str
    array: np.ndarray
    slice_classes: list[frozenset[str] | None]


@dataclass
class ImageLabelModel:
    """The trained classifier and segmentation network, with what is needed to apply them
    (``intensities``: the training cohort's statistics when the model normalises by them, else None)."""

    classifier: CamClassifier
    segmenter: UNet2D
    class_names: list[str]
    config: ImageLabelConfig
    device: torch.device
    intensities: Normalisation = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- data


def prepare_slices(array: np.ndarray, size: int, mirror_excess: bool = False,
                   intensities: Normalisation = None) -> torch.Tensor:
    """``(C, Z, Y, X)`` intensities -> normalised slices ``(Z, C', size, size)`` float32.

    Normalised per volume, or by a cohort's ``intensities`` when given
    (:func:`weakseg.data.normalise_with`). With ``mirror_excess`` every channel is followed by
    how much brighter each pixel is than its left-right mirror position (zero where it is
    darker; ``C' = 2C``), see :class:`ImageLabelConfig`.
    """
    return _network_input(normalise_with(array, intensities), size, mirror_excess)


def _network_input(normalised: np.ndarray, size: int, mirror_excess: bool) -> torch.Tensor:
    """:func:`prepare_slices` of intensities already normalised by :func:`~weakseg.data.normalise_intensity`."""
    if mirror_excess:
        excess = np.maximum(normalised - normalised[..., ::-1], 0.0)
        normalised = np.concatenate([normalised, excess], axis=0)
    return resize_images(volume_to_slices(normalised), (size, size))


def _labelled_slices(volumes: Sequence[LabelledVolume], class_names: list[str], size: int, mirror_excess: bool,
                     intensities: Normalisation = None):
    """Labelled slices of all volumes: images ``(N, C, S, S)``, presence ``(N, K - 1)`` float, volume ``(N,)`` index.

    ``intensities``: normalise by these cohort statistics instead of per volume (:func:`prepare_slices`)."""
    code_of = {name: code for code, name in enumerate(class_names)}
    images, presence, volume_index = [], [], []
    channels = None
    for volume in volumes:
        array = np.asarray(volume.array, dtype=np.float32)
        if array.ndim != 4 or len(volume.slice_classes) != array.shape[1]:
            raise WeakSegInputError(
                f"{volume.name}: needs a (C, Z, Y, X) array and one label entry per slice; got shape "
                f"{array.shape} and {len(volume.slice_classes)} entries"
            )
        channels = check_same_channels(channels, array.shape[0], volume.name)
        keep = [index for index, classes in enumerate(volume.slice_classes) if classes is not None]
        if not keep:
            continue
        slices = prepare_slices(array, size, mirror_excess, intensities)[keep]
        rows = torch.zeros(len(keep), len(class_names) - 1)
        for row, index in enumerate(keep):
            for name in volume.slice_classes[index]:
                if name not in code_of or code_of[name] == 0:
                    raise WeakSegInputError(f"{volume.name}, slice {index}: label {name!r} is not one of {class_names[1:]}")
                rows[row, code_of[name] - 1] = 1.0
        images.append(slices)
        presence.append(rows)
        volume_index.append(torch.full((len(keep),), len(volume_index), dtype=torch.long))
    if not images:
        raise WeakSegInputError("no labelled slice among the training images")
    images, presence, volume_index = torch.cat(images), torch.cat(presence), torch.cat(volume_index)
    positives = int((presence.sum(1) > 0).sum())
    if positives == 0 or positives == presence.shape[0]:
        raise WeakSegInputError(
            f"image-level training needs both slices showing a class and healthy slices; got {positives} "
            f"with a class out of {presence.shape[0]} labelled slices"
        )
    return images, presence, volume_index


def _balanced_batch(positive: torch.Tensor, negative: torch.Tensor, size: int, generator: torch.Generator):
    """Indices: half from ``positive``, half from ``negative`` (index tensors), with replacement."""
    half = size // 2
    picks = [positive[torch.randint(len(positive), (half,), generator=generator)],
             negative[torch.randint(len(negative), (size - half,), generator=generator)]]
    return torch.cat(picks)


# --------------------------------------------------------------------------- training


def train_image_label_model(
    volumes: Sequence[LabelledVolume],
    class_names: list[str],
    config: ImageLabelConfig | None = None,
    progress: Progress = SILENT,
    device: torch.device | str = "cpu",
    out_path: str | os.PathLike | None = None,
    resume: bool = False,
) -> ImageLabelModel:
    """Train the classifier and the self-trained segmentation network (module docstring).

    Training has ``1 + config.rounds`` stages (the classifier, then each self-training
    round). With ``out_path`` the model file is rewritten atomically after every stage, with
    the number of stages done; ``resume=True`` continues an interrupted run from the last
    finished stage (the steps of an unfinished stage are redone with the same batches, so the
    result equals an uninterrupted run's).

    Args:
        volumes: training images with per-slice labels.
        class_names: background first, then the classes image labels may name.
        out_path: where the model is written (after every stage and at the end).
        resume: continue the run stored in ``out_path``; needs the same classes and config.

    Raises:
        WeakSegInputError: bad class list, inconsistent channels, unknown label names, no
            lesion or no healthy slice to learn from; on resume, a missing or foreign model
            file, other classes or settings, or a run that is already complete.
        CancelledError: when ``progress`` reports a cancellation.
    """
    config = config or ImageLabelConfig()
    check_class_names(class_names, "image-level training")
    config.check()
    device = torch.device(device)
    torch.manual_seed(config.seed)
    intensities = training_intensities([np.asarray(volume.array) for volume in volumes], config.normalisation)
    images, presence, volume_index = _labelled_slices(volumes, class_names, config.image_size, config.mirror_excess,
                                                      intensities)
    classifier = CamClassifier(images.shape[1], len(class_names) - 1, config.classifier_channels,
                               config.cam_top_fraction).to(device)
    segmenter = UNet2D(images.shape[1], len(class_names), config.segmenter_channels, config.dropout).to(device)
    model = ImageLabelModel(classifier, segmenter, list(class_names), config, device, intensities)
    if resume and out_path is None:
        raise WeakSegInputError("resuming image-label training needs the model file to resume from")
    stages_done = _resume_from(model, out_path) if resume else 0

    def stage_done(stages: int) -> None:
        if out_path is not None:
            save_image_label_model(model, out_path, stages)

    if stages_done == 0:
        _train_classifier(model, images, presence, progress.part(0.0, 0.25))
        stage_done(1)
    model.classifier.eval()
    _self_train(model, images, presence, volume_index, progress.part(0.25, 1.0), first_round=max(0, stages_done - 1),
                round_done=lambda round_index: stage_done(round_index + 2))
    return model


def _resume_from(model: ImageLabelModel, path: str | os.PathLike) -> int:
    """Load the networks of an interrupted run into ``model``; returns the stages it finished."""
    payload = load_checkpoint(path, model.device)
    check_resume(payload, path, METHOD_NAME, model.class_names, model.config.as_dict(),
                 former={"normalisation": "volume", "dice_weight": 0.0})
    stored = load_image_label_model(path, model.device, payload)
    stages = int(payload["metadata"].get("stages_done", 1 + model.config.rounds))
    if stages >= 1 + model.config.rounds:
        raise WeakSegInputError(f"{path}: the run is already complete; nothing to resume")
    model.classifier.load_state_dict(stored.classifier.state_dict())
    model.segmenter.load_state_dict(stored.segmenter.state_dict())
    return stages


def _train_classifier(model: ImageLabelModel, images, presence, progress: Progress) -> None:
    config = model.config
    generator = torch.Generator().manual_seed(config.seed)
    positive = torch.nonzero(presence.sum(1) > 0)[:, 0]
    negative = torch.nonzero(presence.sum(1) == 0)[:, 0]
    optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)

    def compute_loss(step: int) -> torch.Tensor:
        picks = _balanced_batch(positive, negative, config.batch_size, generator)
        batch, _ = augment(images[picks], [], generator)
        logits, _ = model.classifier(batch.to(model.device))
        return F.binary_cross_entropy_with_logits(logits, presence[picks].to(model.device))

    progress.report(0.0, "training the classifier")
    run_training(model.classifier, optimizer, compute_loss, config.classifier_steps, config.learning_rate, progress)


def _self_train(model: ImageLabelModel, images, presence, volume_index, progress: Progress, first_round: int = 0,
                round_done=None) -> None:
    """Rounds of: pseudo labels -> pick the confident lesion slices -> train the segmenter.

    ``first_round`` > 0 continues a resumed run; every round seeds its batch sampler and
    torch's global generator (dropout) from ``(seed, round)``, so a resumed run trains its
    rounds exactly as the uninterrupted run did. ``round_done(round_index)`` is called after
    each round.
    """
    config = model.config
    positive = torch.nonzero(presence.sum(1) > 0)[:, 0]
    negative = torch.nonzero(presence.sum(1) == 0)[:, 0]
    labels = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long)
    for round_index in range(first_round, config.rounds):
        part = progress.part(round_index / config.rounds, (round_index + 1) / config.rounds)
        part.report(0.0, f"round {round_index + 1}/{config.rounds}: pseudo labels")
        generator = torch.Generator().manual_seed(config.seed + 1 + 1_000_003 * round_index)
        torch.manual_seed(config.seed + 1 + round_index)
        if round_index == 0:
            classifier_probability, maps = class_activation_maps(model.classifier, images, config.cam_scales)
            present = presence[positive]
            confidence = (classifier_probability[positive] * present).sum(1) / present.sum(1)
            activations = _appearance_sharpened_cams(model, images, maps, presence, volume_index)[positive]
        else:
            probabilities = predict_slices(model, images[positive])
            activations = probabilities[:, 1:]
            confidence = _segmentation_confidence(probabilities)
        params = config.pseudo_label_params(from_network=round_index > 0)
        codes = [(torch.nonzero(presence[index])[:, 0] + 1).tolist() for index in positive.tolist()]
        cutoffs = (dataset_cutoffs(activations.numpy(), codes, params) if config.class_balance == "dataset"
                   else None)
        for row, index in enumerate(positive.tolist()):
            pseudo = make_pseudo_labels(images[index].numpy(), activations[row].numpy(), codes[row], params, cutoffs)
            labels[index] = torch.from_numpy(pseudo.astype(np.int64))
        share = config.first_round_share + (1 - config.first_round_share) * round_index / max(config.rounds - 1, 1)
        chosen = positive[torch.argsort(confidence, descending=True)[: max(1, round(share * len(positive)))]]
        _train_segmenter(model, images, labels, chosen, negative, generator,
                         part.part(0.1, 1.0), f"round {round_index + 1}/{config.rounds}")
        if round_done is not None:
            round_done(round_index)


def _appearance_sharpened_cams(model: ImageLabelModel, images, maps, presence, volume_index) -> torch.Tensor:
    """The CAMs ``maps`` ``(N, K - 1, S, S)`` of all slices (0 for classes a slice's label does not name), each
    volume's refined by its appearance model seeded by its surest CAM pixels (step 2 of the module docstring)."""
    maps = maps * presence[:, :, None, None]
    intensities = images[:, : _image_channels(model)]
    params = model.config.appearance_params()
    for volume in torch.unique(volume_index).tolist():
        rows = volume_index == volume
        volume_intensities = intensities[rows].permute(1, 0, 2, 3).numpy()
        refined = refine_with_appearance(volume_intensities, maps[rows].permute(1, 0, 2, 3).numpy(),
                                         presence[rows].T.numpy() > 0, foreground_region(volume_intensities), params)
        maps[rows] = torch.from_numpy(refined).permute(1, 0, 2, 3)
    return maps


def _image_channels(model: ImageLabelModel) -> int:
    """Channels of the image itself (the network's input adds the mirror channels when ``mirror_excess``)."""
    return model.classifier.config["in_channels"] // (2 if model.config.mirror_excess else 1)


def _segmentation_confidence(probabilities: torch.Tensor) -> torch.Tensor:
    """Per slice: mean top probability over the pixels predicted foreground (0 if none)."""
    top, winner = probabilities.max(dim=1)
    foreground = (winner > 0).float()
    return (top * foreground).sum(dim=(1, 2)) / foreground.sum(dim=(1, 2)).clamp(min=1.0)


def _train_segmenter(model: ImageLabelModel, images, labels, positive, negative, generator,
                     progress: Progress, stage: str) -> None:
    config = model.config
    optimizer = torch.optim.AdamW(model.segmenter.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)

    def compute_loss(step: int) -> torch.Tensor:
        picks = _balanced_batch(positive, negative, config.batch_size, generator)
        batch, (batch_labels,) = augment(images[picks], [labels[picks]], generator)
        batch_labels = batch_labels.to(model.device)
        logits = model.segmenter(batch.to(model.device))
        weights = balanced_class_weights(batch_labels, model.num_classes).to(model.device) if config.balance_classes else None
        return partial_cross_entropy_and_dice(logits, batch_labels, config.dice_weight, weights)

    progress.report(0.0, f"{stage}: training the segmentation network")
    run_training(model.segmenter, optimizer, compute_loss, config.round_steps, config.learning_rate, progress)
    model.segmenter.eval()


# --------------------------------------------------------------------------- prediction


def predict_slices(model: ImageLabelModel, images: torch.Tensor, post_processing: bool = True) -> torch.Tensor:
    """Softmax ``(N, K, S, S)`` of prepared slices, averaged over left-right and up-down flips (unless not ``post_processing``)."""
    return flip_averaged_softmax(model.segmenter, images, model.device, post_processing=post_processing)


def segment_volume(
    model: ImageLabelModel, array: np.ndarray, spacing_zyx: tuple[float, float, float], crf: bool | None = None,
    appearance: bool | None = None, post_processing: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a ``(C, Z, Y, X)`` image: uint8 labels ``(Z, Y, X)`` and probabilities ``(K, Z, Y, X)``.

    ``crf`` and ``appearance`` override the model's settings (None keeps them);
    ``post_processing=False`` drops the flip averaging (:mod:`weakseg.inference`).
    """
    _check_channels(model, array)
    normalised = normalise_intensity(array)
    network_input = normalised if model.intensities is None else normalise_with(array, model.intensities)
    probabilities = predict_slices(model, _network_input(network_input, model.config.image_size,
                                                         model.config.mirror_excess), post_processing)
    sharpen = model.config.appearance if appearance is None else appearance
    probabilities = refine_prediction(array, _to_image_grid(probabilities, array.shape[-2:]), spacing_zyx,
                                      model.config.appearance_params(from_network=True) if sharpen else None,
                                      model.config.crf if crf is None else crf, normalised)
    return probabilities.argmax(axis=0).astype(np.uint8), probabilities


def _to_image_grid(probabilities: torch.Tensor, size_yx: tuple[int, int]) -> np.ndarray:
    """``(Z, K, S, S)`` -> ``(K, Z, Y, X)`` float32 on the image's slice size, summing to 1."""
    return to_image_grid(probabilities, size_yx, floor=1e-6)


def _check_channels(model: ImageLabelModel, array: np.ndarray) -> None:
    if np.ndim(array) != 4:
        raise WeakSegInputError(f"image of shape {np.shape(array)}: expected (C, Z, Y, X) intensities")
    check_channels(_image_channels(model), array.shape[0], "image")


# --------------------------------------------------------------------------- files


def save_image_label_model(model: ImageLabelModel, path: str | os.PathLike, stages_done: int | None = None) -> None:
    """Write both networks and their settings to one ``weights_only``-loadable file.

    ``stages_done`` (default: all, ``1 + rounds``) records how far training got, for resume.
    """
    networks = nn.ModuleDict({"classifier": model.classifier, "segmenter": model.segmenter})
    metadata = {
        "method": METHOD_NAME,
        "class_names": list(model.class_names),
        "config": model.config.as_dict(),
        "classifier_config": dict(model.classifier.config),
        "segmenter_config": dict(model.segmenter.config),
        "stages_done": 1 + model.config.rounds if stages_done is None else stages_done,
        "intensities": model.intensities.as_dict() if model.intensities is not None else None,
    }
    save_checkpoint(path, networks, None, model.config.rounds * model.config.round_steps, metadata)


def load_image_label_model(
    path: str | os.PathLike, device: torch.device | str = "cpu", payload: dict | None = None
) -> ImageLabelModel:
    """Load a model written by :func:`save_image_label_model`.

    Args:
        payload: the checkpoint of ``path`` when the caller has read it already
            (:func:`weakseg.engine.load_checkpoint` on ``device``), so it is not read twice.

    Raises:
        WeakSegInputError: missing or damaged file, or a model of another method.
    """
    device = torch.device(device)
    payload, metadata = load_model_checkpoint(path, device, METHOD_NAME, "image-label", payload)
    try:
        classifier_config = metadata["classifier_config"]
        segmenter_config = metadata["segmenter_config"]
        classifier = CamClassifier(int(classifier_config["in_channels"]), int(classifier_config["num_foreground"]),
                                   tuple(classifier_config["channels"]), float(classifier_config["top_fraction"]))
        segmenter = UNet2D(int(segmenter_config["in_channels"]), int(segmenter_config["num_classes"]),
                           tuple(segmenter_config["channels"]), float(segmenter_config["dropout"]))
        nn.ModuleDict({"classifier": classifier, "segmenter": segmenter}).load_state_dict(payload["model"])
        config = ImageLabelConfig.from_dict(metadata["config"])
        intensities = stored_normalisation(metadata.get("intensities"))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeakSegInputError(f"{path}: damaged image-label model ({type(error).__name__}: {error})") from None
    classifier.to(device).eval()
    segmenter.to(device).eval()
    return ImageLabelModel(classifier, segmenter, list(metadata["class_names"]), config, device, intensities)


# --------------------------------------------------------------------------- method spec functions


def train(request: TrainingRequest) -> None:
    """Train on the images an image-level label CSV names (:class:`~weakseg.methods.spec.TrainingRequest`)."""
    volumes, class_names = read_labelled_volumes(request, "imagelabel")
    train_image_label_model(volumes, class_names, request.settings, request.progress, request.device,
                            request.out_path, resume=request.resume)


def read_labelled_volumes(request: TrainingRequest, method: str) -> tuple[list[LabelledVolume], list[str]]:
    """The images ``request.image_labels`` names (looked up in ``request.data_dir``) with their slice labels.

    ``request.split`` keeps the CSV's images whose name it selects; without ``request.class_names``
    the classes are background and the class names the CSV uses (``lesion`` when it names none).
    """
    from weakseg.cases import parse_split
    from weakseg.image_labels import read_image_labels, resolve_image_path

    if not request.image_labels:
        raise WeakSegInputError(f"method {method} needs --image-labels CSV (image,slices,label rows)")
    class_names = request.class_names
    labels = read_image_labels(request.image_labels, class_names)
    selected = parse_split(request.split)
    labels = {name: entry for name, entry in labels.items() if selected(name)}
    if not labels:
        raise WeakSegInputError(f"{request.image_labels}: --split {request.split!r} selects none of its images")
    if class_names is None:
        named = sorted({name for entry in labels.values() for name in entry.class_names()})
        class_names = ["background"] + (named or ["lesion"])
    volumes = []
    for name, entry in labels.items():
        image = read_image(resolve_image_path(request.data_dir, name, request.image_labels))
        volumes.append(LabelledVolume(name, image.array, entry.per_slice(image.shape_zyx[0])))
    return volumes, class_names


def predict_image(model: ImageLabelModel, image: LoadedImage, progress: Progress = SILENT,
                  post_processing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Segment a :class:`~weakseg.io.LoadedImage` (the ``predict`` of the method spec)."""
    progress.report(0.0, "segmenting")
    labels, probabilities = segment_volume(model, image.array, image.spacing_zyx, post_processing=post_processing)
    progress.report(1.0, "segmented")
    return labels, probabilities
