"""U-Net whose decoder segments at every scale and gates its features with that segmentation.

The generator of "multi-scale adversarial attention gates" (MAAG; Valvano, Leo and
Tsaftaris, IEEE TMI 2021). At each decoder level but the finest, a 1x1 convolution
predicts a K-class segmentation at that level's resolution; the level's features are then
multiplied by the predicted probability of "not background" (the attention map), so that
the next level only sees what this scale believes is an object. The multi-scale
segmentations are what a multi-scale discriminator judges against real masks
(:class:`weakseg.models.discriminator.MultiScaleDiscriminator`): the adversarial signal
conditions the attention maps, which is how the unpaired masks act as a shape prior.

The network is a drop-in :class:`~weakseg.models.unet.UNet2D`: ``forward`` returns the
final logits, so prediction, adaptation and the CRF need no special case; training reads
every scale through :meth:`AttentionUNet2D.forward_scales`. Slices are 2D; a 3D variant
would replace the convolutions and keep the same gating.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weakseg.models.unet import UNet2D


class AttentionUNet2D(UNet2D):
    """:class:`UNet2D` with a segmentation head and an attention gate at every decoder level.

    Args: as :class:`UNet2D`. With ``L = len(channels)`` levels the network produces ``L - 1``
    segmentations: the final one at full resolution and ``L - 2`` gated ones at 1/2, 1/4, ...
    """

    architecture = "attention-unet2d"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, num_classes, channels, dropout)
        if len(channels) < 3:
            raise ValueError("an attention U-Net needs at least 3 levels (one gated decoder level)")
        self.scale_heads = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for width in reversed(channels[1:-1]))

    @property
    def scale_count(self) -> int:
        """How many segmentations :meth:`forward_scales` returns."""
        return len(self.scale_heads) + 1

    def forward_scales(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Logits at every scale, finest (full resolution, the prediction) first."""
        skips = self.encode(image)
        features = skips[-1]
        coarse_logits = []
        decoder_levels = zip(self.upsamplers, self.decoders, reversed(skips[:-1]))
        for index, (upsample, decoder, skip) in enumerate(decoder_levels):
            features = decoder(torch.cat([upsample(features), skip], dim=1))
            if index < len(self.scale_heads):
                logits = self.scale_heads[index](features)
                attention = 1.0 - F.softmax(logits, dim=1)[:, :1]
                features = features * attention
                coarse_logits.append(logits)
        return [self.head(features)] + coarse_logits[::-1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_scales(image)[0]
