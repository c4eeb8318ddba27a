"""Training of the collaborative method on arrays: segmenter, classifier, fine-tuning rounds.

Works on slices already normalised and resized (:class:`CollaborativeArrays`), so the
benchmark can share stages between its rows and a caller can train without SimpleITK.
:class:`CollaborativeTrainer` holds the networks and runs the stages in order:

1. ``segmenter``: a 2D U-Net on the slices of the masked cases (cross-entropy + soft Dice);
2. ``classifier``: the (lesion-attentive or image-only) classifier on every slice with a
   diagnosis, lesion maps from the segmenter, diagnoses sampled evenly;
3. per round: ``round``: pseudo masks of the unmasked slices
   (:mod:`weakseg.methods.collaborative_pseudo`), then fine-tuning of the segmenter on
   half masked, half pseudo-masked batches, with the adversarial term (a least-squares
   critic, :class:`~weakseg.methods.adversarial.LeastSquaresCritic`, tells the lesion maps
   of masked slices from those of unmasked ones, and the segmenter learns to fool it);
   ``classifier``: the classifier refreshed on the new lesion maps.

Every part switches off through its setting (``classifier_steps=0``, ``refinement_weight=0``,
``rounds=0``, ``adversarial_weight=0``, ``image_only_classifier``, ``uniform_pseudo_weights``).
Augmentation is the eight flips/transposes of a square slice (exact for masks, maps and weights)
and a small intensity jitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn import functional as F

from weakseg.contract import UNLABELLED
from weakseg.engine import run_training
from weakseg.inference import flip_averaged_softmax
from weakseg.methods.adversarial import DISCRIMINATOR_LEARNING_RATE, LeastSquaresCritic
from weakseg.methods.collaborative_pseudo import class_attention, pseudo_masks, refine
from weakseg.models import AttentiveClassifier, UNet2D
from weakseg.progress import SILENT, Progress

CRITIC_SCALES = 3
# The fine-tuning rounds start from this share of the segmenter's learning rate.
ROUND_LEARNING_RATE_SHARE = 0.5


@dataclass
class CollaborativeArrays:
    """Training slices of a cohort, at the network's square size ``S``.

    Attributes:
        images: ``(N, C, S, S)`` float32, normalised.
        masks: ``(N, S, S)`` int64 class codes; :data:`~weakseg.contract.UNLABELLED` where no mask is used.
        masked: ``(N,)`` bool, slices whose case's mask is used.
        diagnosis: ``(N,)`` int64 diagnosis code of the slice's case, -1 when it has none.
        volume: ``(N,)`` int64 index of the case each slice comes from.
    """

    images: torch.Tensor
    masks: torch.Tensor
    masked: torch.Tensor
    diagnosis: torch.Tensor
    volume: torch.Tensor


def supervised_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice of the foreground classes, on ``(N, K, S, S)`` logits and ``(N, S, S)`` masks."""
    classes = logits.shape[1]
    probabilities = F.softmax(logits, dim=1)[:, 1:]
    truth = F.one_hot(masks.clamp(max=classes - 1), classes).permute(0, 3, 1, 2)[:, 1:].float()
    overlap = (probabilities * truth).sum(dim=(0, 2, 3))
    dice = (2 * overlap + 1.0) / (probabilities.sum(dim=(0, 2, 3)) + truth.sum(dim=(0, 2, 3)) + 1.0)
    return F.cross_entropy(logits, masks, ignore_index=UNLABELLED) + (1.0 - dice.mean())


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every pixel times its weight, divided by the weights' sum."""
    per_pixel = F.cross_entropy(logits, labels, reduction="none")
    return (per_pixel * weights).sum() / weights.sum().clamp(min=1.0)


class CollaborativeTrainer:
    """The networks of one collaborative run and its stages (see the module docstring).

    Args:
        arrays: the training slices.
        config: :class:`~weakseg.methods.collaborative.CollaborativeConfig`.
        num_classes: segmentation classes, background included.
        num_diagnoses: diagnoses the classifier tells apart (0: no classifier).
    """

    def __init__(self, arrays: CollaborativeArrays, config: Any, num_classes: int, num_diagnoses: int,
                 device: torch.device) -> None:
        torch.manual_seed(config.seed)
        self.arrays = arrays
        self.config = config
        self.device = device
        self.generator = torch.Generator().manual_seed(config.seed)
        channels = arrays.images.shape[1]
        self.segmenter = UNet2D(channels, num_classes, tuple(config.channels), config.dropout).to(device)
        self.classifier = None
        if num_diagnoses and config.classifier_steps and bool((arrays.diagnosis >= 0).any()):
            self.classifier = AttentiveClassifier(channels, num_diagnoses, tuple(config.classifier_channels),
                                                  attention=not config.image_only_classifier).to(device)
        self.critic = None
        if config.adversarial_weight > 0 and config.rounds:
            self.critic = LeastSquaresCritic(num_classes, CRITIC_SCALES, DISCRIMINATOR_LEARNING_RATE, device)

    # ------------------------------------------------------------------ helpers

    def _pick(self, pool: torch.Tensor, count: int) -> torch.Tensor:
        return pool[torch.randint(len(pool), (count,), generator=self.generator)]

    def _dihedral(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """One random flip/transpose of the square slices, applied alike to every ``(N, ..., S, S)`` tensor."""
        draws = torch.rand(3, generator=self.generator).tolist()
        if draws[0] < 0.5:
            tensors = [item.flip(-1) for item in tensors]
        if draws[1] < 0.5:
            tensors = [item.flip(-2) for item in tensors]
        if draws[2] < 0.5:
            tensors = [item.transpose(-1, -2) for item in tensors]
        return tensors

    def _jitter(self, images: torch.Tensor) -> torch.Tensor:
        count = images.shape[0]
        gain = 1 + 0.1 * torch.randn(count, 1, 1, 1, generator=self.generator)
        shift = 0.1 * torch.randn(count, 1, 1, 1, generator=self.generator)
        return images * gain + shift

    def masked_indices(self) -> torch.Tensor:
        return torch.nonzero(self.arrays.masked).flatten()

    def unmasked_indices(self) -> torch.Tensor:
        return torch.nonzero(~self.arrays.masked).flatten()

    def segmenter_probabilities(self, indices: torch.Tensor) -> torch.Tensor:
        """The segmenter's flip-averaged softmax ``(n, K, S, S)`` on the CPU."""
        return flip_averaged_softmax(self.segmenter, self.arrays.images[indices], self.device)

    @torch.no_grad()
    def classify(self, images: torch.Tensor, lesion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagnosis probabilities ``(n, D)`` and class activation maps ``(n, D, h, w)`` on the CPU."""
        self.classifier.eval()
        probabilities, maps = [], []
        for start in range(0, len(images), 32):
            logits, activation = self.classifier(images[start:start + 32].to(self.device),
                                                 lesion[start:start + 32].to(self.device))
            probabilities.append(F.softmax(logits, dim=1).cpu())
            maps.append(activation.cpu())
        return torch.cat(probabilities), torch.cat(maps)

    # ------------------------------------------------------------------ stages

    def train_segmenter(self, progress: Progress = SILENT, start_step: int = 0, optimizer_state: dict | None = None,
                        checkpoint: Callable[[int, Any], None] | None = None) -> None:
        """Stage 1: the segmenter on the masked slices (``config.steps`` steps)."""
        config = self.config
        pool = self.masked_indices()
        optimizer = torch.optim.AdamW(self.segmenter.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)

        def loss(_step: int) -> torch.Tensor:
            pick = self._pick(pool, config.batch_size)
            images, masks = self._dihedral([self.arrays.images[pick], self.arrays.masks[pick]])
            return supervised_loss(self.segmenter(self._jitter(images).to(self.device)), masks.to(self.device))

        run_training(self.segmenter, optimizer, loss, config.steps, config.learning_rate, progress, start_step,
                     (lambda done: checkpoint(done, optimizer)) if checkpoint else None, config.checkpoint_every)

    def train_classifier(self, steps: int, progress: Progress = SILENT) -> None:
        """The classifier on every slice with a diagnosis, the segmenter's lesion maps as attention."""
        config = self.config
        pool = torch.nonzero(self.arrays.diagnosis >= 0).flatten()
        lesion = 1.0 - self.segmenter_probabilities(pool)[:, :1]
        codes = self.arrays.diagnosis[pool]
        by_diagnosis = [torch.nonzero(codes == code).flatten() for code in torch.unique(codes)]
        optimizer = torch.optim.AdamW(self.classifier.parameters(), lr=config.classifier_learning_rate,
                                      weight_decay=config.weight_decay)

        def loss(_step: int) -> torch.Tensor:
            groups = torch.randint(len(by_diagnosis), (config.batch_size,), generator=self.generator)
            pick = torch.stack([self._pick(by_diagnosis[group], 1)[0] for group in groups.tolist()])
            images, maps = self._dihedral([self.arrays.images[pool[pick]], lesion[pick]])
            logits, _ = self.classifier(self._jitter(images).to(self.device), maps.to(self.device))
            return F.cross_entropy(logits, codes[pick].to(self.device))

        run_training(self.classifier, optimizer, loss, steps, config.classifier_learning_rate, progress)

    def round_pseudo_masks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The unmasked slices' indices, pseudo masks ``(n, S, S)`` and pixel weights ``(n, S, S)``."""
        config = self.config
        indices = self.unmasked_indices()
        probabilities = self.segmenter_probabilities(indices)
        attention, confidence = None, None
        if self.classifier is not None:
            diagnosis, maps = self.classify(self.arrays.images[indices], 1.0 - probabilities[:, :1])
            if config.refinement_weight > 0:
                attention = class_attention(maps, diagnosis, tuple(probabilities.shape[-2:]))
            known = self.arrays.diagnosis[indices]
            sure = torch.where(known >= 0, diagnosis.gather(1, known.clamp(min=0)[:, None])[:, 0],
                               diagnosis.max(dim=1).values)
            confidence = 0.5 + 0.5 * sure
        refined = refine(probabilities, attention, config.refinement_weight)
        labels, weights = pseudo_masks(refined, None if config.uniform_pseudo_weights else confidence,
                                       config.largest_component)
        if config.uniform_pseudo_weights:
            weights = torch.ones_like(weights)
        return indices, labels, weights

    def fine_tune_round(self, progress: Progress = SILENT) -> None:
        """One semi-supervised round: pseudo masks, then ``round_steps`` steps on masked + pseudo-masked slices."""
        config = self.config
        masked = self.masked_indices()
        indices, labels, weights = self.round_pseudo_masks()
        half = max(1, config.batch_size // 2)
        rate = config.learning_rate * ROUND_LEARNING_RATE_SHARE
        optimizer = torch.optim.AdamW(self.segmenter.parameters(), lr=rate, weight_decay=config.weight_decay)

        def loss(step: int) -> torch.Tensor:
            pick_masked = self._pick(masked, half)
            pick_pseudo = torch.randint(len(indices), (max(1, config.batch_size - half),), generator=self.generator)
            images, masks = self._dihedral([self.arrays.images[pick_masked], self.arrays.masks[pick_masked]])
            pseudo_images, pseudo_labels, pseudo_weights = self._dihedral(
                [self.arrays.images[indices[pick_pseudo]], labels[pick_pseudo], weights[pick_pseudo]])
            logits = self.segmenter(self._jitter(torch.cat([images, pseudo_images])).to(self.device))
            total = supervised_loss(logits[:half], masks.to(self.device)) + config.pseudo_weight * weighted_cross_entropy(
                logits[half:], pseudo_labels.to(self.device), pseudo_weights.to(self.device))
            if self.critic is not None:
                maps = _pyramid(F.softmax(logits, dim=1))
                total = total + config.adversarial_weight * self.critic.fooling_loss([item[half:] for item in maps])
                self.critic.critic_step([item[:half].detach() for item in maps],
                                        [item[half:].detach() for item in maps], step, config.round_steps)
            return total

        run_training(self.segmenter, optimizer, loss, config.round_steps, rate, progress)

    # ------------------------------------------------------------------ the whole run

    def stages(self) -> list[tuple[str, Callable[[Progress], None]]]:
        """The stages after the segmenter's, in order: classifier, then per round fine-tuning and classifier refresh."""
        config = self.config
        result: list[tuple[str, Callable[[Progress], None]]] = []
        if self.classifier is not None:
            result.append(("classifier", lambda part: self.train_classifier(config.classifier_steps, part)))
        if not len(self.unmasked_indices()):
            return result
        for number in range(1, config.rounds + 1):
            result.append((f"fine-tuning round {number}", self.fine_tune_round))
            if self.classifier is not None and config.classifier_round_steps:
                result.append((f"classifier after round {number}",
                               lambda part: self.train_classifier(config.classifier_round_steps, part)))
        return result

    def state(self) -> dict:
        """The classifier's and critic's states, for checkpoints (plain tensors and values)."""
        return {"classifier": self.classifier.state_dict() if self.classifier is not None else None,
                "critic": self.critic.state() if self.critic is not None else None}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` when a run resumes."""
        if self.classifier is not None and state.get("classifier") is not None:
            self.classifier.load_state_dict(state["classifier"])
        if self.critic is not None and state.get("critic") is not None:
            self.critic.load_state(state["critic"])


def _pyramid(maps: torch.Tensor) -> list[torch.Tensor]:
    """Softmax maps at half size and :data:`CRITIC_SCALES` successive halvings, finest first (the critic's input)."""
    current = F.avg_pool2d(maps, 2)
    result = [current]
    for _ in range(CRITIC_SCALES - 1):
        current = F.avg_pool2d(current, 2)
        result.append(current)
    return result
