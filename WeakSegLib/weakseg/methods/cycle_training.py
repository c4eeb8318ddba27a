"""Training a ``cycle`` model (see :mod:`weakseg.methods.cycle`): classifier, translation game, masks, segmenter.

One model file holds the whole run: every network, the optimiser states, the CAMs and the
pseudo masks, and where the run stands (``stage`` classifier / gan / segmenter / done and
the step). It is rewritten atomically every ``checkpoint_every`` steps of the game and of
the segmenter and after every stage, with the random state, so ``--resume`` continues an
interrupted run exactly (an interrupted classifier stage, the shortest, is redone).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from weakseg.data import Normalisation, augment, training_intensities
from weakseg.engine import check_resume, load_checkpoint, restore_random_state, run_training, save_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.losses import partial_cross_entropy_and_dice
from weakseg.methods.cam import CamClassifier
from weakseg.methods.cycle import MODEL_KIND, CycleSettings
from weakseg.methods.cycle_game import TranslationGame, TranslationNetworks
from weakseg.methods.cycle_masks import (fused_scores, guide_maps, lesion_probabilities, mask_fusion, pseudo_labels,
                                         slice_cams, translate)
from weakseg.methods.cycle_model import CycleModel
from weakseg.methods.imagelabel_pipeline import (LabelledVolume, _balanced_batch, _labelled_slices, _train_classifier,
                                                 read_labelled_volumes)
from weakseg.methods.spec import TrainingRequest
from weakseg.models import UNet2D
from weakseg.progress import SILENT, Progress
from weakseg.weak_labels import check_class_names

STAGES = ("classifier", "gan", "segmenter", "done")
SHARES = {"classifier": (0.0, 0.15), "gan": (0.15, 0.75), "segmenter": (0.8, 1.0)}


class _Run:
    """One run: the networks, the training slices, where the run stands and what it saves."""

    def __init__(self, settings: CycleSettings, class_names: list[str], slices: torch.Tensor, presence: torch.Tensor,
                 image_channels: int, intensities: Normalisation, device: torch.device,
                 out_path: str | os.PathLike | None, metadata: dict) -> None:
        torch.manual_seed(settings.seed)
        classifier = CamClassifier(slices.shape[1], 1, settings.classifier_channels, settings.cam_top_fraction)
        self.translation = TranslationNetworks(image_channels, settings.generator_channels)
        segmenter = UNet2D(image_channels, 2, settings.segmenter_channels, settings.dropout)
        self.container = nn.ModuleDict({"classifier": classifier, "translation": self.translation,
                                        "segmenter": segmenter}).to(device)
        self.model = CycleModel(classifier, self.translation.to_healthy, segmenter, list(class_names), settings, device,
                                intensities)
        self.settings, self.slices, self.presence, self.device = settings, slices, presence, device
        self.images = slices[:, :image_channels]
        self.lesion = torch.nonzero(presence[:, 0] > 0)[:, 0]
        self.healthy = torch.nonzero(presence[:, 0] == 0)[:, 0]
        self.out_path, self.metadata = out_path, metadata
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.state = {"stage": "classifier", "step": 0}
        self.extra: dict = {}
        self.game: TranslationGame | None = None
        self.resumed_optimizer: dict | None = None

    def save(self, optimizer, step: int) -> None:
        """Rewrite the model file (when there is one) with where the run stands."""
        self.state["step"] = step
        if self.out_path is None:
            return
        extra = {**self.extra, "game": self.game.state()} if self.state["stage"] == "gan" else self.extra
        save_checkpoint(self.out_path, self.container, optimizer, step, {**self.metadata, "state": dict(self.state)},
                        extra, self.generator)

    def enter(self, stage: str) -> None:
        """Start ``stage`` from seeded random streams and save, so a resumed run starts it alike."""
        seed = self.settings.seed + STAGES.index(stage)
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        self.state["stage"] = stage
        self.save(None, 0)

    def make_game(self) -> None:
        self.game = TranslationGame(self.translation, self.model.classifier, self.settings, self.images,
                                    self.extra["cams"].float(), self.lesion, self.healthy, self.device, self.generator)

    def resume(self) -> None:
        """Load the run stored in the model file and continue where it stands."""
        payload = load_checkpoint(self.out_path, self.device)
        check_resume(payload, self.out_path, MODEL_KIND, self.model.class_names, self.settings.as_dict(),
                     former={"normalisation": "volume"})
        self.state = dict(payload["metadata"]["state"])
        if self.state["stage"] == "done":
            raise WeakSegInputError(f"{self.out_path}: the run is already complete; nothing to resume")
        self.container.load_state_dict(payload["model"])
        self.extra = dict(payload["extra"] or {})
        restore_random_state(payload, self.generator)
        if self.state["stage"] == "gan":
            self.make_game()
            self.game.load_state(self.extra.pop("game"), payload["optimizer"])
        self.resumed_optimizer = payload["optimizer"] if self.state["stage"] == "segmenter" else None

    def run(self, progress: Progress) -> CycleModel:
        """Every stage from where the run stands to the end."""
        settings = self.settings
        if self.state["stage"] == "classifier":
            _train_classifier(self.model, self.slices, self.presence, progress.part(*SHARES["classifier"]))
            self.model.classifier.eval()
            self.extra["cams"] = guide_maps(slice_cams(self.model.classifier, self.slices, settings.cam_scales)[1],
                                            not settings.no_cam_guide).half()
            self.make_game()
            self.enter("gan")
        if self.state["stage"] == "gan":
            run_training(self.translation, self.game.optimizer, self.game.compute_loss, settings.gan_steps,
                         settings.gan_learning_rate, progress.part(*SHARES["gan"]), self.state["step"],
                         lambda step: self.save(self.game.optimizer, step), settings.checkpoint_every)
            progress.report(SHARES["gan"][1], "pseudo masks from the healthy translations")
            self.extra["pseudo_labels"] = self._pseudo_labels().to(torch.uint8)
            self.enter("segmenter")
            self.resumed_optimizer = None
        if self.state["stage"] == "segmenter":
            self._train_segmenter(progress.part(*SHARES["segmenter"]))
            self.state["stage"] = "done"
            self.save(None, settings.segmenter_steps)
        self.model.segmenter.eval()
        return self.model

    def _pseudo_labels(self) -> torch.Tensor:
        """Labels ``(N, S, S)`` of every training slice: masks of the lesion slices, background elsewhere."""
        guides = self.extra["cams"].float()
        translated = translate(self.translation.to_healthy, self.images, guides, self.device)
        fusion = mask_fusion(self.settings.cam_fusion, not self.settings.no_cam_guide)
        scores = fused_scores(self.images, translated, guides, fusion)
        probability = lesion_probabilities(self.images, scores, self.presence[:, 0].numpy() > 0, self.settings.crf)
        return pseudo_labels(probability)

    def _train_segmenter(self, progress: Progress) -> None:
        settings, segmenter = self.settings, self.model.segmenter
        labels = self.extra["pseudo_labels"].long()
        optimizer = torch.optim.AdamW(segmenter.parameters(), lr=settings.learning_rate,
                                      weight_decay=settings.weight_decay)
        if self.state["step"] and self.resumed_optimizer is not None:
            optimizer.load_state_dict(self.resumed_optimizer)

        def compute_loss(step: int) -> torch.Tensor:
            picks = _balanced_batch(self.lesion, self.healthy, settings.batch_size, self.generator)
            batch, (batch_labels,) = augment(self.images[picks], [labels[picks]], self.generator)
            return partial_cross_entropy_and_dice(segmenter(batch.to(self.device)), batch_labels.to(self.device),
                                                  settings.dice_weight)

        progress.report(0.0, "training the segmentation network")
        run_training(segmenter, optimizer, compute_loss, settings.segmenter_steps, settings.learning_rate, progress,
                     self.state["step"], lambda step: self.save(optimizer, step), settings.checkpoint_every)


def train_cycle_model(volumes: Sequence[LabelledVolume], class_names: list[str], settings: CycleSettings | None = None,
                      progress: Progress = SILENT, device: torch.device | str = "cpu",
                      out_path: str | os.PathLike | None = None, resume: bool = False) -> CycleModel:
    """Train a ``cycle`` model on volumes with slice labels (module docstring); returns it.

    Raises:
        WeakSegInputError: not exactly background and one class, inconsistent channels, no lesion or
            no healthy slice; on resume, a missing or foreign model file, other classes or settings,
            or a finished run.
        CancelledError: when ``progress`` reports a cancellation.
    """
    settings = settings or CycleSettings()
    check_class_names(class_names, "cycle training")
    if len(class_names) != 2:
        raise WeakSegInputError(f"--classes {','.join(class_names)}: method cycle segments one lesion class; "
                                "give background and one class")
    settings.check()
    if resume and out_path is None:
        raise WeakSegInputError("resuming cycle training needs the model file to resume from")
    device = torch.device(device)
    intensities = training_intensities([np.asarray(volume.array) for volume in volumes], settings.normalisation)
    slices, presence, _ = _labelled_slices(volumes, class_names, settings.image_size, settings.mirror_excess,
                                           intensities)
    image_channels = slices.shape[1] // (2 if settings.mirror_excess else 1)
    metadata = {"method": MODEL_KIND, "class_names": list(class_names), "config": settings.as_dict(),
                "in_channels": image_channels, "training_images": [volume.name for volume in volumes],
                "intensities": intensities.as_dict() if intensities is not None else None}
    run = _Run(settings, class_names, slices, presence, image_channels, intensities, device, out_path, metadata)
    if resume:
        run.resume()
    return run.run(progress)


def train(request: TrainingRequest) -> None:
    """``weakseg train DATA --method cycle --image-labels CSV --out MODEL`` (:class:`~weakseg.methods.spec.TrainingRequest`)."""
    volumes, class_names = read_labelled_volumes(request, "cycle")
    train_cycle_model(volumes, class_names, request.settings, request.progress, request.device, request.out_path,
                      request.resume)

