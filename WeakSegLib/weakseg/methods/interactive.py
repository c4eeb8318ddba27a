"""Method ``interactive`` (users know it as ``weakseg``): learn from one image's scribbles alone.

Grow-cut pseudo labels, a small 2D U-Net trained on the scribbles' region of interest, a
dense CRF; see :mod:`weakseg.methods.interactive_unet`. With ``segment --model`` the
scribbles adapt a trained model instead (the model's method does the work).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weakseg.methods.interactive_settings import InteractiveConfig
from weakseg.methods.spec import PER_IMAGE, SCRIBBLES, MethodSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from weakseg.io import LoadedImage
    from weakseg.progress import Progress
    from weakseg.warm_start import WarmStartCache
    from weakseg.weak_labels import Scribbles


def segment(image: LoadedImage, scribbles: Scribbles, settings: InteractiveConfig, device: torch.device,
            progress: Progress, seed: int, cache: WarmStartCache | None = None) -> np.ndarray:
    """Run the method on one image (the :attr:`MethodSpec.segment` of this method).

    ``cache``: networks of earlier runs to start from (:mod:`weakseg.warm_start`).
    """
    import torch

    from weakseg.methods.interactive_unet import segment_interactive

    torch.manual_seed(seed)
    return segment_interactive(image, scribbles, settings, progress, device, seed, cache)


SPEC = MethodSpec(
    name="interactive",
    aliases=("weakseg",),
    summary="learn from this image's scribbles: grow-cut pseudo labels, a small U-Net, a dense CRF",
    learns_from=(SCRIBBLES,),
    usage=PER_IMAGE,
    settings=InteractiveConfig,
    segment="weakseg.methods.interactive:segment",
)
