"""Training, loading and applying a ``shape-gan`` model (see :mod:`weakseg.methods.shape_gan`).

One model file holds the whole run: every network, the optimiser states, the pseudo labels
and their pixel weights, and where the run stands (``stage`` gan / rounds / done, the
round and the step). It is rewritten atomically every 100 steps and at the end of each
stage, with the random state, so ``--resume`` continues an interrupted run exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from weakseg.cases import list_cases
from weakseg.data import augment
from weakseg.engine import (check_resume, load_checkpoint, load_model_checkpoint, restore_random_state, run_training,
                            save_checkpoint)
from weakseg.errors import WeakSegInputError
from weakseg.inference import flip_averaged_softmax
from weakseg.io import read_image
from weakseg.methods.shape_gan import MODEL_KIND, ShapeGanSettings
from weakseg.methods.shape_gan_cycle import CycleGame, ShapeGanNetworks
from weakseg.methods.shape_gan_data import AuxiliaryMasks, Grid, grid_for, image_slices, mask_slices
from weakseg.methods.shape_gan_model import ShapeGanModel, clean_masks
from weakseg.methods.spec import TrainingRequest
from weakseg.models.unet import UNet2D
from weakseg.noisy_labels import agreement_weights, confidence_weights, noise_weighted_dice_loss
from weakseg.progress import SILENT, Progress

CHECKPOINT_EVERY = 100
GAN_SHARE = 0.6  # of the progress bar
DEFAULT_CLASSES = ["background", "foreground"]
# The settings of the GAN stage: a redone segmenter stage (:func:`retrain_segmenter`) keeps them.
GAN_SETTINGS = ("shape_model", "image_size", "channels", "gan_steps", "gan_learning_rate", "shape_weight", "batch_size",
                "plain_discriminator", "no_dgcc", "seed")


def fit_segmenter(segmenter: UNet2D, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                  settings: ShapeGanSettings, device: torch.device, generator: torch.Generator,
                  optimizer: torch.optim.Optimizer, progress: Progress = SILENT, start_step: int = 0,
                  checkpoint: Callable[[int], None] | None = None) -> None:
    """Train ``segmenter`` for one round on slices, labels ``(N, H, W)`` and pixel weights ``(N, H, W)``.

    Noise-weighted Dice (:func:`~weakseg.noisy_labels.noise_weighted_dice_loss`) with random
    flips, rotations and scaling; pixels rotated in from outside the slice weigh 0.
    """
    quantised = (weights.clamp(0, 1) * 100).round().long()

    def compute_loss(step: int) -> torch.Tensor:
        pick = torch.randint(len(images), (settings.batch_size,), generator=generator)
        batch, (batch_labels, batch_weights) = augment(images[pick], [labels[pick], quantised[pick]], generator)
        outside = batch_labels == 255
        batch_weights = torch.where(outside, torch.zeros_like(batch_weights), batch_weights).float() / 100
        batch_labels = torch.where(outside, torch.zeros_like(batch_labels), batch_labels)
        probabilities = F.softmax(segmenter(batch.to(device)), dim=1)
        return noise_weighted_dice_loss(probabilities, batch_labels.to(device), batch_weights.to(device))

    run_training(segmenter, optimizer, compute_loss, settings.round_steps, settings.learning_rate, progress,
                 start_step, checkpoint, CHECKPOINT_EVERY)


@torch.no_grad()
def generator_masks(networks: ShapeGanNetworks, images: torch.Tensor, dgcc: bool, device: torch.device) -> torch.Tensor:
    """The image-to-mask generator's foreground probabilities ``(N, H, W)`` (eval mode, on the CPU)."""
    networks.eval()
    return torch.cat([networks.masks(images[start:start + 16].to(device), dgcc).cpu()[:, 0]
                      for start in range(0, len(images), 16)])


def _training_images(data_dir: str, split: str | None, names: list[str] | None = None):
    """The cases, loaded images and the first image's grid of a run (``names``: exactly these cases)."""
    cases = list_cases(data_dir, split, require_scribbles=False)
    if names is not None:
        cases = [case for case in cases if case.name in set(names)]
        if len(cases) != len(names):
            raise WeakSegInputError(f"{data_dir}: does not hold every training image of the model ({len(names)})")
    loaded = [read_image(case.image_path) for case in cases]
    in_channels = loaded[0].array.shape[0]
    for image in loaded:
        if image.array.shape[0] != in_channels:
            raise WeakSegInputError(f"{image.path}: {image.array.shape[0]} channel(s), but {loaded[0].path} has "
                                    f"{in_channels}; every training image needs the same channels")
    return cases, loaded


class _Run:
    """One model file being written: the networks, where the run stands, what it saves."""

    def __init__(self, out_path: str, settings: ShapeGanSettings, metadata: dict, images: torch.Tensor,
                 grid: Grid, device: torch.device) -> None:
        in_channels = images.shape[1]
        torch.manual_seed(settings.seed)
        self.networks = ShapeGanNetworks(in_channels, settings.channels, grid, not settings.plain_discriminator)
        self.segmenter = UNet2D(in_channels, 2, settings.segmenter_channels)
        self.container = nn.ModuleDict({"networks": self.networks, "segmenter": self.segmenter}).to(device)
        self.out_path, self.settings, self.metadata, self.images, self.device = out_path, settings, metadata, images, device
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.state = {"stage": "gan", "round": 0, "step": 0}
        self.extra: dict = {}
        self.game: CycleGame | None = None

    def save(self, optimizer, step: int) -> None:
        self.state["step"] = step
        extra = {**self.extra, "game": self.game.state()} if self.state["stage"] == "gan" else self.extra
        save_checkpoint(self.out_path, self.container, optimizer, step, {**self.metadata, "state": dict(self.state)},
                        extra, self.generator)

    def start_rounds(self) -> None:
        """Enter the segmenter stage from a fresh, seeded segmenter and batch order, so that runs that differ
        only in the segmenter stage (``--plain-dice``) compare like with like."""
        seed = self.settings.seed + 1
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        fresh = UNet2D(self.images.shape[1], 2, self.settings.segmenter_channels)
        self.segmenter.load_state_dict(fresh.state_dict())
        self.state.update(stage="rounds", round=0, step=0)
        self.save(None, 0)

    def run_rounds(self, progress: Progress, resumed_optimizer: dict | None = None) -> None:
        """The segmenter rounds from where the run stands to the end."""
        settings, pseudo_labels = self.settings, self.extra["pseudo_labels"].long()
        while self.state["stage"] == "rounds":
            index = self.state["round"]
            optimizer = torch.optim.Adam(self.segmenter.parameters(), lr=settings.learning_rate)
            if self.state["step"] and resumed_optimizer is not None:
                optimizer.load_state_dict(resumed_optimizer)
            else:
                self.extra["weights"] = noise_weights(settings, index, self.extra, self.segmenter, self.images,
                                                      pseudo_labels, self.device).half()
            fit_segmenter(self.segmenter, self.images, pseudo_labels, self.extra["weights"].float(), settings,
                          self.device, self.generator, optimizer,
                          progress.part(index / settings.rounds, (index + 1) / settings.rounds), self.state["step"],
                          lambda step: self.save(optimizer, step))
            self.state.update(round=index + 1, stage="done" if index + 1 == settings.rounds else "rounds")
            self.save(None, 0)


def train(request: TrainingRequest) -> None:
    """``weakseg train DATA --method shape-gan (--shape-model ellipse | --unpaired-split S) --out MODEL``."""
    settings: ShapeGanSettings = request.settings
    class_names = list(request.class_names or DEFAULT_CLASSES)
    if len(class_names) != 2:
        raise WeakSegInputError(f"--classes {','.join(class_names)}: method shape-gan segments one structure; "
                                "give background and one class")
    device, progress = request.device, request.progress
    cases, loaded = _training_images(request.data_dir, request.split)
    grid = grid_for(loaded[0], settings.image_size)
    images = torch.cat([image_slices(image, grid) for image in loaded])
    unpaired = (mask_slices(request.unpaired_masks, grid, [case.name for case in cases])
                if request.unpaired_masks else None)
    auxiliary = AuxiliaryMasks(settings.shape_model, unpaired, grid)
    metadata = {"method": MODEL_KIND, "class_names": class_names, "config": settings.as_dict(),
                "grid": [grid.height, grid.width, grid.pixel_aspect], "in_channels": images.shape[1],
                "training_cases": [case.name for case in cases]}
    run = _Run(request.out_path, settings, metadata, images, grid, device)
    run.game = CycleGame(run.networks, images, auxiliary, not settings.no_dgcc, settings.batch_size,
                         settings.gan_learning_rate, device, run.generator, settings.shape_weight)
    resumed_optimizer = None
    if request.resume:
        payload = load_checkpoint(request.out_path, device)
        check_resume(payload, request.out_path, MODEL_KIND, class_names, settings.as_dict())
        run.container.load_state_dict(payload["model"])
        run.extra = payload["extra"]
        run.state = dict(payload["metadata"]["state"])
        restore_random_state(payload, run.generator)
        if run.state["stage"] == "gan":
            run.game.load_state(run.extra.pop("game"), payload["optimizer"])
        resumed_optimizer = payload["optimizer"]
    if run.state["stage"] == "gan":
        run_training(run.networks, run.game.optimizer, run.game.compute_loss, settings.gan_steps,
                     settings.gan_learning_rate, progress.part(0, GAN_SHARE), run.state["step"],
                     lambda step: run.save(run.game.optimizer, step), CHECKPOINT_EVERY)
        foreground = generator_masks(run.networks, images, not settings.no_dgcc, device)
        run.extra = {"pseudo_labels": torch.from_numpy(clean_masks(foreground.numpy() > 0.5)).to(torch.uint8),
                     "generator_foreground": foreground.half()}
        run.start_rounds()
        resumed_optimizer = None
    run.run_rounds(progress.part(GAN_SHARE, 1.0), resumed_optimizer)


def retrain_segmenter(source_path: str, out_path: str, data_dir: str, settings: ShapeGanSettings,
                      device: torch.device, progress: Progress = SILENT) -> None:
    """A new model file: the finished shape-gan run ``source_path`` with its segmenter stage redone under ``settings``.

    The GAN and its pseudo labels are kept; only the segmenter settings (rounds, steps,
    learning rate, ``plain_dice``) may differ. The segmenter starts from the same seeded
    weights and batch order as in the source run, so the two differ only by those settings.

    Raises:
        WeakSegInputError: not a finished shape-gan model, or GAN settings that differ.
    """
    payload, metadata = load_model_checkpoint(source_path, device, MODEL_KIND, "shape-gan")
    if (metadata.get("state") or {}).get("stage") != "done":
        raise WeakSegInputError(f"{source_path}: the shape-gan training did not finish")
    check_resume(payload, source_path, MODEL_KIND, list(metadata["class_names"]), settings.as_dict(), kept=GAN_SETTINGS)
    cases, loaded = _training_images(data_dir, None, list(metadata["training_cases"]))
    height, width, aspect = metadata["grid"]
    grid = Grid(int(height), int(width), float(aspect))
    images = torch.cat([image_slices(image, grid) for image in loaded])
    run = _Run(out_path, settings, {**metadata, "config": settings.as_dict()}, images, grid, device)
    run.container.load_state_dict(payload["model"])
    run.extra = {key: payload["extra"][key] for key in ("pseudo_labels", "generator_foreground")}
    run.start_rounds()
    run.run_rounds(progress)


def noise_weights(settings: ShapeGanSettings, round_index: int, extra: dict, segmenter: UNet2D, images: torch.Tensor,
                  pseudo_labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The pixel weights of a round: all 1 (plain Dice), the generator's confidence (round 1), or the agreement
    of the previous round's segmenter with the pseudo labels (:mod:`weakseg.noisy_labels`)."""
    if settings.plain_dice:
        return torch.ones(pseudo_labels.shape)
    if round_index == 0:
        return confidence_weights(extra["generator_foreground"].float())
    return agreement_weights(flip_averaged_softmax(segmenter, images, device)[:, 1], pseudo_labels)



def train_supervised(data_dir: str, split: str | None, settings: ShapeGanSettings, device: torch.device,
                     progress: Progress = SILENT) -> ShapeGanModel:
    """The reference: the same segmenter on the true masks (``<case>_label`` / ``_mask``) of the images.

    Plain Dice, ``rounds x round_steps`` steps in one run (as many as a shape-gan segmenter).

    Raises:
        WeakSegInputError: a selected image without a mask.
    """
    from dataclasses import replace

    from weakseg.methods.shape_gan_data import binary_mask
    from weakseg.data import resize_labels

    cases = list_cases(data_dir, split, require_scribbles=False)
    missing = [case.name for case in cases if not case.label_path]
    if missing:
        raise WeakSegInputError(f"{data_dir}: no mask for case(s) {', '.join(missing[:5])}")
    loaded = [read_image(case.image_path) for case in cases]
    grid = grid_for(loaded[0], settings.image_size)
    images = torch.cat([image_slices(image, grid) for image in loaded])
    labels = torch.cat([resize_labels(torch.from_numpy(binary_mask(case.label_path, image.reference).astype(np.int64)),
                                      (grid.height, grid.width)) for case, image in zip(cases, loaded)])
    torch.manual_seed(settings.seed)
    segmenter = UNet2D(images.shape[1], 2, settings.segmenter_channels).to(device)
    single_run = replace(settings, round_steps=settings.rounds * settings.round_steps)
    optimizer = torch.optim.Adam(segmenter.parameters(), lr=settings.learning_rate)
    fit_segmenter(segmenter, images, labels, torch.ones(labels.shape), single_run, device,
                  torch.Generator().manual_seed(settings.seed), optimizer, progress)
    return ShapeGanModel(segmenter.eval(), grid, list(DEFAULT_CLASSES), device)
