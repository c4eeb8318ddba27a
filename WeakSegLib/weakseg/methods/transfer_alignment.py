"""The two domain-alignment parts of method ``transfer``: class centroids and an output-space critic.

* :class:`CentroidAlignment` (Dong et al., ICCV 2019; cf. Xie et al., ICML 2018 "moving
  semantic transfer"): the mean feature vector of every class in each domain, accumulated
  over iterations as an exponential moving average so that a class missing from one batch
  keeps its centroid, with the current batch's contribution carrying the gradient. The
  loss is the mean squared distance between the source and target centroid of each class
  both domains have seen. Source pixels take their class from the masks, target pixels
  from pseudo labels or scribbles; unlabelled pixels (255) do not count.
* :class:`OutputSpaceCritic` (Tsai et al., CVPR 2018 "Learning to adapt structured output
  space"): a :class:`~weakseg.models.MultiScaleDiscriminator` learns to tell the source
  softmax maps (real) from the target ones; the segmenter is trained to make its target
  maps score as source. Least-squares game (Mao et al. 2017). Structures keep their layout
  across domains even where their intensities do not, so the output space is where the
  domains agree most.

Shapes: features ``(N, F, H, W)``, labels ``(N, H, W)`` int64 with 255 = unlabelled,
probabilities ``(N, K, H, W)``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from weakseg.contract import UNLABELLED
from weakseg.methods.adversarial import LeastSquaresCritic

CRITIC_LEARNING_RATE = 1e-4
CRITIC_SCALES = 3


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every class in a batch: ``(K, F)`` means and ``(K,)`` pixel counts (0: class absent)."""
    flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    codes = labels.reshape(-1)
    keep = codes != UNLABELLED
    flat, codes = flat[keep], codes[keep]
    one_hot = F.one_hot(codes, num_classes).to(flat.dtype)
    counts = one_hot.sum(dim=0)
    sums = one_hot.t() @ flat
    return sums / counts.clamp(min=1.0)[:, None], counts


class CentroidAlignment:
    """Accumulated per-class feature centroids of the source and the target, and their distance.

    Args:
        num_classes: K, background included.
        feature_count: F, channels of the aligned feature map.
        momentum: share of the accumulated centroid kept at each update.
    """

    def __init__(self, num_classes: int, feature_count: int, momentum: float, device: torch.device) -> None:
        self.num_classes = num_classes
        self.momentum = momentum
        self.centroids = torch.zeros(2, num_classes, feature_count, device=device)
        self.seen = torch.zeros(2, num_classes, dtype=torch.bool, device=device)

    def _update(self, domain: int, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        means, counts = class_means(features, labels, self.num_classes)
        present = counts > 0
        accumulated = self.centroids[domain].clone()
        blended = torch.where(self.seen[domain][:, None].clone(),
                              self.momentum * accumulated + (1 - self.momentum) * means, means)
        current = torch.where(present[:, None], blended, accumulated)
        self.centroids[domain] = current.detach()
        self.seen[domain] |= present
        return current

    def loss(self, source_features: torch.Tensor, source_labels: torch.Tensor, target_features: torch.Tensor,
             target_labels: torch.Tensor) -> torch.Tensor:
        """Update both domains' centroids with this batch; mean squared distance of the classes both have seen."""
        source = self._update(0, source_features, source_labels)
        target = self._update(1, target_features, target_labels)
        both = self.seen[0] & self.seen[1]
        if not bool(both.any()):
            return source_features.sum() * 0.0
        return (source[both] - target[both]).pow(2).mean()

    def state(self) -> dict:
        """The accumulated centroids, for checkpoints (plain tensors)."""
        return {"centroids": self.centroids.cpu(), "seen": self.seen.cpu()}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` when a run resumes."""
        self.centroids = state["centroids"].to(self.centroids.device)
        self.seen = state["seen"].to(self.seen.device)


def probability_pyramid(probabilities: torch.Tensor, scale_count: int = CRITIC_SCALES) -> list[torch.Tensor]:
    """``(N, K, H, W)`` probabilities and their 2x2 averages, finest first: the critic's input."""
    pyramid = [probabilities]
    for _ in range(scale_count - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], 2))
    return pyramid


class OutputSpaceCritic(LeastSquaresCritic):
    """The output-space discriminator, its optimiser and the two losses of the game.

    Args:
        num_classes: K, channels of the softmax maps.
        weight: the segmenter's adversarial term's weight.
        width: channels of the critic's finest block (``TransferConfig.critic_width``; no
            default here, so the config stays the one place that sets it).
    """

    def __init__(self, num_classes: int, weight: float, device: torch.device, width: int) -> None:
        super().__init__(num_classes, CRITIC_SCALES, CRITIC_LEARNING_RATE, device, width)
        self.weight = weight

    def segmenter_loss(self, target_logits: torch.Tensor) -> torch.Tensor:
        """``weight`` x how far the target softmax maps score from "source" (the critic is not updated)."""
        return self.weight * self.fooling_loss(probability_pyramid(F.softmax(target_logits, dim=1)))

    def train_critic(self, source_logits: torch.Tensor, target_logits: torch.Tensor, step: int, total_steps: int) -> float:
        """One optimiser step of the critic: source maps towards 1, target maps towards 0 (inputs detached)."""
        real = probability_pyramid(F.softmax(source_logits.detach(), dim=1))
        fake = probability_pyramid(F.softmax(target_logits.detach(), dim=1))
        return self.critic_step(real, fake, step, total_steps)
