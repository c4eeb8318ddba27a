"""Training, loading and applying a ``shape-gan`` model (see :mod:`weakseg.methods.shape_gan`).

One model file holds the whole run: every network, the optimiser states, the pseudo labels
and their pixel weights, and where the run stands (``stage`` gan / rounds / done, the
round and the step). It is rewritten atomically every 100 steps and at the end of each
stage, with the random state, so ``--resume`` continues an interrupted run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from weakseg.inference import flip_averaged_softmax, to_image_grid
from weakseg.io import LoadedImage, read_image
from weakseg.methods.shape_gan import MODEL_KIND, ShapeGanSettings
from weakseg.methods.shape_gan_cycle import CycleGame, ShapeGanNetworks
from weakseg.methods.shape_gan_data import AuxiliaryMasks, Grid, grid_for, image_slices, mask_slices
from weakseg.methods.spec import TrainingRequest
from weakseg.models.unet import UNet2D
from weakseg.noisy_labels import agreement_weights, confidence_weights, noise_weighted_dice_loss
from weakseg.progress import SILENT, Progress

CHECKPOINT_EVERY = 100
GAN_SHARE = 0.6  # of the progress bar
DEFAULT_CLASSES = ["background", "foreground"]


@dataclass
class ShapeGanModel:
    """A trained segmenter with what prediction needs."""

    segmenter: UNet2D
    grid: Grid
    class_names: list[str]
    device: torch.device


def clean_masks(foreground: np.ndarray) -> np.ndarray:
    """Per slice of bool ``(N, H, W)``: the largest connected component with its holes filled."""
    from scipy.ndimage import binary_fill_holes
    from skimage.measure import label as connected_components

    result = np.zeros_like(foreground, dtype=bool)
    for index, mask in enumerate(foreground):
        if not mask.any():
            continue
        components = connected_components(mask, connectivity=2)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[index] = binary_fill_holes(components == sizes.argmax())
    return result


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


def train(request: TrainingRequest) -> None:
    """``weakseg train DATA --method shape-gan (--shape-model ellipse | --unpaired-split S) --out MODEL``."""
    settings: ShapeGanSettings = request.settings
    class_names = list(request.class_names or DEFAULT_CLASSES)
    if len(class_names) != 2:
        raise WeakSegInputError(f"--classes {','.join(class_names)}: method shape-gan segments one structure; "
                                "give background and one class")
    device, progress = request.device, request.progress
    cases = list_cases(request.data_dir, request.split, require_scribbles=False)
    loaded = [read_image(case.image_path) for case in cases]
    grid = grid_for(loaded[0], settings.image_size)
    in_channels = loaded[0].array.shape[0]
    for image in loaded:
        if image.array.shape[0] != in_channels:
            raise WeakSegInputError(f"{image.path}: {image.array.shape[0]} channel(s), but {loaded[0].path} has "
                                    f"{in_channels}; every training image needs the same channels")
    images = torch.cat([image_slices(image, grid) for image in loaded])
    unpaired = (mask_slices(request.unpaired_masks, grid, [case.name for case in cases])
                if request.unpaired_masks else None)
    auxiliary = AuxiliaryMasks(settings.shape_model, unpaired, grid)

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    networks = ShapeGanNetworks(in_channels, settings.channels, grid, not settings.plain_discriminator).to(device)
    segmenter = UNet2D(in_channels, 2, settings.segmenter_channels).to(device)
    container = nn.ModuleDict({"networks": networks, "segmenter": segmenter})
    game = CycleGame(networks, images, auxiliary, not settings.no_dgcc, settings.batch_size,
                     settings.gan_learning_rate, device, generator)
    metadata = {"method": MODEL_KIND, "class_names": class_names, "config": settings.as_dict(),
                "grid": [grid.height, grid.width, grid.pixel_aspect], "in_channels": in_channels,
                "training_cases": [case.name for case in cases]}
    state = {"stage": "gan", "round": 0, "step": 0}
    extra: dict = {}
    resumed_optimizer = None
    if request.resume:
        payload = load_checkpoint(request.out_path, device)
        check_resume(payload, request.out_path, MODEL_KIND, class_names, settings.as_dict())
        container.load_state_dict(payload["model"])
        extra = payload["extra"]
        state = dict(payload["metadata"]["state"])
        restore_random_state(payload, generator)
        if state["stage"] == "gan":
            game.load_state(extra["game"], payload["optimizer"])
        resumed_optimizer = payload["optimizer"]

    def save(optimizer, step: int) -> None:
        state["step"] = step
        save_checkpoint(request.out_path, container, optimizer, step, {**metadata, "state": dict(state)},
                        {**extra, "game": game.state()} if state["stage"] == "gan" else extra, generator)

    if state["stage"] == "gan":
        run_training(networks, game.optimizer, game.compute_loss, settings.gan_steps, settings.gan_learning_rate,
                     progress.part(0, GAN_SHARE), state["step"], lambda step: save(game.optimizer, step),
                     CHECKPOINT_EVERY)
        foreground = generator_masks(networks, images, not settings.no_dgcc, device)
        extra = {"pseudo_labels": torch.from_numpy(clean_masks(foreground.numpy() > 0.5)).to(torch.uint8),
                 "generator_foreground": foreground.half()}
        state.update(stage="rounds", round=0)
        resumed_optimizer = None
        save(None, 0)
    pseudo_labels = extra["pseudo_labels"].long()
    rounds = progress.part(GAN_SHARE, 1.0)
    while state["stage"] == "rounds":
        index = state["round"]
        optimizer = torch.optim.Adam(segmenter.parameters(), lr=settings.learning_rate)
        if state["step"] and resumed_optimizer is not None:
            optimizer.load_state_dict(resumed_optimizer)
        else:
            extra["weights"] = noise_weights(settings, index, extra, segmenter, images, pseudo_labels, device).half()
        fit_segmenter(segmenter, images, pseudo_labels, extra["weights"].float(), settings, device, generator,
                      optimizer, rounds.part(index / settings.rounds, (index + 1) / settings.rounds), state["step"],
                      lambda step: save(optimizer, step))
        state.update(round=index + 1, stage="done" if index + 1 == settings.rounds else "rounds")
        save(None, 0)


def noise_weights(settings: ShapeGanSettings, round_index: int, extra: dict, segmenter: UNet2D, images: torch.Tensor,
                  pseudo_labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The pixel weights of a round: all 1 (plain Dice), the generator's confidence (round 1), or the agreement
    of the previous round's segmenter with the pseudo labels (:mod:`weakseg.noisy_labels`)."""
    if settings.plain_dice:
        return torch.ones(pseudo_labels.shape)
    if round_index == 0:
        return confidence_weights(extra["generator_foreground"].float())
    return agreement_weights(flip_averaged_softmax(segmenter, images, device)[:, 1], pseudo_labels)


def load_model(path: str, device: torch.device, payload: dict | None = None) -> ShapeGanModel:
    """The segmenter of a ``shape-gan`` model file (see :func:`weakseg.apply.load_model`).

    Raises:
        WeakSegInputError: not a shape-gan model, or a run that has not finished.
    """
    payload, metadata = load_model_checkpoint(path, device, MODEL_KIND, "shape-gan", payload)
    if (metadata.get("state") or {}).get("stage") != "done":
        raise WeakSegInputError(f"{path}: the shape-gan training did not finish; continue it with weakseg train "
                                "... --resume")
    settings = ShapeGanSettings.from_dict(metadata["config"])
    segmenter = UNet2D(int(metadata["in_channels"]), 2, settings.segmenter_channels)
    prefix = "segmenter."
    segmenter.load_state_dict({key[len(prefix):]: value for key, value in payload["model"].items()
                               if key.startswith(prefix)})
    height, width, aspect = metadata["grid"]
    return ShapeGanModel(segmenter.to(device).eval(), Grid(int(height), int(width), float(aspect)),
                         list(metadata["class_names"]), device)


def predict_image(model: ShapeGanModel, image: LoadedImage, progress: Progress = SILENT) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(Z, Y, X)`` uint8 and probabilities ``(2, Z, Y, X)`` of ``image``, slice by slice.

    Flip-averaged softmax on the grid, resized back to the image; per slice the largest
    component, holes filled (one structure, in one piece).
    """
    from weakseg.inference import check_channels

    check_channels(model.segmenter.config["in_channels"], image.array.shape[0], image.path)
    slices = image_slices(image, model.grid)
    probabilities = to_image_grid(flip_averaged_softmax(model.segmenter, slices, model.device), image.shape_zyx[1:], 1e-6)
    progress.report(1.0, "predicted")
    labels = clean_masks(probabilities[1] > 0.5).astype(np.uint8)
    return labels, probabilities


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
