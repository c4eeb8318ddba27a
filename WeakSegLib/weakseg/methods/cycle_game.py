"""The lesion <-> healthy translation game of method ``cycle`` (after Du et al., MedImgSeg; Zhu et al. 2017).

Two :class:`~weakseg.models.cycle_nets.GuidedGenerator`: ``to_healthy`` (lesion -> healthy)
and ``to_lesion`` (healthy -> lesion); two least-squares patch critics
(:class:`~weakseg.models.shape_gan_nets.ImageCritic`), one per domain; the CAM classifier,
frozen, as the joint discriminator. For lesion slices ``x`` with guides ``g_x`` (their CAM
times the classifier's lesion probability), healthy slices ``y`` with guides ``g_y``, and
guides ``g`` of other lesion slices drawn at random (where a synthetic lesion may appear),
the generators' loss per step is::

    adversarial_weight * (LS(D_healthy(to_healthy(x, g_x))) + LS(D_lesion(to_lesion(y, g))))
    + cycle_weight * (|to_lesion(to_healthy(x, g_x), g_x) - x| + |to_healthy(to_lesion(y, g), g) - y|)
    + identity_weight * (|to_healthy(y, g_y) - y| + |to_lesion(x, g_x) - x|)
    + joint_weight * (BCE(classifier(to_healthy(x, g_x)), healthy) + BCE(classifier(to_lesion(y, g)), lesion))
    + change_weight * |to_healthy(x, g_x) - x|

(L1 terms are pixel means). The joint term is the paper's "joint discrimination": the
synthesized healthy image and the generated lesion image must belong to the opposite
category, judged by the classifier that saw the real labels. The change term is WeakSeg's
own (the smallest change that makes the image healthy). Critics learn from pools of
recent translations (as :mod:`weakseg.methods.shape_gan_cycle` does), so each critic step
runs before the generators' graph is built and :func:`weakseg.engine.run_training` runs the game.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weakseg.methods.cam import CamClassifier
from weakseg.methods.cycle import CycleSettings
from weakseg.methods.shape_gan_cycle import SamplePool, critic_loss, generator_term
from weakseg.models.cycle_nets import GuidedGenerator
from weakseg.models.shape_gan_nets import ImageCritic


def classifier_input(images: torch.Tensor, mirror_excess: bool) -> torch.Tensor:
    """The classifier's input for image slices: the images, then with ``mirror_excess`` how much brighter
    each pixel is than its left-right mirror (differentiable, so the joint term reaches the generators)."""
    if not mirror_excess:
        return images
    return torch.cat([images, F.relu(images - images.flip(-1))], dim=1)


class TranslationNetworks(nn.Module):
    """The generators and critics of the game."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.to_healthy = GuidedGenerator(in_channels, channels)
        self.to_lesion = GuidedGenerator(in_channels, channels)
        self.healthy_critic = ImageCritic(in_channels)
        self.lesion_critic = ImageCritic(in_channels)

    def generators(self) -> list[nn.Parameter]:
        return list(self.to_healthy.parameters()) + list(self.to_lesion.parameters())


class TranslationGame:
    """One run of the game: networks, critic optimisers, pools and the training slices.

    Args:
        images: ``(N, C, S, S)`` image slices (the image channels, without the mirror channel).
        guides: ``(N, 1, S, S)`` guide maps of every slice.
        lesion, healthy: indices of the lesion and the healthy slices.
        generator: the run's batch sampler.
    """

    def __init__(self, networks: TranslationNetworks, classifier: CamClassifier, settings: CycleSettings,
                 images: torch.Tensor, guides: torch.Tensor, lesion: torch.Tensor, healthy: torch.Tensor,
                 device: torch.device, generator: torch.Generator) -> None:
        self.networks, self.classifier, self.settings = networks, classifier, settings
        self.images, self.guides, self.lesion, self.healthy = images, guides, lesion, healthy
        self.device, self.generator = device, generator
        betas = (0.5, 0.999)
        rate = settings.gan_learning_rate
        self.optimizer = torch.optim.Adam(networks.generators(), lr=rate, betas=betas)
        self.critic_optimizer = torch.optim.Adam(list(networks.healthy_critic.parameters())
                                                 + list(networks.lesion_critic.parameters()), lr=rate, betas=betas)
        self.fake_healthy, self.fake_lesion = SamplePool(), SamplePool()

    def _draw(self, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picks = pool[torch.randint(len(pool), (self.settings.gan_batch_size,), generator=self.generator)]
        images, guides = self.images[picks], self.guides[picks]
        if torch.rand(1, generator=self.generator).item() < 0.5:
            images, guides = images.flip(-1), guides.flip(-1)
        return images.to(self.device), guides.to(self.device)

    def _critic_step(self, lesion: torch.Tensor, healthy: torch.Tensor) -> None:
        fake_healthy = self.fake_healthy.draw(len(healthy), self.generator)
        fake_lesion = self.fake_lesion.draw(len(lesion), self.generator)
        if fake_healthy is None:
            return
        networks = self.networks
        loss = (critic_loss(networks.healthy_critic(healthy), networks.healthy_critic(fake_healthy.to(self.device)))
                + critic_loss(networks.lesion_critic(lesion), networks.lesion_critic(fake_lesion.to(self.device))))
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()

    def _verdict(self, images: torch.Tensor, lesion: bool) -> torch.Tensor:
        """BCE of the frozen classifier's lesion logit against ``lesion`` for translated images."""
        logits, _ = self.classifier(classifier_input(images, self.settings.mirror_excess))
        target = torch.full_like(logits, 1.0 if lesion else 0.0)
        return F.binary_cross_entropy_with_logits(logits, target)

    def compute_loss(self, step: int) -> torch.Tensor:
        """One step: the critics learn from the pools, then the generators' loss (module docstring)."""
        settings, networks = self.settings, self.networks
        lesion, lesion_guides = self._draw(self.lesion)
        healthy, healthy_guides = self._draw(self.healthy)
        _, other_guides = self._draw(self.lesion)
        self._critic_step(lesion, healthy)
        frozen = (networks.healthy_critic, networks.lesion_critic, self.classifier)
        for network in frozen:
            network.requires_grad_(False)
        self.classifier.eval()
        made_healthy = networks.to_healthy(lesion, lesion_guides)
        made_lesion = networks.to_lesion(healthy, other_guides)
        adversarial = (generator_term(networks.healthy_critic(made_healthy))
                       + generator_term(networks.lesion_critic(made_lesion)))
        cycle = ((networks.to_lesion(made_healthy, lesion_guides) - lesion).abs().mean()
                 + (networks.to_healthy(made_lesion, other_guides) - healthy).abs().mean())
        identity = ((networks.to_healthy(healthy, healthy_guides) - healthy).abs().mean()
                    + (networks.to_lesion(lesion, lesion_guides) - lesion).abs().mean())
        joint = self._verdict(made_healthy, lesion=False) + self._verdict(made_lesion, lesion=True)
        change = (made_healthy - lesion).abs().mean()
        loss = (settings.adversarial_weight * adversarial + settings.cycle_weight * cycle
                + settings.identity_weight * identity + settings.joint_weight * joint + settings.change_weight * change)
        for network in frozen:
            network.requires_grad_(True)
        self.fake_healthy.add(made_healthy)
        self.fake_lesion.add(made_lesion)
        return loss

    def state(self) -> dict:
        """The critics' optimiser state and the pools, for checkpoints."""
        return {"critic_optimizer": self.critic_optimizer.state_dict(),
                "fake_healthy": self.fake_healthy.samples, "fake_lesion": self.fake_lesion.samples}

    def load_state(self, state: dict, optimizer_state: dict) -> None:
        """Restore :meth:`state` and the generators' optimiser when a run resumes."""
        self.optimizer.load_state_dict(optimizer_state)
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.fake_healthy.samples, self.fake_lesion.samples = state["fake_healthy"], state["fake_lesion"]
