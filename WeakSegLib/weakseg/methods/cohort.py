"""Method ``cohort``: one 2D U-Net trained on the scribbles of a folder of volumes.

Balanced partial cross-entropy with entropy and total-variation regularisers and a
background prior beyond the scribbles' hull; predicts volumes without scribbles and adapts
to one volume's scribbles (:mod:`weakseg.methods.scribble_unet`).
"""

from __future__ import annotations

from weakseg.methods.scribble_settings import CohortConfig
from weakseg.methods.scribble_unet_spec import scribble_unet_spec
from weakseg.methods.spec import SCRIBBLES

SPEC = scribble_unet_spec(
    name="cohort",
    summary="U-Net trained on the scribbles of many volumes (losses with regularisers); predicts without scribbles",
    learns_from=(SCRIBBLES,),
    defaults={},
)

__all__ = ["SPEC", "CohortConfig"]
