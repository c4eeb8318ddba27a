"""Training method ``transfer`` from arrays (see :mod:`weakseg.methods.transfer` for the method).

This module reads no image file and imports no SimpleITK: it starts from
:class:`TransferArrays` (normalised, resized slices), so a GPU machine without the
medical-image stack can train from a compact ``.npz`` (:func:`save_arrays` /
:func:`load_arrays`). :mod:`weakseg.methods.transfer_data` builds the arrays from folders.

Schedule: one AdamW run of ``steps`` steps with polynomial decay
(:func:`weakseg.engine.run_training`). Every step draws ``batch_size`` augmented source
slices with their masks and ``batch_size`` augmented target slices, runs them through the
network together and adds up

* cross-entropy on the source masks;
* with target scribbles: balanced partial cross-entropy on them, the background prior
  beyond their hull and the entropy and total-variation regularisers on the target
  slices (the cohort method's scribble terms);
* from the end of the warm-up: partial cross-entropy on the target pseudo labels, renewed
  at the start of every round from the network's probabilities (flip-averaged), only the
  classes the slice's image label names, per class the most confident pixels
  (:func:`weakseg.methods.pseudo_labels.make_pseudo_labels`); round ``r`` admits the most
  confident share of the labelled target slices, rising from ``first_round_share`` to all;
* the class-centroid alignment of the last decoder features (target classes from pseudo
  labels and scribbles);
* the output-space adversarial term, with one critic step per step.

With ``ema_decay`` > 0 the model file holds the moving average of the weights (the latest
weights beside it, to resume).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from weakseg.contract import UNLABELLED
from weakseg.data import augment, outside_scribbles
from weakseg.engine import check_resume, load_checkpoint, run_training, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.inference import flip_averaged_softmax
from weakseg.losses import balanced_class_weights, partial_cross_entropy, scribble_regularisers
from weakseg.methods.pseudo_labels import PseudoLabelParams, make_pseudo_labels
from weakseg.methods.transfer import ARCHITECTURE_SETTINGS, FORMER_CRITIC_WIDTH, MODEL_KIND, TransferConfig
from weakseg.methods.transfer_alignment import CentroidAlignment, OutputSpaceCritic
from weakseg.models import UNet2D
from weakseg.progress import SILENT, Progress
from weakseg.weight_average import restored_average

NORMALISATION = "per volume and channel: clip to 0.5-99.5 percentiles, then z-score (weakseg.data.normalise_intensity)"
# Normalised intensities are stored as uint8: value = round((z - OFFSET) * SCALE), z clipped to the range.
QUANTISE_OFFSET = -4.0
QUANTISE_SCALE = 255.0 / 12.0


@dataclass
class TransferArrays:
    """Training data of method ``transfer``, slices already normalised and resized to ``S`` x ``S``.

    Attributes:
        source_images: float32 ``(Ns, C, S, S)``.
        source_masks: int64 ``(Ns, S, S)``, class codes ``0..K-1``.
        target_images: float32 ``(Nt, C, S, S)``.
        target_present: bool ``(Nt, K-1)``: slice ``i`` shows foreground class ``k`` (column ``k-1``).
        target_labelled: bool ``(Nt,)``: slice ``i`` has an image-level label (unlabelled slices
            serve the adversarial term only).
        target_scribbles: int64 ``(Nt, S, S)`` with 255 = unlabelled, or None (no scribbles).
        source_cases, target_cases: case names, recorded in the model file.
    """

    source_images: torch.Tensor
    source_masks: torch.Tensor
    target_images: torch.Tensor
    target_present: torch.Tensor
    target_labelled: torch.Tensor
    target_scribbles: torch.Tensor | None = None
    source_cases: list[str] = field(default_factory=list)
    target_cases: list[str] = field(default_factory=list)

    def check(self, num_classes: int) -> None:
        """Raise :class:`WeakSegInputError` on inconsistent shapes or codes."""
        size = tuple(self.source_images.shape[-2:])
        if not len(self.source_images) or not len(self.target_images):
            raise WeakSegInputError("transfer training needs source and target slices; one of them is empty")
        if self.source_images.shape[1] != self.target_images.shape[1]:
            raise WeakSegInputError(f"source images have {self.source_images.shape[1]} channel(s), target images "
                                    f"{self.target_images.shape[1]}")
        if tuple(self.target_images.shape[-2:]) != size or tuple(self.source_masks.shape[-2:]) != size:
            raise WeakSegInputError("source and target slices must share one size")
        if self.target_present.shape != (len(self.target_images), num_classes - 1):
            raise WeakSegInputError(f"target image labels {tuple(self.target_present.shape)} do not match "
                                    f"{len(self.target_images)} slices and {num_classes - 1} foreground classes")
        if int(self.source_masks.max()) >= num_classes:
            raise WeakSegInputError(f"source masks hold class code {int(self.source_masks.max())} beyond the "
                                    f"{num_classes} classes")


def save_arrays(path: str | os.PathLike, arrays: TransferArrays, class_names: list[str]) -> None:
    """Write ``arrays`` compactly (``.npz``: intensities quantised to uint8, labels uint8), atomically."""
    from weakseg.atomic import write_atomically

    def quantised(images: torch.Tensor) -> np.ndarray:
        return np.clip(np.round((images.numpy() - QUANTISE_OFFSET) * QUANTISE_SCALE), 0, 255).astype(np.uint8)

    content = {
        "class_names": np.asarray(class_names),
        "source_images": quantised(arrays.source_images),
        "source_masks": arrays.source_masks.numpy().astype(np.uint8),
        "target_images": quantised(arrays.target_images),
        "target_present": arrays.target_present.numpy(),
        "target_labelled": arrays.target_labelled.numpy(),
        "source_cases": np.asarray(arrays.source_cases),
        "target_cases": np.asarray(arrays.target_cases),
    }
    if arrays.target_scribbles is not None:
        content["target_scribbles"] = arrays.target_scribbles.numpy().astype(np.uint8)

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **content)

    write_atomically(path, write)


def load_arrays(path: str | os.PathLike, with_scribbles: bool = True) -> tuple[TransferArrays, list[str]]:
    """Read :func:`save_arrays`'s file: the arrays and the class names (``with_scribbles=False`` drops scribbles).

    Raises:
        WeakSegInputError: missing or unreadable file.
    """
    try:
        data = np.load(path)
        images = {key: torch.from_numpy(data[key].astype(np.float32) / QUANTISE_SCALE + QUANTISE_OFFSET)
                  for key in ("source_images", "target_images")}
        scribbles = None
        if with_scribbles and "target_scribbles" in data.files:
            scribbles = torch.from_numpy(data["target_scribbles"].astype(np.int64))
        arrays = TransferArrays(
            source_images=images["source_images"], source_masks=torch.from_numpy(data["source_masks"].astype(np.int64)),
            target_images=images["target_images"], target_present=torch.from_numpy(data["target_present"]),
            target_labelled=torch.from_numpy(data["target_labelled"]), target_scribbles=scribbles,
            source_cases=[str(name) for name in data["source_cases"]],
            target_cases=[str(name) for name in data["target_cases"]])
        return arrays, [str(name) for name in data["class_names"]]
    except (OSError, KeyError, ValueError) as error:
        raise WeakSegInputError(f"{path}: not a transfer training-array file ({type(error).__name__}: {error})") from None


def round_starts(config: TransferConfig) -> list[int]:
    """The step at which each self-training round starts (its pseudo labels are renewed there)."""
    warmup = int(config.warmup * config.steps)
    length = (config.steps - warmup) / config.rounds
    return [warmup + int(round(index * length)) for index in range(config.rounds)]


def admitted_share(config: TransferConfig, round_index: int) -> float:
    """Share of the labelled target slices round ``round_index`` (0-based) trains on."""
    if config.rounds == 1:
        return 1.0
    return config.first_round_share + (1.0 - config.first_round_share) * round_index / (config.rounds - 1)


def target_pseudo_labels(probabilities: torch.Tensor, arrays: TransferArrays, params: PseudoLabelParams,
                         share: float) -> torch.Tensor:
    """Pseudo labels ``(Nt, S, S)`` of the most confident ``share`` of the labelled target slices (the rest 255).

    Each slice's probabilities are renormalised over background and the classes its image
    label names, and handed to :func:`make_pseudo_labels`; a slice's confidence is the mean
    of its highest renormalised probability over its pixels.
    """
    labels = torch.full(arrays.target_images.shape[:1] + arrays.target_images.shape[-2:], UNLABELLED, dtype=torch.int64)
    labelled = torch.nonzero(arrays.target_labelled).flatten().tolist()
    confidence = {}
    for index in labelled:
        present = (torch.nonzero(arrays.target_present[index]).flatten() + 1).tolist()
        allowed = torch.zeros(probabilities.shape[1], dtype=torch.bool)
        allowed[[0] + present] = True
        restricted = probabilities[index] * allowed[:, None, None]
        restricted = restricted / restricted.sum(dim=0, keepdim=True).clamp(min=1e-8)
        confidence[index] = float(restricted.max(dim=0).values.mean())
        pseudo = make_pseudo_labels(arrays.target_images[index].numpy(), restricted[1:].numpy(), present, params)
        labels[index] = torch.from_numpy(pseudo.astype(np.int64))
    ranked = sorted(labelled, key=lambda index: -confidence[index])
    kept = int(np.ceil(share * len(ranked)))
    for index in ranked[kept:]:
        labels[index] = UNLABELLED
    return labels


def train_transfer_arrays(
    arrays: TransferArrays,
    class_names: list[str],
    out_path: str | os.PathLike,
    config: TransferConfig,
    device: torch.device | str = "cpu",
    progress: Progress = SILENT,
    resume: bool = False,
) -> None:
    """Train a transfer model on ``arrays`` and write it to ``out_path`` (atomically, every ``checkpoint_every`` steps).

    Raises:
        WeakSegInputError: inconsistent arrays; on resume, a foreign checkpoint, other
            classes or network settings, or ``config.steps`` not beyond the stored step.
    """
    device = torch.device(device)
    class_names = list(class_names)
    num_classes = len(class_names)
    config.check()
    arrays.check(num_classes)
    out_path = str(out_path)
    start_step, stored = 0, None
    if resume:
        stored = load_checkpoint(out_path, "cpu")
        check_resume(stored, out_path, MODEL_KIND, class_names, config.as_dict(), ARCHITECTURE_SETTINGS,
                     former={"critic_width": FORMER_CRITIC_WIDTH})
        start_step = int(stored.get("step", 0))
        if start_step >= config.steps:
            raise WeakSegInputError(f"{out_path}: already trained for {start_step} steps; ask for more to resume")

    in_channels = int(arrays.source_images.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = UNet2D(in_channels, num_classes, tuple(config.channels), config.dropout).to(device)
        critic = (OutputSpaceCritic(num_classes, config.adversarial_weight, device, config.critic_width)
                  if config.adversarial_weight else None)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    centroids = (CentroidAlignment(num_classes, config.channels[0], config.centroid_momentum, device)
                 if config.centroid_weight else None)
    if stored is not None:
        network.load_state_dict((stored.get("extra") or {}).get("latest_model") or stored["model"])
        if stored.get("optimizer"):
            optimizer.load_state_dict(stored["optimizer"])
        extra = stored.get("extra") or {}
        if critic is not None and extra.get("critic"):
            critic.load_state(extra["critic"])
        if centroids is not None and extra.get("centroids"):
            centroids.load_state(extra["centroids"])

    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + start_step)
    starts = round_starts(config)
    has_image_labels = bool(arrays.target_labelled.any())
    params = PseudoLabelParams(config.pseudo_label_threshold, config.foreground_fraction, config.background_fraction,
                               config.superpixels, config.compactness, config.vote, config.purity)
    scribbles = arrays.target_scribbles
    far = outside_scribbles(scribbles, config.outside_margin) if scribbles is not None and config.outside_weight else None
    average = restored_average(stored, network, config.ema_decay) if config.ema_decay else None
    empty = torch.full(arrays.target_images.shape[:1] + arrays.target_images.shape[-2:], UNLABELLED, dtype=torch.int64)
    state = {"pseudo": empty, "round": -1}
    uses_pseudo = has_image_labels and bool(config.pseudo_label_weight or config.centroid_weight)
    # Without any target term the target slices stay out of the batch (and of batch norm): the source-only baseline.
    uses_target = uses_pseudo or scribbles is not None or centroids is not None or critic is not None

    def renew_pseudo_labels(step: int) -> None:
        round_index = max(index for index, start in enumerate(starts) if start <= step)
        if round_index == state["round"]:
            return
        probabilities = flip_averaged_softmax(network, arrays.target_images, device)
        state["pseudo"] = target_pseudo_labels(probabilities, arrays, params, admitted_share(config, round_index))
        state["round"] = round_index
        progress.report(step / config.steps, f"round {round_index + 1}/{config.rounds}: pseudo labels renewed")

    def compute_loss(step: int) -> torch.Tensor:
        if uses_pseudo and step >= starts[0]:
            renew_pseudo_labels(step)
            network.train()
        source_pick = torch.randint(len(arrays.source_images), (config.batch_size,), generator=generator)
        target_pick = torch.randint(len(arrays.target_images), (config.batch_size,), generator=generator)
        source, (masks,) = augment(arrays.source_images[source_pick], [arrays.source_masks[source_pick]], generator,
                                   config.max_rotation_degrees, config.max_scale)
        if not uses_target:
            return partial_cross_entropy(network(source.to(device)), masks.to(device))
        target_maps = [state["pseudo"][target_pick]] + ([scribbles[target_pick]] if scribbles is not None else [])
        target_maps += [far[target_pick].long()] if far is not None else []
        target, target_maps = augment(arrays.target_images[target_pick], target_maps, generator,
                                      config.max_rotation_degrees, config.max_scale)
        # Each domain is its own batch (its own batch-norm statistics while training), as in AdaptSegNet.
        count = len(source)
        source_features, source_logits = network.forward_features(source.to(device))
        target_features, target_logits = network.forward_features(target.to(device))
        features, logits = torch.cat([source_features, target_features]), torch.cat([source_logits, target_logits])
        masks, pseudo = masks.to(device), target_maps[0].to(device)
        loss = partial_cross_entropy(logits[:count], masks)
        target_labels = pseudo
        if scribbles is not None:
            scribbled = target_maps[1].to(device)
            weights = balanced_class_weights(scribbled, num_classes)
            loss = loss + config.scribble_weight * partial_cross_entropy(logits[count:], scribbled, weights)
            loss = loss + scribble_regularisers(logits[count:], target_maps[2] if far is not None else None,
                                                config.entropy_weight, config.tv_weight, config.outside_weight)
            target_labels = torch.where(scribbled != UNLABELLED, scribbled, pseudo)
        if config.pseudo_label_weight and state["round"] >= 0:
            weights = balanced_class_weights(pseudo, num_classes)
            loss = loss + config.pseudo_label_weight * partial_cross_entropy(logits[count:], pseudo, weights)
        if centroids is not None:
            loss = loss + config.centroid_weight * centroids.loss(features[:count], masks, features[count:], target_labels)
        if critic is not None:
            loss = loss + critic.segmenter_loss(logits[count:])
            critic.train_critic(logits[:count], logits[count:], step, config.steps)
        return loss

    def checkpoint(step: int) -> None:
        metadata = {
            "method": MODEL_KIND,
            "method_name": "transfer",
            "class_names": class_names,
            "config": config.as_dict(),
            "model_config": dict(network.config),
            "image_size": config.image_size,
            "normalisation": NORMALISATION,
            "step": step,
            "source_cases": list(arrays.source_cases),
            "target_cases": list(arrays.target_cases),
            "target_scribbles": scribbles is not None,
        }
        extra = {}
        if critic is not None:
            extra["critic"] = critic.state()
        if centroids is not None:
            extra["centroids"] = centroids.state()
        saved = network
        if average is not None:
            metadata["ema"] = {"decay": config.ema_decay, "updates": average.updates}
            saved, extra["latest_model"] = average.network, network.state_dict()
        save_checkpoint(out_path, saved, optimizer, step, metadata, extra or None)

    torch.manual_seed(config.seed * 1_000_003 + start_step)  # dropout draws from torch's global generator
    run_training(network, optimizer, compute_loss, config.steps, config.learning_rate, progress,
                 start_step=start_step, checkpoint=checkpoint, checkpoint_every=config.checkpoint_every,
                 after_step=(lambda done: average.update(network)) if average is not None else None)


__all__ = ["TransferArrays", "load_arrays", "save_arrays", "train_transfer_arrays"]
