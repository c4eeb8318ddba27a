"""The generator of method ``cycle``: a translation that may change an image only where a guide map allows.

:class:`GuidedGenerator` reads the image and a guide map in 0..1 (the class activation
map of the lesion) and returns ``x + guide * delta``: where the guide is 0 the output is
the input, so the change it makes, ``|x - G(x)|``, stays where the classifier saw the
lesion's evidence and takes its shape from the image. Shapes: images ``(N, C, H, W)``,
guides ``(N, 1, H, W)``, H and W multiples of ``2 ** (len(channels) - 1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from weakseg.models.unet import UNet2D


class GuidedGenerator(nn.Module):
    """A U-Net of ``(image, guide)`` whose output, times the guide, is added to the image.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        channels: U-Net widths per level, finest first.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "channels": list(channels)}
        self.network = UNet2D(in_channels + 1, in_channels, channels, dropout=0.0)
        nn.init.zeros_(self.network.head.weight)
        nn.init.zeros_(self.network.head.bias)

    def forward(self, images: torch.Tensor, guides: torch.Tensor) -> torch.Tensor:
        """The translated images ``(N, C, H, W)``: ``images + guides * delta`` (the identity at start)."""
        return images + guides * self.network(torch.cat([images, guides], dim=1))
