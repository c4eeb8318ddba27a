"""An image classifier that can look where a lesion map points (Zhou et al., CVPR 2019).

The lesion-attentive classifier of the collaborative method: the U-Net's encoder blocks
(:class:`~weakseg.models.unet.ConvBlock`, max pooling between levels), a 1x1 convolution
giving one score map per diagnosis (the class activation maps, CAM; Zhou et al., CVPR 2016),
and a pooling of those maps into one score per diagnosis. With ``attention`` on, a lesion
map ``(N, 1, H, W)`` in [0, 1] (the segmenter's foreground probability) gates the features
of every level as ``features * (1 + map)`` (residual attention: the lesion is emphasised,
the rest is kept) and weights the pooling by ``0.5 + map``; without it the classifier sees
the image only (global average pooling), the baseline it is compared with.

Input ``(N, C, H, W)`` with H and W divisible by ``2 ** (len(channels) - 1)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weakseg.models.unet import ConvBlock

# Share of the pooling weight every pixel keeps outside the lesion map.
POOLING_FLOOR = 0.5


class AttentiveClassifier(nn.Module):
    """Diagnosis logits and class activation maps of an image, optionally guided by a lesion map.

    Args:
        in_channels: image channels (3 for RGB dermoscopy).
        num_diagnoses: diagnoses to tell apart.
        channels: feature channels per level, finest first.
        dropout: channel dropout before the score maps.
        attention: use the lesion map (lesion-attentive) or ignore it (image-only).
    """

    architecture = "attentive-classifier2d"

    def __init__(self, in_channels: int, num_diagnoses: int, channels: tuple[int, ...] = (8, 16, 32, 64),
                 dropout: float = 0.2, attention: bool = True) -> None:
        super().__init__()
        self.config = {"architecture": self.architecture, "in_channels": in_channels, "num_diagnoses": num_diagnoses,
                       "channels": list(channels), "dropout": dropout, "attention": bool(attention)}
        self.attention = bool(attention)
        self.blocks = nn.ModuleList()
        previous = in_channels
        for width in channels:
            self.blocks.append(ConvBlock(previous, width))
            previous = width
        self.dropout = nn.Dropout2d(dropout)
        self.scores = nn.Conv2d(previous, num_diagnoses, 1)

    def forward(self, image: torch.Tensor, lesion_map: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, D)`` and class activation maps ``(N, D, h, w)`` at the coarsest level.

        Raises:
            ValueError: an attentive classifier called without a lesion map.
        """
        if self.attention and lesion_map is None:
            raise ValueError("a lesion-attentive classifier needs the lesion map")
        features = image
        for level, block in enumerate(self.blocks):
            if level:
                features = F.max_pool2d(features, 2)
            features = block(features)
            if self.attention:
                features = features * (1.0 + F.interpolate(lesion_map, size=features.shape[-2:], mode="area"))
        maps = self.scores(self.dropout(features))
        if not self.attention:
            return maps.mean(dim=(2, 3)), maps
        weights = POOLING_FLOOR + F.interpolate(lesion_map, size=maps.shape[-2:], mode="area")
        return (maps * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)), maps


def build_classifier(config: dict) -> AttentiveClassifier:
    """A classifier from the ``config`` dict it stored in a model file.

    Raises:
        KeyError: a missing setting.
    """
    return AttentiveClassifier(int(config["in_channels"]), int(config["num_diagnoses"]), tuple(config["channels"]),
                               float(config["dropout"]), bool(config["attention"]))
