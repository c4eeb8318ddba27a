"""Method ``maag``: multi-scale adversarial attention gates (Valvano et al., TMI 2021).

The attention U-Net of ``pce`` plus a multi-scale least-squares discriminator that learns
what real masks look like from **unpaired** masks (other patients, an atlas) and judges
the segmentations of every scale (:mod:`weakseg.methods.adversarial`). The adversarial
weight defaults to 1.0, not the paper's 0.2 (see :mod:`weakseg.methods.scribble_settings`).
"""

from __future__ import annotations

from weakseg.methods.scribble_settings import ATTENTION_UNET_PCE
from weakseg.methods.scribble_unet_spec import scribble_unet_spec
from weakseg.methods.spec import SCRIBBLES, UNPAIRED_MASKS

SPEC = scribble_unet_spec(
    name="maag",
    summary="attention U-Net on scribbles + multi-scale adversarial shape prior learnt from unpaired masks",
    learns_from=(SCRIBBLES, UNPAIRED_MASKS),
    defaults={**ATTENTION_UNET_PCE, "adversarial_weight": 1.0},
)
