"""Networks used by the WeakSeg methods."""

from weakseg.models.unet import UNet2D

__all__ = ["UNet2D"]
