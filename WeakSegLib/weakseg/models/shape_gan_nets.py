"""The networks of method ``shape-gan``: a channel-calibrated generator and two kinds of mask critic.

* :class:`CalibratedUNet`: the image-to-mask generator, a :class:`~weakseg.models.UNet2D`
  whose last decoder features can be reweighted channel by channel from a critic's
  judgement of its first output (DGCC, Discriminator-Guided Generator Channel
  Calibration; Wang et al., IEEE TMI 2021).
* :class:`VaeMaskCritic`: the mask discriminator as a variational auto-encoder of masks.
  Trained on the auxiliary masks it learns their shape manifold; the energy of a mask
  (its reconstruction error plus the KL term, the negative ELBO up to a constant) says
  how far it lies from that manifold: low for real masks, high for fakes.
* :class:`PlainMaskCritic`: a convolutional least-squares critic, the ablation.

Both critics expose :meth:`judgement`, a feature vector per mask, which DGCC turns into
channel weights. Shapes: images and masks ``(N, 1, H, W)`` with H and W multiples of 16.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weakseg.models.unet import UNet2D

LATENT = 32


class CalibratedUNet(UNet2D):
    """A U-Net with one output channel (mask logits) and DGCC channel weights on its last features.

    Args:
        in_channels: image channels.
        channels: widths per level, finest first.
        judgement_size: length of the critic's judgement vector.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], judgement_size: int) -> None:
        super().__init__(in_channels, 1, channels, dropout=0.0)
        self.calibration = nn.Sequential(nn.Linear(judgement_size, channels[0]), nn.ReLU(inplace=True),
                                         nn.Linear(channels[0], channels[0]))
        nn.init.zeros_(self.calibration[2].weight)
        nn.init.zeros_(self.calibration[2].bias)

    def calibrated(self, features: torch.Tensor, judgement: torch.Tensor) -> torch.Tensor:
        """Mask logits from ``features`` reweighted by ``2 * sigmoid(mlp(judgement))`` per channel (1 at start)."""
        weights = 2 * torch.sigmoid(self.calibration(judgement))
        return self.head(features * weights[:, :, None, None])


def _down(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))


class VaeMaskCritic(nn.Module):
    """A VAE of ``(N, 1, H, W)`` masks in 0..1; its energy is the critic's "fakeness".

    Args:
        height, width: mask size (multiples of 16).
        width_channels: channels of the first of four stride-2 encoder blocks (doubling).
        kl_weight: weight of the KL term in the energy.
    """

    def __init__(self, height: int, width: int, width_channels: int = 16, kl_weight: float = 1e-3) -> None:
        super().__init__()
        widths = [width_channels * 2**level for level in range(4)]
        self.grid = (widths[-1], height // 16, width // 16)
        flat = widths[-1] * self.grid[1] * self.grid[2]
        self.kl_weight = kl_weight
        self.encoder = nn.Sequential(_down(1, widths[0]), _down(widths[0], widths[1]), _down(widths[1], widths[2]),
                                     _down(widths[2], widths[3]), nn.Flatten())
        self.moments = nn.Linear(flat, 2 * LATENT)
        self.expand = nn.Linear(LATENT, flat)
        layers: list[nn.Module] = []
        for index in range(3, 0, -1):
            layers += [nn.ConvTranspose2d(widths[index], widths[index - 1], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.ConvTranspose2d(widths[0], 1, 4, 2, 1))
        self.decoder = nn.Sequential(*layers)

    def judgement(self, masks: torch.Tensor) -> torch.Tensor:
        """The posterior mean of the latent code ``(N, LATENT)``: where the mask sits on the shape manifold."""
        return self.moments(self.encoder(masks)).chunk(2, dim=1)[0]

    def energy(self, masks: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per mask ``(N,)``: mean pixel BCE of the reconstruction + ``kl_weight`` x KL.

        The latent code is sampled (reparameterised) in training mode and is the mean otherwise.
        """
        mean, log_variance = self.moments(self.encoder(masks)).chunk(2, dim=1)
        log_variance = log_variance.clamp(-10, 10)
        code = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance) if self.training else mean
        logits = self.decoder(self.expand(code).view(-1, *self.grid))
        reconstruction = F.binary_cross_entropy_with_logits(logits, masks, reduction="none").mean(dim=(1, 2, 3))
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1 - log_variance).sum(dim=1)
        return reconstruction + self.kl_weight * kl


class PlainMaskCritic(nn.Module):
    """A least-squares convolutional critic of masks: one score per mask, high for real."""

    def __init__(self, width_channels: int = 16) -> None:
        super().__init__()
        widths = [width_channels * 2**level for level in range(4)]
        self.features = nn.Sequential(_down(1, widths[0]), _down(widths[0], widths[1]), _down(widths[1], widths[2]),
                                      _down(widths[2], widths[3]))
        self.score_map = nn.Conv2d(widths[3], 1, 3, 1, 1)
        self.judgement_size = widths[3]

    def judgement(self, masks: torch.Tensor) -> torch.Tensor:
        """Globally averaged last features ``(N, judgement_size)``."""
        return self.features(masks).mean(dim=(2, 3))

    def score(self, masks: torch.Tensor) -> torch.Tensor:
        """Mean of the patch scores ``(N,)``."""
        return self.score_map(self.features(masks)).mean(dim=(1, 2, 3))


class ImageCritic(nn.Module):
    """A least-squares patch critic of images ``(N, C, H, W)``: one score per image, high for real."""

    def __init__(self, in_channels: int, width_channels: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(_down(in_channels, width_channels), _down(width_channels, 2 * width_channels),
                                    _down(2 * width_channels, 4 * width_channels),
                                    nn.Conv2d(4 * width_channels, 1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).mean(dim=(1, 2, 3))
