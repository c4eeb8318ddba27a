"""Method ``pce``: MAAG's attention U-Net with class-balanced partial cross-entropy only (its ablation)."""

from __future__ import annotations

from weakseg.methods.scribble_settings import ATTENTION_UNET_PCE
from weakseg.methods.scribble_unet_spec import scribble_unet_spec
from weakseg.methods.spec import SCRIBBLES

SPEC = scribble_unet_spec(
    name="pce",
    summary="attention U-Net, partial cross-entropy on the scribbles only (the ablation maag is measured against)",
    learns_from=(SCRIBBLES,),
    defaults=dict(ATTENTION_UNET_PCE),
)
