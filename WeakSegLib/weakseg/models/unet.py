"""A compact 2D U-Net (Ronneberger et al. 2015) for slice-wise segmentation.

Slice-wise 2D suits the anisotropic volumes WeakSeg meets most (cardiac cine MRI has
5-10 mm between slices against ~1.5 mm in-plane). Input ``(N, C, H, W)`` with H and W
divisible by ``2 ** (len(channels) - 1)``; output logits ``(N, K, H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        layers += [
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        ]
        super().__init__(*layers)


class UNet2D(nn.Module):
    """Encoder-decoder with skip connections.

    Args:
        in_channels: image channels (1 for MRI/CT, 3 for RGB).
        num_classes: output classes K, background included.
        channels: feature channels per resolution level, finest first.
        dropout: channel dropout in the bottleneck block.
    """

    architecture = "unet2d"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.config = {
            "architecture": self.architecture,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": list(channels),
            "dropout": dropout,
        }
        self.encoders = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(channels):
            is_bottleneck = level == len(channels) - 1
            self.encoders.append(ConvBlock(previous, width, dropout if is_bottleneck else 0.0))
            previous = width
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(channels[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(previous, width, 2, stride=2))
            self.decoders.append(ConvBlock(2 * width, width))
            previous = width
        self.head = nn.Conv2d(previous, num_classes, 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.encoders) - 1)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's features at every level, finest first (the last is the bottleneck)."""
        skips = []
        features = image
        for level, encoder in enumerate(self.encoders):
            if level:
                features = nn.functional.max_pool2d(features, 2)
            features = encoder(features)
            skips.append(features)
        return skips

    def forward_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last decoder features ``(N, channels[0], H, W)`` (the head's input) and the logits."""
        skips = self.encode(image)
        features = skips[-1]
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips[:-1])):
            features = decoder(torch.cat([upsample(features), skip], dim=1))
        return features, self.head(features)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_features(image)[1]
