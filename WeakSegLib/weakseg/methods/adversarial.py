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

import torch
from torch.nn import functional as F

from weakseg.engine import poly_learning_rate
from weakseg.losses import least_squares_discriminator_loss, least_squares_generator_loss
from weakseg.models import MultiScaleDiscriminator

DISCRIMINATOR_LEARNING_RATE = 1e-4


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


class AdversarialShapePrior:
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
        self.masks = masks
        self.num_classes = num_classes
        self.adversarial_weight = adversarial_weight
        self.device = device
        self.generator = generator
        self.discriminator = MultiScaleDiscriminator(num_classes, scale_count).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=DISCRIMINATOR_LEARNING_RATE, betas=(0.5, 0.999))

    def segmenter_loss(self, scale_logits: list[torch.Tensor], supervised_loss: torch.Tensor) -> torch.Tensor:
        """The segmenter's adversarial term, scaled to ``adversarial_weight`` x the supervised term."""
        self.discriminator.requires_grad_(False)
        fake = [F.softmax(logits, dim=1) for logits in scale_logits]
        loss = least_squares_generator_loss(self.discriminator(fake))
        self.discriminator.requires_grad_(True)
        scale = self.adversarial_weight * supervised_loss.detach() / loss.detach().clamp(min=1e-6)
        return scale * loss

    def train_critic(self, scale_logits: list[torch.Tensor], step: int, total_steps: int) -> float:
        """One optimiser step of the critic on (detached) generated vs unpaired real masks."""
        for group in self.optimizer.param_groups:
            group["lr"] = poly_learning_rate(DISCRIMINATOR_LEARNING_RATE, step, total_steps)
        count = scale_logits[0].shape[0]
        pick = torch.randint(len(self.masks), (count,), generator=self.generator)
        real = mask_pyramid(_flip_randomly(self.masks[pick], self.generator).to(self.device), self.num_classes,
                            len(scale_logits))
        fake = [F.softmax(logits.detach(), dim=1) for logits in scale_logits]
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
