"""Multi-scale discriminator that judges segmentations at several resolutions at once.

The critic of MAAG (Valvano et al., IEEE TMI 2021): it reads the finest segmentation,
and after every stride-2 downsampling concatenates the segmentation of that scale to its
features, so a decision depends on the shape at every scale (and every scale receives a
gradient). It sees masks only, never images: the unpaired masks of other patients are
its "real" examples. Spectral normalisation (Miyato et al. 2018) keeps it Lipschitz,
which steadies the least-squares GAN game.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, 3 if stride == 1 else 4, stride, 1))


class MultiScaleDiscriminator(nn.Module):
    """Scores a pyramid of K-channel segmentations; higher means "looks like a real mask".

    Args:
        num_classes: K, channels of every segmentation (softmax probabilities or one-hot).
        scale_count: segmentations in the pyramid, finest first, each half the size of the
            previous one.
        width: feature channels after the first block (doubled at each scale, capped at 8x).
    """

    def __init__(self, num_classes: int, scale_count: int, width: int = 32) -> None:
        super().__init__()
        self.scale_count = scale_count
        self.blocks = nn.ModuleList()
        previous = 0
        for scale in range(scale_count):
            out = width * min(2**scale, 8)
            self.blocks.append(
                nn.Sequential(
                    _conv(previous + num_classes, out, 1),
                    nn.LeakyReLU(0.2, inplace=True),
                    _conv(out, out, 2),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            previous = out
        self.score = _conv(previous, 1, 1)

    def forward(self, segmentations: list[torch.Tensor]) -> torch.Tensor:
        """One score per image ``(N,)``: the mean of a patch-wise score map."""
        if len(segmentations) != self.scale_count:
            raise ValueError(f"expected {self.scale_count} segmentations, got {len(segmentations)}")
        features = None
        for block, segmentation in zip(self.blocks, segmentations):
            inputs = segmentation if features is None else torch.cat([features, segmentation], dim=1)
            features = block(inputs)
        return self.score(features).mean(dim=(1, 2, 3))
