"""Multi-scale adversarial shape prior from unpaired masks (MAAG; Valvano et al., TMI 2021).

Scribbles say *where* the structures are; they say little about their *shape*, so a
network trained on scribbles alone leaks into the background and breaks thin rings such
as the myocardium. Here a :class:`~weakseg.models.MultiScaleDiscriminator` learns, from
unpaired masks, what real segmentations look like at every scale, and the segmenter
(:class:`~weakseg.models.AttentionUNet2D`) is trained to fool it with the segmentations of
all its decoder levels. Because those segmentations also gate the decoder features, the
adversarial signal shapes the attention maps.

The game is least-squares (LSGAN; Mao et al. 2017). Weights, starting from the paper's:

* the supervised term is class-balanced partial cross-entropy on the scribbles, with the
  class weights recomputed for every batch (:func:`weakseg.losses.balanced_class_weights`);
* the adversarial term of the segmenter is rescaled at every step so that it weighs
  ``adversarial_weight`` times the supervised term's current value: a dynamic weighting
  that keeps the two terms balanced while the supervised loss falls by orders of
  magnitude. The paper starts from 0.2; on ACDC val 1.0 was needed (the method's default,
  :data:`weakseg.methods.cohort.METHOD_SETTINGS` says why);
* the critic uses Adam with learning rate 1e-4 (the paper's; :data:`DISCRIMINATOR_LEARNING_RATE`)
  and the segmenter's polynomial decay; the segmenter's own rate is its config's.

Real masks enter the critic as one-hot maps averaged down to each scale; generated ones as
softmax probabilities at each decoder scale.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from weakseg.engine import poly_learning_rate
from weakseg.losses import dynamically_weighted_loss, least_squares_discriminator_loss, least_squares_generator_loss
from weakseg.models import MultiScaleDiscriminator, SqueezeMultiScaleDiscriminator

DISCRIMINATOR_LEARNING_RATE = 1e-4
# The published schedule (authors' code): 450 epochs, a triangular cyclic rate between 0
# and the base rate with a half cycle of 20 epochs, divided by (1 + 1e-4 x epoch).
PAPER_EPOCHS = 450
PAPER_HALF_CYCLE_EPOCHS = 20
PAPER_EPOCH_DECAY = 1e-4
PAPER_CRITIC_WEIGHT = 0.1


def mask_pyramid(labels: torch.Tensor, num_classes: int, scale_count: int) -> list[torch.Tensor]:
    """One-hot ``(N, K, H, W)`` of class codes ``(N, H, W)``, then 2x2-averaged per scale, finest first."""
    current = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()
    pyramid = [current]
    for _ in range(scale_count - 1):
        current = F.avg_pool2d(current, 2)
        pyramid.append(current)
    return pyramid


def _flip_randomly(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if torch.rand(1, generator=generator).item() < 0.5:
        labels = labels.flip(-1)
    if torch.rand(1, generator=generator).item() < 0.5:
        labels = labels.flip(-2)
    return labels


class LeastSquaresCritic:
    """A multi-scale least-squares critic with its own Adam optimiser (Mao et al., LSGAN 2017).

    The shared half of every adversarial term here: the segmenter's loss against the frozen
    critic, one critic step on real vs (detached) fake maps with a poly-decayed learning rate,
    and the state a checkpoint stores.

    Args:
        num_classes, scale_count: channels and scales of the maps it judges.
        learning_rate: the critic's initial learning rate.
        width: channels of the critic's finest block (:class:`~weakseg.models.MultiScaleDiscriminator`).
    """

    def __init__(self, num_classes: int, scale_count: int, learning_rate: float, device: torch.device,
                 width: int = 32) -> None:
        self.learning_rate = learning_rate
        self.discriminator = MultiScaleDiscriminator(num_classes, scale_count, width).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=learning_rate, betas=(0.5, 0.999))

    def fooling_loss(self, fake: list[torch.Tensor]) -> torch.Tensor:
        """How far ``fake`` maps score from "real", with gradients to the maps only (the critic is frozen)."""
        self.discriminator.requires_grad_(False)
        loss = least_squares_generator_loss(self.discriminator(fake))
        self.discriminator.requires_grad_(True)
        return loss

    def critic_step(self, real: list[torch.Tensor], fake: list[torch.Tensor], step: int, total_steps: int) -> float:
        """One optimiser step of the critic: ``real`` maps towards 1, ``fake`` (detached by the caller) towards 0."""
        for group in self.optimizer.param_groups:
            group["lr"] = poly_learning_rate(self.learning_rate, step, total_steps)
        loss = least_squares_discriminator_loss(self.discriminator(real), self.discriminator(fake))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state(self) -> dict:
        """Weights and optimiser state, for checkpoints (plain tensors: ``weights_only`` loads them)."""
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` when a run resumes."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])


class AdversarialShapePrior(LeastSquaresCritic):
    """The critic, its optimiser and the unpaired masks; one object per training run.

    Args:
        masks: int64 ``(M, S, S)`` unpaired mask slices at the training image size.
        num_classes, scale_count: of the segmenter's :meth:`forward_scales` output.
        adversarial_weight: the segmenter's adversarial term relative to its supervised term.
    """

    def __init__(
        self,
        masks: torch.Tensor,
        num_classes: int,
        scale_count: int,
        adversarial_weight: float,
        device: torch.device,
        generator: torch.Generator,
    ) -> None:
        super().__init__(num_classes, scale_count, DISCRIMINATOR_LEARNING_RATE, device)
        self.masks = masks
        self.num_classes = num_classes
        self.adversarial_weight = adversarial_weight
        self.device = device
        self.generator = generator

    def segmenter_loss(self, scale_logits: list[torch.Tensor], supervised_loss: torch.Tensor,
                       average: Callable[[torch.Tensor], torch.Tensor] = lambda value: value) -> torch.Tensor:
        """The segmenter's adversarial term, scaled to ``adversarial_weight`` x the supervised term.

        ``average`` turns a process's value into the mean over the processes of a data-parallel
        run (:meth:`weakseg.distributed.TrainingContext.average`), so the scale is the global batch's.
        """
        loss = self.fooling_loss([F.softmax(logits, dim=1) for logits in scale_logits])
        scale = self.adversarial_weight * average(supervised_loss.detach()) / average(loss.detach()).clamp(min=1e-6)
        return scale * loss

    def train_critic(self, scale_logits: list[torch.Tensor], step: int, total_steps: int) -> float:
        """One optimiser step of the critic on (detached) generated vs unpaired real masks."""
        count = scale_logits[0].shape[0]
        pick = torch.randint(len(self.masks), (count,), generator=self.generator)
        real = mask_pyramid(_flip_randomly(self.masks[pick], self.generator).to(self.device), self.num_classes,
                            len(scale_logits))
        fake = [F.softmax(logits.detach(), dim=1) for logits in scale_logits]
        return self.critic_step(real, fake, step, total_steps)


def paper_learning_rate(base: float, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The published MAAG's learning rate at ``step``: triangular cycles between 0 and ``base``.

    The authors' half cycle is 20 of their 450 epochs; here it is the same share of the run
    (``total_steps`` x 20 / 450 steps), so a run shorter than the published one keeps the
    same number of cycles (11.25) instead of never reaching ``base``. The rate is divided
    by ``1 + 1e-4 x epoch`` as theirs is.
    """
    half_cycle = max(1.0, total_steps * PAPER_HALF_CYCLE_EPOCHS / PAPER_EPOCHS)
    position = step / half_cycle
    distance = abs(position - 2 * (1 + position // 2) + 1)
    epoch = step // max(1, steps_per_epoch)
    return base * max(0.0, 1.0 - distance) / (1.0 + PAPER_EPOCH_DECAY * epoch)


class PaperShapePrior:
    """The adversarial game of the published MAAG (variant ``paper``; Valvano et al., TMI 2021).

    As the authors' code plays it: the critic
    (:class:`~weakseg.models.SqueezeMultiScaleDiscriminator`, foreground channels only,
    input noise and label flipping in training) scores real masks towards 1 and
    segmentations towards -1; it descends 0.2 x its loss on the *unlabelled* batch plus 0.1
    x its loss on the scribbled batch, with Adam (betas 0.9, 0.999) at the segmenter's rate.
    The segmenter descends :func:`weakseg.losses.dynamically_weighted_loss`: the supervised
    loss rescaled to the critic's loss on the scribbled batch, plus 0.2 x the generator loss
    of the unlabelled batch.

    Args:
        masks: int64 ``(M, S, S)`` unpaired mask slices at the training image size.
        num_classes, scale_count: of the segmenter's :meth:`forward_scales` output.
        image_size: ``S``.
        adversarial_weight: the generator term's weight (the paper's 0.2).
    """

    def __init__(self, masks: torch.Tensor, num_classes: int, scale_count: int, image_size: int,
                 adversarial_weight: float, device: torch.device, generator: torch.Generator) -> None:
        self.masks = masks
        self.num_classes = num_classes
        self.adversarial_weight = adversarial_weight
        self.device = device
        self.generator = generator
        self.discriminator = SqueezeMultiScaleDiscriminator(num_classes - 1, scale_count, image_size).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=0.0)

    def _real(self, count: int, scale_count: int) -> list[torch.Tensor]:
        pick = torch.randint(len(self.masks), (count,), generator=self.generator)
        pyramid = mask_pyramid(_flip_randomly(self.masks[pick], self.generator).to(self.device), self.num_classes,
                               scale_count)
        return [level[:, 1:] for level in pyramid]

    @staticmethod
    def _fake(scale_logits: list[torch.Tensor], detach: bool) -> list[torch.Tensor]:
        return [F.softmax(logits.detach() if detach else logits, dim=1)[:, 1:] for logits in scale_logits]

    def _critic_loss(self, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
        return least_squares_discriminator_loss(self.discriminator(real), self.discriminator(fake), fake_target=-1.0)

    def train_critic(self, scribbled_logits: list[torch.Tensor], unlabelled_logits: list[torch.Tensor],
                     learning_rate: float) -> float:
        """One Adam step of the critic on real masks vs the (detached) segmentations of both batches."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.discriminator.train()
        scales = len(scribbled_logits)
        loss = (self.adversarial_weight * self._critic_loss(self._real(len(unlabelled_logits[0]), scales),
                                                            self._fake(unlabelled_logits, detach=True))
                + PAPER_CRITIC_WEIGHT * self._critic_loss(self._real(len(scribbled_logits[0]), scales),
                                                          self._fake(scribbled_logits, detach=True)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def segmenter_loss(self, scribbled_logits: list[torch.Tensor], unlabelled_logits: list[torch.Tensor],
                       supervised: torch.Tensor) -> torch.Tensor:
        """The segmenter's whole loss (:func:`~weakseg.losses.dynamically_weighted_loss`), the critic frozen."""
        self.discriminator.requires_grad_(False)
        real = self._real(len(scribbled_logits[0]), len(scribbled_logits))
        critic_on_supervised = self._critic_loss(real, self._fake(scribbled_logits, detach=False))
        adversarial = least_squares_generator_loss(self.discriminator(self._fake(unlabelled_logits, detach=False)))
        self.discriminator.requires_grad_(True)
        return dynamically_weighted_loss(supervised, critic_on_supervised, adversarial, self.adversarial_weight,
                                         PAPER_CRITIC_WEIGHT)

    def state(self) -> dict:
        """Weights and optimiser state, for checkpoints."""
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` when a run resumes."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
