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
from torch.nn import functional as F
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


class SqueezeMultiScaleDiscriminator(nn.Module):
    """The critic of the published MAAG, as the authors' code builds it (variant ``paper``).

    It judges the foreground channels of a segmentation pyramid, finest first. The finest
    map gets Gaussian noise (``input_noise`` sigma, training only) and a 4x4 stride-2
    convolution (``width`` channels, leaky ReLU 0.2); at every coarser scale the features
    are squeezed to 13 channels by a 1x1 convolution with a sigmoid, concatenated with
    that scale's map, and passed through a 4x4 spectral-norm convolution (``2 * width *
    2**scale`` channels, stride 2, stride 1 at the last scale) with tanh. A dense layer
    over the last feature map gives one linear score per image. In training, with
    probability ``flip_probability`` the sign of the whole batch's scores is flipped in
    the forward pass while the gradient passes unchanged (the authors' label noise).

    Args:
        foreground_classes: channels of every map (the classes without background).
        scale_count: maps in the pyramid, each half the size of the previous one.
        image_size: side of the finest map (the dense layer's input size depends on it).
    """

    SQUEEZE_CHANNELS = 13

    def __init__(self, foreground_classes: int, scale_count: int, image_size: int, width: int = 32,
                 input_noise: float = 0.2, flip_probability: float = 0.1) -> None:
        super().__init__()
        if scale_count < 2:
            raise ValueError("the squeeze discriminator needs at least 2 scales")
        self.scale_count = scale_count
        self.input_noise = input_noise
        self.flip_probability = flip_probability
        self.first = nn.Conv2d(foreground_classes, width, 4, 2, 1)
        self.squeezes = nn.ModuleList()
        self.blocks = nn.ModuleList()
        previous, side = width, image_size // 2
        for scale in range(1, scale_count):
            out = 2 * width * 2**scale
            stride = 1 if scale == scale_count - 1 else 2
            self.squeezes.append(nn.Conv2d(previous, self.SQUEEZE_CHANNELS, 1))
            convolution = spectral_norm(nn.Conv2d(self.SQUEEZE_CHANNELS + foreground_classes, out, 4, stride,
                                                  1 if stride == 2 else 0))
            # stride 1 keeps the side as TensorFlow's 'same' 4x4 does: one pixel before, two after
            self.blocks.append(convolution if stride == 2 else nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), convolution))
            previous, side = out, side // stride
        self.score = nn.Linear(previous * side * side, 1)

    def forward(self, segmentations: list[torch.Tensor]) -> torch.Tensor:
        """One score per image ``(N,)``; ``segmentations[s]`` is ``(N, K-1, S/2**s, S/2**s)``."""
        if len(segmentations) != self.scale_count:
            raise ValueError(f"expected {self.scale_count} segmentations, got {len(segmentations)}")
        finest = segmentations[0]
        if self.training and self.input_noise:
            finest = finest + self.input_noise * torch.randn_like(finest)
        features = F.leaky_relu(self.first(finest), 0.2)
        for squeeze, block, segmentation in zip(self.squeezes, self.blocks, segmentations[1:]):
            squeezed = torch.sigmoid(squeeze(features))
            features = torch.tanh(block(torch.cat([squeezed, segmentation], dim=1)))
        scores = self.score(features.flatten(1)).flatten()
        if self.training and self.flip_probability and torch.rand(()).item() < self.flip_probability:
            scores = scores + (-2.0 * scores).detach()  # forward -scores, gradient as if unflipped
        return scores
