"""An image classifier whose class activation maps (CAM) show where each class is.

CAM (Zhou et al., CVPR 2016): a fully convolutional encoder, a 1x1 convolution giving one
score map per foreground class, and global pooling of those maps into the image's class
logits. The pooling is the mean of the top ``top_fraction`` of each map's positions
(global average pooling when 1, max pooling as it tends to 0; Durand et al., WILDCAT,
CVPR 2017). Average pooling lets a classifier read a lesion slice off the *amount* of
tissue in view (lesion slices of a brain volume are the large mid-brain ones), which
spreads the map over the whole organ; pooling only the top positions makes the image
score depend on the most lesion-like region alone, so the map peaks there. Trained only with image-level labels (multi-label binary
cross-entropy: a slice may show several classes, or none when healthy), the score map
of a class is high where the evidence for it lies. The maps are computed at a stride of 2 per encoder level after the first,
upsampled bilinearly to the input size, clipped at zero and divided by their maximum in
each image, so ``1`` marks the strongest evidence of that image (per-image
normalisation: the classifier's probability, not the map, says whether a class is there
at all). Test-time flips and several input scales (``scales``) are averaged, which
smooths the coarse maps and widens them towards the whole object (multi-scale CAM, as in
most weakly-supervised segmentation pipelines since Wei et al. 2018).

Shapes: images ``(N, C, H, W)`` with H and W multiples of the stride; maps ``(N, K - 1, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from weakseg.errors import WeakSegInputError
from weakseg.models.unet import ConvBlock

class CamClassifier(nn.Module):
    """Encoder (ConvBlocks with 2x2 max pooling), 1x1 class-score conv, global average pooling.

    Args:
        in_channels: image channels.
        num_foreground: foreground classes (K - 1); one logit and one map each.
        channels: widths of the encoder levels (stride 1, 2, 4, ...); fewer levels give a
            smaller receptive field, so the map must rest on local evidence.
        top_fraction: share of map positions averaged into the image logit (0..1].
    """

    def __init__(
        self,
        in_channels: int,
        num_foreground: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        top_fraction: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 < top_fraction <= 1.0:
            raise WeakSegInputError(f"CAM pooling top_fraction must lie in (0, 1], got {top_fraction}")
        self.config = {"in_channels": in_channels, "num_foreground": num_foreground, "channels": list(channels),
                       "top_fraction": top_fraction}
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in channels:
            self.encoders.append(ConvBlock(previous, width))
            previous = width
        self.scores = nn.Conv2d(previous, num_foreground, 1)

    @property
    def stride(self) -> int:
        """Input pixels per map position along each axis; input sizes must be multiples of it."""
        return 2 ** (len(self.encoders) - 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image logits ``(N, K - 1)`` and score maps ``(N, K - 1, H / stride, W / stride)``."""
        features = images
        for level, encoder in enumerate(self.encoders):
            if level:
                features = F.max_pool2d(features, 2)
            features = encoder(features)
        maps = self.scores(features)
        flat = maps.flatten(2)
        count = max(1, round(self.config["top_fraction"] * flat.shape[2]))
        return flat.topk(count, dim=2).values.mean(dim=2), maps


@torch.no_grad()
def class_activation_maps(
    classifier: CamClassifier, images: torch.Tensor, scales: Sequence[float] = (1.0,), batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities ``(N, K - 1)`` and CAMs ``(N, K - 1, H, W)`` in 0..1 of ``images``.

    Averages the maps (and logits) over left-right flips and ``scales`` (input resized by
    each factor, rounded to a multiple of the classifier's stride); each map is then
    normalised by its per-image maximum.
    """
    classifier.eval()
    device = next(classifier.parameters()).device
    size = images.shape[-2:]
    probabilities, maps = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device)
        logit_sum = torch.zeros(batch.shape[0], classifier.config["num_foreground"], device=device)
        map_sum = torch.zeros(batch.shape[0], classifier.config["num_foreground"], *size, device=device)
        views = 0
        for scale in scales:
            stride = classifier.stride
            scaled_size = [max(stride, round(side * scale / stride) * stride) for side in size]
            scaled = F.interpolate(batch, size=scaled_size, mode="bilinear", align_corners=False)
            for flip in (False, True):
                view = scaled.flip(-1) if flip else scaled
                logits, score_maps = classifier(view)
                score_maps = score_maps.flip(-1) if flip else score_maps
                logit_sum += logits
                map_sum += F.interpolate(F.relu(score_maps), size=size, mode="bilinear", align_corners=False)
                views += 1
        peak = map_sum.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        probabilities.append(torch.sigmoid(logit_sum / views).cpu())
        maps.append((map_sum / peak).cpu())
    return torch.cat(probabilities), torch.cat(maps)
