"""Cohort mode: train one 2D U-Net on the scribbles of many volumes, then segment new ones.

Data folder convention
======================

A cohort folder holds, for every case ``<case>``::

    <case>_image.<ext>       the image (grey or multi-channel, 2D or 3D)
    <case>_scribble.<ext>    scribbles on the image's grid: a labelmap with class codes
                             0..K (0 = background) and 255 = unlabelled (the form of the ACDC
                             scribbles of Valvano et al.), or a ``.seg.nrrd`` whose segments
                             are matched to the class names by name
    <case>_label.<ext>       optional full mask, used ONLY for evaluation, never for training

``<ext>`` is any of ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.png`` (a scribble may
also be ``.seg.nrrd``); the three files of a case need not share the suffix. This is the
layout of ``/work/shared/data/acdc`` (``patient001_frame01_image.nii.gz`` ...).
:func:`list_cases` finds the cases, optionally restricted by a *split spec*
(:func:`parse_split`): ``"001-060"`` selects the cases whose case name's first number
lies in 1..60, so ``patient001_frame01`` .. ``patient060_frame12`` on ACDC; see there.

Method
======

* **Network**: slice-wise :class:`~weakseg.models.UNet2D`. Cardiac cine MRI and most
  clinical volumes have 5-10 mm between slices against ~1.5 mm in-plane, where 2D
  networks are the strong baseline (Isensee et al., nnU-Net 2021; Baumgartner et al. 2017).
* **Pre-processing**: each volume is normalised once with
  :func:`weakseg.data.normalise_intensity` (per-channel 0.5-99.5 percentile clip, z-score),
  and every slice is resized (bilinear) to a square ``image_size`` x ``image_size``;
  scribbles follow with nearest-neighbour resizing. The trade-off of ``image_size``:
  compute per step grows with its square, so 128 gives ~1.6x more steps than 160 in the
  same time, but thin structures lose detail (the ~4-7 px myocardium of a 256 px ACDC
  slice becomes 2-3.5 px at 128), which caps their Dice; on a GPU use 192-256, on a CPU budget
  128-160. Probabilities are resized back to the original slice size before the argmax,
  so predictions keep the image's grid and geometry. Resizing whole slices (no crop)
  keeps the method free of anatomy-specific assumptions; the aspect ratio is restored.
* **Far from the scribbles is background** (``outside_weight``, ``outside_margin``):
  scribblers outline the structures with background strokes, but nobody scribbles the
  far field of view (air above and below the chest, zero-filled borders), where a network
  trained on pCE alone is free to predict anything: on ACDC it labelled those regions
  "RV" (RV Dice 0.09 on val). Pixels of a scribbled slice farther than ``outside_margin``
  (fraction of the slice size) from the convex hull of all its scribbles are therefore
  taken as background, in a separate, weakly weighted cross-entropy term: the
  loose-bounding-region prior of box supervision (outside the box is background;
  Kervadec et al., MIDL 2020; Dai et al., BoxSup 2015), with the region given by the
  scribbles' hull. It assumes background strokes (roughly) surround the structures, as
  in the ACDC protocol, or that the margin covers what they miss; on ACDC val no
  ground-truth foreground pixel falls in the prior's region. ``outside_weight=0`` turns
  it off. It raised ACDC val mean Dice from 0.59 to 0.84 (RV 0.09 -> 0.83).
* **Loss** on a random batch of augmented (:func:`weakseg.data.augment`) scribbled slices:

  - class-balanced partial cross-entropy on the scribbled pixels
    (:func:`weakseg.losses.partial_cross_entropy` with
    :func:`weakseg.losses.balanced_class_weights`; Tang et al. 2018, Valvano et al. 2021);
  - small regularisers on all pixels: entropy minimisation (Grandvalet & Bengio 2005)
    and total variation of the softmax (a relaxed length/Potts term, cf. Kervadec et al.
    2019 "Constrained CNN losses"), which favour confident, compact regions;
  - optionally, after a warm-up, *self-training on confident predictions*
    (pseudo-labels, Lee 2013; the scribble setting of "Scribble2Label", Lee & Jeong 2020):
    unscribbled pixels whose predicted probability for a class exceeds a threshold get
    that class as a (detached) target, weighted below the scribbles.

* **Optimisation**: AdamW with nnU-Net's polynomial learning-rate decay via
  :func:`weakseg.engine.run_training`; checkpoints (atomic, ``weights_only``-loadable)
  every ``checkpoint_every`` steps hold the weights, the optimizer state, the step and
  plain metadata (class names, this config, the network config, image size,
  normalisation) and the random state (batch sampler, dropout). ``resume=True`` continues
  from the checkpoint's step with that random state, so an interrupted and resumed run
  ends with the weights of an uninterrupted one (on the CPU).

* **Prediction** (:func:`predict_volume`): normalise, resize each slice, softmax averaged
  over flip test-time augmentation (identity, left-right, up-down, both), resize the
  probabilities back, argmax; then (``largest_component``, on by default) keep only the
  largest 3D connected component of every foreground class, which raised mean Dice on
  ACDC val from 0.844 to 0.852 (LV +0.015, Myo +0.008, RV +0.001). Turn it off for
  structures that come in several pieces (lesions, metastases).

* **Shape prior from unpaired masks** (``maag``, :data:`METHOD_SETTINGS`): the network is
  :class:`~weakseg.models.AttentionUNet2D` and the loss adds the multi-scale adversarial
  term of :mod:`weakseg.methods.adversarial`, learnt from masks of other images
  (:mod:`weakseg.unpaired_masks`); ``pce`` is the same network with partial CE only. Both
  share this module's data loading, checkpoints, resume, prediction and adaptation.

* **Adaptation** (:func:`adapt_to_scribbles`, ``weakseg segment IMAGE --scribbles S
  --model M``): a copy of the cohort network is fine-tuned for a few dozen steps on this
  volume's scribbles (balanced pCE) plus the cohort model's own confident predictions as
  pseudo-labels (which keep it from forgetting what the scribbles do not cover), then
  predicts the volume. Scribble classes are matched to the model's classes by name.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from weakseg.data import augment, normalise_intensity, resize_images, resize_labels, volume_to_slices
from weakseg.engine import load_checkpoint, pick_device, restore_random_state, run_training, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage, read_image, suffix_of
from weakseg.losses import balanced_class_weights, entropy_minimisation, partial_cross_entropy, total_variation
from weakseg.models import ARCHITECTURES, UNet2D, build_network
from weakseg.progress import SILENT, Progress
from weakseg.settings import StoredSettings
from weakseg.unpaired_masks import MaskFile, load_unpaired_masks
from weakseg.weak_labels import UNLABELLED, Scribbles, check_class_names, load_scribbles

METHOD_NAME = "cohort-unet2d"
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".png")
SCRIBBLE_SUFFIXES = IMAGE_SUFFIXES + (".seg.nrrd",)
NORMALISATION = "per volume and channel: clip to 0.5-99.5 percentiles, then z-score (weakseg.data.normalise_intensity)"
PREDICTION_BATCH = 16


# --------------------------------------------------------------------------- cases


@dataclass
class CohortCase:
    """One case of a cohort folder (see the module docstring for the naming)."""

    name: str
    image_path: str
    scribble_path: str | None = None
    label_path: str | None = None


def parse_split(spec: str | None):
    """Turn a split spec into a predicate on case names (None or "" selects every case).

    The spec is a comma-separated list; a case is selected if any item matches it:

    * ``"A-B"`` (digits): the case name's first run of digits, read as a number, lies in
      ``A..B`` inclusive: ``"001-060"`` selects ``patient001_frame01`` ... ``patient060_*``;
    * ``"N"`` (digits): the same with ``A == B == N``;
    * anything else: a case-name prefix, e.g. ``"patient061_frame01,patient062"``.

    Raises:
        WeakSegInputError: an empty item or a range whose start exceeds its end.
    """
    if spec is None or not spec.strip():
        return lambda name: True
    ranges: list[tuple[int, int]] = []
    prefixes: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            raise WeakSegInputError(f"split {spec!r}: empty item between commas")
        numbers = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item) or re.fullmatch(r"(\d+)()", item)
        if numbers:
            low = int(numbers.group(1))
            high = int(numbers.group(2) or low)
            if low > high:
                raise WeakSegInputError(f"split {spec!r}: range {item!r} starts after it ends")
            ranges.append((low, high))
        else:
            prefixes.append(item)

    def selected(name: str) -> bool:
        if any(name.startswith(prefix) for prefix in prefixes):
            return True
        first_number = re.search(r"\d+", name)
        return first_number is not None and any(low <= int(first_number.group()) <= high for low, high in ranges)

    return selected


def list_cases(folder: str | os.PathLike, split: str | None = None, require_scribbles: bool = True) -> list[CohortCase]:
    """The cases of a cohort folder, sorted by name, optionally restricted by a split spec.

    Args:
        folder: holds ``<case>_image.<ext>`` and ``<case>_scribble.<ext>`` files.
        split: see :func:`parse_split`.
        require_scribbles: every selected case must have a scribble file (training); with
            False, cases without one are listed with ``scribble_path=None`` (prediction).

    Raises:
        WeakSegInputError: missing folder, no images, nothing selected by the split, or
            (with ``require_scribbles``) images without scribbles; the message names the folder.
    """
    folder = str(folder)
    if not os.path.isdir(folder):
        raise WeakSegInputError(f"{folder}: no such folder")
    files = {entry.name: str(Path(folder) / entry.name) for entry in os.scandir(folder) if entry.is_file()}

    def find(case: str, role: str, suffixes) -> str | None:
        for suffix in suffixes:
            name = f"{case}_{role}{suffix}"
            if name in files:
                return files[name]
        return None

    names = sorted(
        {
            name[: -len(f"_image{suffix_of(name)}")]
            for name in files
            if suffix_of(name) in IMAGE_SUFFIXES and name[: -len(suffix_of(name))].endswith("_image")
        }
    )
    if not names:
        raise WeakSegInputError(
            f"{folder}: no images found; expected files named <case>_image.<ext> with <ext> one of "
            + ", ".join(IMAGE_SUFFIXES)
        )
    selected = parse_split(split)
    cases = [
        CohortCase(
            name=name,
            image_path=find(name, "image", IMAGE_SUFFIXES),
            scribble_path=find(name, "scribble", SCRIBBLE_SUFFIXES),
            label_path=find(name, "label", IMAGE_SUFFIXES),
        )
        for name in names
        if selected(name)
    ]
    if not cases:
        raise WeakSegInputError(f"{folder}: split {split!r} selects none of its {len(names)} cases")
    if require_scribbles:
        missing = [case.name for case in cases if case.scribble_path is None]
        if len(missing) == len(cases):
            raise WeakSegInputError(
                f"{folder}: no scribbles found; expected <case>_scribble.<ext> beside each <case>_image.<ext>"
            )
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise WeakSegInputError(f"{folder}: {len(missing)} case(s) have no <case>_scribble file: {shown}")
    return cases


# --------------------------------------------------------------------------- config and model


@dataclass
class CohortConfig(StoredSettings):
    """Settings of a cohort training run (stored in the model file as a plain dict).

    The defaults are the configuration measured on ACDC on a shared 2-core CPU
    (~25 min for 3000 steps; mean val Dice 0.852 without scribbles, 0.87 with
    adaptation to each volume's scribbles). On a GPU use ``image_size`` 160-256, ``channels``
    (16, 32, 64, 128, 256) and ~10k steps: on one H100, 160 px reached 0.884 / 0.893 at step
    7400 (6.5 min with four runs sharing the GPU); see the README's benchmark.

    Attributes:
        image_size: square side every slice is resized to (multiple of 2**(levels-1)).
        channels, dropout: :class:`~weakseg.models.UNet2D` widths per level, bottleneck dropout.
        steps, batch_size, learning_rate, weight_decay: AdamW, polynomial decay.
        entropy_weight, tv_weight: regularisers on all pixels.
        pseudo_label_weight, pseudo_label_threshold, pseudo_label_warmup: self-training on
            confident predictions after ``warmup`` x ``steps`` (0 = off; not validated on ACDC).
        outside_weight, outside_margin: background prior beyond the scribbles' hull.
        largest_component: default of :func:`predict_volume` / :func:`adapt_to_scribbles`.
        max_rotation_degrees, max_scale: augmentation (:func:`weakseg.data.augment`).
        architecture: ``"unet2d"`` or ``"attention-unet2d"`` (:mod:`weakseg.models`).
        adversarial_weight: > 0 adds the multi-scale adversarial shape prior learnt from
            unpaired masks (:mod:`weakseg.methods.adversarial`; needs ``attention-unet2d``).
        checkpoint_every: steps between checkpoints; seed: network init and batch order.
    """

    architecture: str = "unet2d"
    adversarial_weight: float = 0.0
    image_size: int = 128
    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    dropout: float = 0.1
    steps: int = 3000
    batch_size: int = 12
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    entropy_weight: float = 0.05
    tv_weight: float = 0.05
    pseudo_label_weight: float = 0.0
    pseudo_label_threshold: float = 0.95
    pseudo_label_warmup: float = 0.3
    outside_weight: float = 0.1
    outside_margin: float = 0.1
    largest_component: bool = True
    max_rotation_degrees: float = 20.0
    max_scale: float = 0.15
    checkpoint_every: int = 100
    seed: int = 0


# Settings that change the network or its input: a resumed run must keep them.
ARCHITECTURE_SETTINGS = ("architecture", "image_size", "channels", "dropout")

# The cohort-level methods: each is CohortConfig's defaults with these settings replaced.
#   cohort  U-Net, balanced pCE + entropy + total variation + background beyond the hull;
#   pce     attention U-Net, balanced pCE only (the ablation MAAG is measured against);
#   maag    attention U-Net, balanced pCE + multi-scale adversarial shape prior from
#           unpaired masks (Valvano et al. 2021).
# pce and maag depart from the paper's Adam 1e-4 and adversarial weight 0.2 where ACDC
# val (scribbles 001-035, masks 036-060, 3000 steps) showed it: at 1e-4 neither network
# had converged after 4000 steps (mean Dice 0.000 once the largest component was kept), and
# at weight 0.2 MAAG still predicted a large false left ventricle far from the heart (LV
# Dice 0.000, mean 0.558) where weight 1.0 gave 0.861 (see the README's MAAG table).
METHOD_SETTINGS = {
    "cohort": {},
    "pce": {"architecture": "attention-unet2d", "entropy_weight": 0.0, "tv_weight": 0.0, "outside_weight": 0.0,
            "learning_rate": 1e-3, "weight_decay": 0.0},
    "maag": {"architecture": "attention-unet2d", "entropy_weight": 0.0, "tv_weight": 0.0, "outside_weight": 0.0,
             "learning_rate": 1e-3, "weight_decay": 0.0, "adversarial_weight": 1.0},
}


def config_for_method(method: str, **changes) -> "CohortConfig":
    """The :class:`CohortConfig` of a cohort-level method, with ``changes`` applied on top.

    Raises:
        WeakSegInputError: an unknown method.
    """
    if method not in METHOD_SETTINGS:
        raise WeakSegInputError(f"method {method!r}: expected one of {', '.join(METHOD_SETTINGS)}")
    return CohortConfig(**{**METHOD_SETTINGS[method], **changes})


@dataclass
class CohortModel:
    """A trained cohort network with what is needed to apply it."""

    network: UNet2D
    class_names: list[str]
    image_size: int
    config: CohortConfig
    device: torch.device
    step: int = 0
    path: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.network.config["in_channels"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    return pick_device(device)


def _build_network(in_channels: int, num_classes: int, config: CohortConfig) -> UNet2D:
    if config.architecture not in ARCHITECTURES:
        raise WeakSegInputError(f"architecture {config.architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
    if config.image_size % (2 ** (len(config.channels) - 1)):
        raise WeakSegInputError(
            f"image size {config.image_size} must be a multiple of {2 ** (len(config.channels) - 1)} "
            f"for a U-Net with {len(config.channels)} levels"
        )
    if config.adversarial_weight and config.architecture != "attention-unet2d":
        raise WeakSegInputError("the adversarial shape prior needs the attention-unet2d architecture")
    return ARCHITECTURES[config.architecture](in_channels, num_classes, tuple(config.channels), config.dropout)


def load_cohort_model(
    path: str | os.PathLike, device: torch.device | str | None = "cpu", payload: dict | None = None
) -> CohortModel:
    """Load a model written by :func:`train_cohort` (``torch.load(weights_only=True)``).

    Args:
        payload: the checkpoint of ``path`` when the caller has read it already
            (:func:`weakseg.engine.load_checkpoint` on ``device``), so it is not read twice.

    Raises:
        WeakSegInputError: missing or unreadable file, or a checkpoint of another method.
    """
    device = _resolve_device(device)
    payload = payload if payload is not None else load_checkpoint(path, device)
    metadata = payload.get("metadata") or {}
    if metadata.get("method") != METHOD_NAME:
        raise WeakSegInputError(f"{path}: not a WeakSeg cohort model (method {metadata.get('method')!r})")
    try:
        config = CohortConfig.from_dict(metadata["config"])
        network = build_network(metadata["model_config"])
        network.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeakSegInputError(f"{path}: damaged cohort model ({type(error).__name__}: {error})") from None
    network.to(device).eval()
    return CohortModel(
        network=network,
        class_names=list(metadata["class_names"]),
        image_size=int(metadata["image_size"]),
        config=config,
        device=device,
        step=int(payload["step"]),
        path=str(path),
        metadata=metadata,
    )


# --------------------------------------------------------------------------- data


def _prepare_slices(image: LoadedImage, size: int) -> torch.Tensor:
    """Normalised slices resized to ``size`` x ``size``: ``(Z, C, size, size)`` float32."""
    return resize_images(volume_to_slices(normalise_intensity(image.array)), (size, size))


def _load_training_data(cases, class_names, size, progress: Progress):
    """All slices of all cases, resized, with their resized scribbles."""
    images, labels = [], []
    channels = None
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        if channels is None:
            channels = image.array.shape[0]
        elif image.array.shape[0] != channels:
            raise WeakSegInputError(
                f"{case.image_path}: has {image.array.shape[0]} channels but earlier cases have {channels}"
            )
        scribbles = load_scribbles(case.scribble_path, image, class_names)
        images.append(_prepare_slices(image, size))
        labels.append(resize_labels(torch.from_numpy(scribbles.labels.astype(np.int64)), (size, size)))
        progress.report((index + 1) / len(cases), f"loaded {case.name}")
    return torch.cat(images), torch.cat(labels), channels


def _outside_scribbles(labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Pixels farther than ``margin`` x slice size from the convex hull of a slice's scribbles.

    ``labels`` ``(N, H, W)`` (255 = unlabelled); returns bool ``(N, H, W)``, all False on
    slices without scribbles.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import convex_hull_image

    result = torch.zeros(labels.shape, dtype=torch.bool)
    distance = margin * max(labels.shape[-2:])
    for index, slice_labels in enumerate(labels.numpy()):
        scribbled = slice_labels != UNLABELLED
        if not scribbled.any():
            continue
        hull = convex_hull_image(scribbled) | scribbled
        result[index] = torch.from_numpy(distance_transform_edt(~hull) > distance)
    return result


# --------------------------------------------------------------------------- training


def _weak_loss(logits, labels, num_classes, config: CohortConfig, pseudo_weight: float) -> torch.Tensor:
    """Balanced pCE + regularisers (+ self-training on confident predictions)."""
    weights = balanced_class_weights(labels, num_classes).to(logits.device)
    loss = partial_cross_entropy(logits, labels, weights)
    if config.entropy_weight:
        loss = loss + config.entropy_weight * entropy_minimisation(logits)
    if config.tv_weight:
        loss = loss + config.tv_weight * total_variation(logits)
    if pseudo_weight:
        with torch.no_grad():
            confidence, predicted = F.softmax(logits.detach(), dim=1).max(dim=1)
            pseudo = torch.where(
                (confidence > config.pseudo_label_threshold) & (labels == UNLABELLED),
                predicted,
                torch.full_like(predicted, UNLABELLED),
            )
        pseudo_weights = balanced_class_weights(pseudo, num_classes).to(logits.device)
        loss = loss + pseudo_weight * partial_cross_entropy(logits, pseudo, pseudo_weights)
    return loss


def train_cohort(
    cases: list[CohortCase],
    out_path: str | os.PathLike,
    config: CohortConfig,
    class_names: list[str],
    progress: Progress = SILENT,
    resume: bool = False,
    device: torch.device | str | None = "cpu",
    unpaired_masks: list[MaskFile] | None = None,
) -> None:
    """Train a cohort model on the scribbles of ``cases`` and write it to ``out_path``.

    The file is rewritten atomically every ``config.checkpoint_every`` steps and at the
    end; a run interrupted (Ctrl-C, :class:`~weakseg.errors.CancelledError`, crash)
    continues with ``resume=True`` from the last checkpoint.

    Args:
        cases: from :func:`list_cases`; each needs ``scribble_path``. Label files are ignored.
        class_names: class of each scribble code, ``"background"`` first.
        resume: continue the run stored in ``out_path`` up to ``config.steps``.
        unpaired_masks: masks of other images (:func:`weakseg.unpaired_masks.list_mask_files`)
            for the adversarial shape prior; required when ``config.adversarial_weight > 0``.

    Raises:
        WeakSegInputError: unusable cases or scribbles; unpaired masks missing, unusable,
            of a training case, or given to a method without the prior; on resume, a
            missing/foreign checkpoint, different class names or network settings, or
            ``config.steps`` not beyond the stored step.
    """
    device = _resolve_device(device)
    class_names = list(class_names)
    check_class_names(class_names, "class names")
    if not cases:
        raise WeakSegInputError("no training cases given")
    for case in cases:
        if not case.scribble_path:
            raise WeakSegInputError(f"{case.image_path}: case {case.name!r} has no scribble file")
    out_path = str(out_path)
    start_step, stored = 0, None
    if bool(config.adversarial_weight) != bool(unpaired_masks):
        raise WeakSegInputError(
            "the adversarial shape prior (method maag) needs unpaired masks, and only it uses them: "
            + ("give a folder or split of masks" if config.adversarial_weight else "drop the unpaired masks")
        )
    if resume:
        stored = load_checkpoint(out_path, "cpu")
        start_step = _check_resumable(stored, out_path, config, class_names)

    images, labels, in_channels = _load_training_data(cases, class_names, config.image_size, progress.part(0.0, 0.05))
    outside = _outside_scribbles(labels, config.outside_margin).long()
    scribbled = torch.nonzero((labels != UNLABELLED).flatten(1).any(dim=1)).flatten()
    if not len(scribbled):
        raise WeakSegInputError("none of the training cases has a scribbled voxel")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = _build_network(in_channels, len(class_names), config).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if stored is not None:
        if stored["metadata"].get("model_config", {}).get("in_channels") != in_channels:
            raise WeakSegInputError(
                f"{out_path}: model was trained on {stored['metadata']['model_config'].get('in_channels')}-channel "
                f"images but these cases have {in_channels} channel(s)"
            )
        network.load_state_dict(stored["model"])
        if stored.get("optimizer"):
            optimizer.load_state_dict(stored["optimizer"])
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + start_step)
    warmup_steps = int(config.pseudo_label_warmup * config.steps)
    case_names = [case.name for case in cases]
    prior = None
    if config.adversarial_weight:
        from weakseg.methods.adversarial import AdversarialShapePrior

        masks = load_unpaired_masks(unpaired_masks, class_names, config.image_size, case_names, progress.part(0.05, 0.06))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            prior = AdversarialShapePrior(
                masks, len(class_names), network.scale_count, config.adversarial_weight, device, generator
            )
        if stored is not None and (stored.get("extra") or {}).get("shape_prior"):
            prior.load_state(stored["extra"]["shape_prior"])

    def compute_loss(step: int) -> torch.Tensor:
        pick = scribbled[torch.randint(len(scribbled), (config.batch_size,), generator=generator)]
        batch, (target, far) = augment(
            images[pick], [labels[pick], outside[pick]], generator, config.max_rotation_degrees, config.max_scale
        )
        if prior:
            scale_logits = network.forward_scales(batch.to(device))
            logits = scale_logits[0]
        else:
            logits = network(batch.to(device))
        pseudo_weight = 0.0
        if config.pseudo_label_weight and step >= warmup_steps:
            ramp = min(1.0, (step - warmup_steps + 1) / max(1, config.steps // 10))
            pseudo_weight = config.pseudo_label_weight * ramp
        loss = _weak_loss(logits, target.to(device), len(class_names), config, pseudo_weight)
        if config.outside_weight:
            background = torch.where(far == 1, 0, UNLABELLED).to(device)
            loss = loss + config.outside_weight * partial_cross_entropy(logits, background)
        if prior:
            prior.train_critic(scale_logits, step, config.steps)
            loss = loss + prior.segmenter_loss(scale_logits, loss)
        return loss

    def checkpoint(step: int) -> None:
        metadata = {
            "method": METHOD_NAME,
            "class_names": class_names,
            "config": config.as_dict(),
            "model_config": dict(network.config),
            "image_size": config.image_size,
            "normalisation": NORMALISATION,
            "step": step,
            "training_cases": case_names,
            "unpaired_mask_cases": [mask.case for mask in unpaired_masks or []],
        }
        extra = {"shape_prior": prior.state()} if prior else None
        save_checkpoint(out_path, network, optimizer, step, metadata, extra, generator)

    if stored is not None:
        restore_random_state(stored, generator)
    run_training(
        network,
        optimizer,
        compute_loss,
        config.steps,
        config.learning_rate,
        progress.part(0.06, 1.0),
        start_step=start_step,
        checkpoint=checkpoint,
        checkpoint_every=config.checkpoint_every,
    )


def _check_resumable(stored: dict, path: str, config: CohortConfig, class_names: list[str]) -> int:
    metadata = stored.get("metadata") or {}
    if metadata.get("method") != METHOD_NAME:
        raise WeakSegInputError(f"{path}: cannot resume: not a WeakSeg cohort model")
    if [name.lower() for name in metadata.get("class_names", [])] != [name.lower() for name in class_names]:
        raise WeakSegInputError(
            f"{path}: cannot resume: the model's classes {metadata.get('class_names')} differ from {class_names}"
        )
    stored_config = metadata.get("config", {})
    for name in ARCHITECTURE_SETTINGS:
        mine = config.as_dict()[name]
        if stored_config.get(name) != mine:
            raise WeakSegInputError(
                f"{path}: cannot resume: {name} is {stored_config.get(name)} in the model but {mine} now"
            )
    step = int(stored.get("step", 0))
    if step >= config.steps:
        raise WeakSegInputError(f"{path}: already trained for {step} steps; ask for more than {step} steps to resume")
    return step


# --------------------------------------------------------------------------- prediction


@torch.no_grad()
def _predict_resized(network: torch.nn.Module, slices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Softmax averaged over the four flips, on ``(Z, C, S, S)`` slices: ``(Z, K, S, S)``."""
    network.eval()
    outputs = []
    for start in range(0, len(slices), PREDICTION_BATCH):
        batch = slices[start : start + PREDICTION_BATCH].to(device)
        total = 0
        for dims in ((), (-1,), (-2,), (-2, -1)):
            flipped = batch.flip(dims) if dims else batch
            probabilities = F.softmax(network(flipped), dim=1)
            total = total + (probabilities.flip(dims) if dims else probabilities)
        outputs.append((total / 4).cpu())
    return torch.cat(outputs)


def _keep_largest_components(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Keep the largest 3D connected component of every foreground class; the rest -> background."""
    from skimage.measure import label as connected_components

    result = labels.copy()
    for code in range(1, num_classes):
        mask = labels == code
        if not mask.any():
            continue
        components = connected_components(mask, connectivity=mask.ndim)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[mask & (components != sizes.argmax())] = 0
    return result


def _check_channels(model: CohortModel, image: LoadedImage) -> None:
    if image.array.shape[0] != model.in_channels:
        source = f" ({model.path})" if model.path else ""
        raise WeakSegInputError(
            f"{image.path}: image has {image.array.shape[0]} channel(s) but the model{source} "
            f"was trained on {model.in_channels}-channel images"
        )


def _predict_with(
    network: torch.nn.Module, model: CohortModel, image: LoadedImage, largest_component: bool | None
) -> tuple[np.ndarray, np.ndarray]:
    slices = _prepare_slices(image, model.image_size)
    small = _predict_resized(network, slices, model.device)
    _, _, height, width = image.array.shape
    probabilities = resize_images(small, (height, width))
    probabilities = probabilities / probabilities.sum(dim=1, keepdim=True).clamp(min=1e-8)
    labels = probabilities.argmax(dim=1).numpy().astype(np.uint8)
    if model.config.largest_component if largest_component is None else largest_component:
        labels = _keep_largest_components(labels, model.num_classes)
    return labels, np.ascontiguousarray(probabilities.permute(1, 0, 2, 3).numpy().astype(np.float32))


def predict_volume(
    model: CohortModel, image: LoadedImage, progress: Progress = SILENT, largest_component: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Segment ``image`` with a cohort model, without scribbles.

    Args:
        largest_component: keep only the largest connected component of every foreground
            class in ``labels``; None takes the model's ``config.largest_component``.

    Returns:
        ``labels`` uint8 ``(Z, Y, X)`` (codes index ``model.class_names``) and
        ``probabilities`` float32 ``(K, Z, Y, X)``, both on the image's grid. The
        probabilities are the network's (flip-averaged) output, before the component filter.

    Raises:
        WeakSegInputError: the image's channel count differs from the model's.
    """
    _check_channels(model, image)
    progress.report(0.0, f"segmenting {Path(image.path).name}")
    result = _predict_with(model.network, model, image, largest_component)
    progress.report(1.0, "segmented")
    return result


def _codes_in_model(model: CohortModel, scribbles: Scribbles) -> np.ndarray:
    """Scribble codes translated to the model's codes by class name (255 stays 255)."""
    model_code = {name.lower(): code for code, name in enumerate(model.class_names)}
    unknown = [name for name in scribbles.class_names if name.lower() not in model_code]
    if unknown:
        raise WeakSegInputError(
            f"{scribbles.path}: class(es) {unknown} are not among the model's classes {model.class_names}"
            + (f" ({model.path})" if model.path else "")
        )
    table = np.full(256, UNLABELLED, dtype=np.uint8)
    for code, name in enumerate(scribbles.class_names):
        table[code] = model_code[name.lower()]
    return table[scribbles.labels]


def adapt_to_scribbles(
    model: CohortModel,
    image: LoadedImage,
    scribbles: Scribbles,
    steps: int = 60,
    progress: Progress = SILENT,
    learning_rate: float = 3e-4,
    pseudo_label_threshold: float = 0.9,
    pseudo_label_weight: float = 0.5,
    largest_component: bool | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fine-tune a copy of the cohort model on one volume's scribbles, then segment it.

    The loss is the balanced pCE on this volume's scribbles plus, on its unscribbled
    pixels, a cross-entropy towards the cohort model's own confident (> threshold)
    flip-averaged predictions, computed once before fine-tuning, and background beyond the
    scribbles' hull (the training prior, when the model used it). Batch norm statistics and
    dropout stay frozen (eval mode): one volume is too few slices to re-estimate them.
    ``model`` itself is not changed.

    Returns:
        as :func:`predict_volume`.

    Raises:
        WeakSegInputError: channel mismatch, scribbles on another grid, or a scribble
            class name that the model does not know.
    """
    _check_channels(model, image)
    if scribbles.labels.shape != image.shape_zyx:
        raise WeakSegInputError(f"{scribbles.path}: scribbles {scribbles.labels.shape} do not match image {image.shape_zyx}")
    codes = _codes_in_model(model, scribbles)
    size = model.image_size
    slices = _prepare_slices(image, size)
    targets = resize_labels(torch.from_numpy(codes.astype(np.int64)), (size, size))
    teacher = _predict_resized(model.network, slices, model.device)
    confidence, predicted = teacher.max(dim=1)
    pseudo = torch.where(
        (confidence > pseudo_label_threshold) & (targets == UNLABELLED), predicted, torch.full_like(predicted, UNLABELLED)
    )
    if model.config.outside_weight:
        far = _outside_scribbles(targets, model.config.outside_margin)
        pseudo = torch.where(far & (targets == UNLABELLED), 0, pseudo)
    network = copy.deepcopy(model.network)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    scribbled = torch.nonzero((targets != UNLABELLED).flatten(1).any(dim=1)).flatten()
    if not len(scribbled):
        raise WeakSegInputError(f"{scribbles.path}: no scribble survives resizing to the model's {size} px")
    num_classes = model.num_classes
    batch_size = min(len(slices), model.config.batch_size)

    def compute_loss(step: int) -> torch.Tensor:
        network.eval()  # frozen batch-norm statistics and no dropout, gradients still flow
        pick = torch.randperm(len(slices), generator=generator)[:batch_size]
        batch, (scribble_batch, pseudo_batch) = augment(
            slices[pick], [targets[pick], pseudo[pick]], generator, 10.0, 0.05
        )
        logits = network(batch.to(model.device))
        scribble_batch, pseudo_batch = scribble_batch.to(model.device), pseudo_batch.to(model.device)
        loss = partial_cross_entropy(logits, scribble_batch, balanced_class_weights(scribble_batch, num_classes))
        if pseudo_label_weight:
            weights = balanced_class_weights(pseudo_batch, num_classes)
            loss = loss + pseudo_label_weight * partial_cross_entropy(logits, pseudo_batch, weights)
        return loss

    if steps > 0:
        run_training(network, optimizer, compute_loss, steps, learning_rate, progress.part(0.0, 0.9))
    network.eval()
    result = _predict_with(network, model, image, largest_component)
    progress.report(1.0, "segmented")
    return result

