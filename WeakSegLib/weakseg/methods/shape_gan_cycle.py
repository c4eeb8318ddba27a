"""The image <-> mask CycleGAN of method ``shape-gan`` (Wang et al., IEEE TMI 2021, after Zhu et al. 2017).

Two generators: ``to_mask`` (image -> mask, the pseudo-label maker) and ``to_image``
(mask -> image); two critics: one of masks, fed with the auxiliary masks as "real"
(a VAE, :class:`~weakseg.models.shape_gan_nets.VaeMaskCritic`, or the plain critic for
ablation), one of images. The generators' loss per step::

    shape_weight * adversarial(to_mask(x)) + adversarial(to_image(m))
      + cycle_weight * (|to_image(to_mask(x)) - x|_1 + |to_mask(to_image(m)) - m|_1)

for training images ``x`` and auxiliary masks ``m`` (cycle weight 10 as in CycleGAN).
The mask round trip teaches ``to_mask`` to segment images whose mask is known; the image
round trip forces its masks to carry where the structure is; the mask critic keeps them
on the shape manifold. With DGCC, ``to_mask`` first predicts a mask, the mask critic
judges it (its latent code), and that judgement reweights the generator's last feature
channels before the final mask (:class:`~weakseg.models.shape_gan_nets.CalibratedUNet`).

Critics: the VAE critic is trained as an energy-based critic (Zhao et al., EBGAN 2017):
real masks' energy (negative ELBO) down, fakes' energy up to a margin; the generator
lowers its masks' energy. The plain critic and the image critic are least-squares
(LSGAN). Critics learn from a pool of the last generated samples (Shrivastava et al.
2017, as CycleGAN does), so each critic step happens before the generators' graph is
built and the shared training loop (:func:`weakseg.engine.run_training`) runs the game.
Before the first step the mask critic learns the auxiliary masks alone for
:data:`CRITIC_WARMUP_STEPS` steps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weakseg.losses import least_squares_discriminator_loss, least_squares_generator_loss
from weakseg.methods.shape_gan_data import AuxiliaryMasks, Grid
from weakseg.models.shape_gan_nets import LATENT, CalibratedUNet, ImageCritic, PlainMaskCritic, VaeMaskCritic
from weakseg.models.unet import UNet2D

POOL_SIZE = 50
ENERGY_MARGIN = 0.5
CYCLE_WEIGHT = 10.0
CRITIC_WARMUP_STEPS = 200


class ShapeGanNetworks(nn.Module):
    """The four networks of the game."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], grid: Grid, vae_critic: bool) -> None:
        super().__init__()
        self.vae_critic = vae_critic
        self.mask_critic = VaeMaskCritic(grid.height, grid.width) if vae_critic else PlainMaskCritic()
        judgement_size = LATENT if vae_critic else self.mask_critic.judgement_size
        self.to_mask = CalibratedUNet(in_channels, channels, judgement_size)
        self.to_image = UNet2D(1, in_channels, channels, dropout=0.0)
        self.image_critic = ImageCritic(in_channels)

    def masks(self, images: torch.Tensor, dgcc: bool) -> torch.Tensor:
        """Foreground probabilities ``(N, 1, H, W)`` of ``to_mask``, calibrated by the critic's judgement with DGCC."""
        features, logits = self.to_mask.forward_features(images)
        if not dgcc:
            return torch.sigmoid(logits)
        judgement = self.mask_critic.judgement(torch.sigmoid(logits))
        return torch.sigmoid(self.to_mask.calibrated(features, judgement))

    def mask_fakeness(self, masks: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial term for ``masks``: their energy (VAE) or LSGAN distance from real."""
        if self.vae_critic:
            return self.mask_critic.energy(masks).mean()
        return generator_term(self.mask_critic.score(masks))

    def mask_critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The mask critic's loss on real (auxiliary) and generated masks."""
        if self.vae_critic:
            return self.mask_critic.energy(real).mean() + F.relu(ENERGY_MARGIN - self.mask_critic.energy(fake)).mean()
        return critic_loss(self.mask_critic.score(real), self.mask_critic.score(fake))


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """A least-squares critic's loss, real towards 1 and generated towards 0, as the plain sum of both squares.

    :func:`weakseg.losses.least_squares_discriminator_loss` without Mao et al.'s factor 1/2:
    the weights of the translation games (here and in :mod:`weakseg.methods.cycle_game`) were set
    for the sum.
    """
    return 2.0 * least_squares_discriminator_loss(real_scores, fake_scores)


def generator_term(fake_scores: torch.Tensor) -> torch.Tensor:
    """A generator's least-squares term (its outputs should score 1), on the same scale as :func:`critic_loss`."""
    return 2.0 * least_squares_generator_loss(fake_scores)


class SamplePool:
    """The last :data:`POOL_SIZE` generated samples, which the critics learn from."""

    def __init__(self) -> None:
        self.samples: torch.Tensor | None = None

    def add(self, batch: torch.Tensor) -> None:
        batch = batch.detach().cpu()
        self.samples = batch if self.samples is None else torch.cat([batch, self.samples])[:POOL_SIZE]

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor | None:
        if self.samples is None:
            return None
        return self.samples[torch.randint(len(self.samples), (count,), generator=generator)]


class CycleGame:
    """One run of the game: networks, critic optimisers, sample pools, data.

    Args:
        images: ``(N, C, H, W)`` training slices.
        auxiliary: the real masks' source.
        dgcc: calibrate ``to_mask`` with the critic's judgement.
        shape_weight: weight of the mask critic's term in the generators' loss.
    """

    def __init__(self, networks: ShapeGanNetworks, images: torch.Tensor, auxiliary: AuxiliaryMasks, dgcc: bool,
                 batch_size: int, learning_rate: float, device: torch.device, generator: torch.Generator,
                 shape_weight: float = 1.0) -> None:
        self.networks = networks
        self.shape_weight = shape_weight
        self.images = images
        self.auxiliary = auxiliary
        self.dgcc = dgcc
        self.batch_size = batch_size
        self.device = device
        self.generator = generator
        betas = (0.5, 0.999)
        self.optimizer = torch.optim.Adam(list(networks.to_mask.parameters()) + list(networks.to_image.parameters()),
                                          lr=learning_rate, betas=betas)
        self.mask_critic_optimizer = torch.optim.Adam(networks.mask_critic.parameters(), lr=learning_rate, betas=betas)
        self.image_critic_optimizer = torch.optim.Adam(networks.image_critic.parameters(), lr=learning_rate, betas=betas)
        self.fake_masks, self.fake_images = SamplePool(), SamplePool()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked = self.images[torch.randint(len(self.images), (self.batch_size,), generator=self.generator)]
        if torch.rand(1, generator=self.generator).item() < 0.5:
            picked = picked.flip(-1)
        return picked.to(self.device), self.auxiliary.draw(self.batch_size, self.generator).to(self.device)

    def _critic_steps(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        fake_masks = self.fake_masks.draw(len(masks), self.generator)
        fake_images = self.fake_images.draw(len(images), self.generator)
        if fake_masks is None:
            return
        loss = self.networks.mask_critic_loss(masks, fake_masks.to(self.device))
        self.mask_critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.mask_critic_optimizer.step()
        image_critic = self.networks.image_critic
        loss = critic_loss(image_critic(images), image_critic(fake_images.to(self.device)))
        self.image_critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.image_critic_optimizer.step()

    def _warm_up_mask_critic(self) -> None:
        """Fit the mask critic to the auxiliary masks alone before the game, so that the generator's first
        masks already meet a critic that knows the shape manifold."""
        for _ in range(CRITIC_WARMUP_STEPS):
            masks = self.auxiliary.draw(self.batch_size, self.generator).to(self.device)
            if self.networks.vae_critic:
                loss = self.networks.mask_critic.energy(masks).mean()
            else:
                loss = generator_term(self.networks.mask_critic.score(masks))
            self.mask_critic_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.mask_critic_optimizer.step()

    def compute_loss(self, step: int) -> torch.Tensor:
        """One step: the critics learn from the pools, then the generators' loss (for the engine's loop).

        The image round trip renders the generator's mask thresholded at 0.5 (gradients pass
        straight through): a soft mask could hide a copy of the image in its grey levels
        and satisfy the round trip without segmenting anything.
        """
        networks = self.networks
        if step == 0:
            self._warm_up_mask_critic()
        images, masks = self._batch()
        self._critic_steps(images, masks)
        critics = (networks.mask_critic, networks.image_critic)
        for critic in critics:
            critic.requires_grad_(False)
        predicted = networks.masks(images, self.dgcc)
        binary = predicted + ((predicted > 0.5).float() - predicted).detach()
        rendered = networks.to_image(masks)
        loss = (self.shape_weight * networks.mask_fakeness(predicted)
                + generator_term(networks.image_critic(rendered))
                + CYCLE_WEIGHT * ((networks.to_image(binary) - images).abs().mean()
                                  + (networks.masks(rendered, self.dgcc) - masks).abs().mean()))
        for critic in critics:
            critic.requires_grad_(True)
        self.fake_masks.add(predicted)
        self.fake_images.add(rendered)
        return loss

    def state(self) -> dict:
        """Optimiser states and pools, for checkpoints (tensors and plain values only)."""
        return {"mask_critic_optimizer": self.mask_critic_optimizer.state_dict(),
                "image_critic_optimizer": self.image_critic_optimizer.state_dict(),
                "fake_masks": self.fake_masks.samples, "fake_images": self.fake_images.samples}

    def load_state(self, state: dict, optimizer_state: dict) -> None:
        """Restore :meth:`state` (and the generators' optimiser) when a run resumes."""
        self.optimizer.load_state_dict(optimizer_state)
        self.mask_critic_optimizer.load_state_dict(state["mask_critic_optimizer"])
        self.image_critic_optimizer.load_state_dict(state["image_critic_optimizer"])
        self.fake_masks.samples, self.fake_images.samples = state["fake_masks"], state["fake_images"]
