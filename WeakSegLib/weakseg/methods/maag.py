"""Method ``maag``: multi-scale adversarial attention gates (Valvano et al., IEEE TMI 2021).

The attention U-Net of ``pce`` plus a multi-scale least-squares discriminator that learns
what real masks look like from **unpaired** masks (other patients, an atlas) and judges
the segmentations of every scale (:mod:`weakseg.methods.adversarial`). Two variants:

* ``--variant weakseg`` (default): this library's variant, tuned on ACDC val: the
  adversarial term fixed at ``adversarial_weight`` (1.0) x the supervised term, on the
  scribbled batch, a spectral-norm critic, AdamW 1e-3 with polynomial decay, last step
  kept (see :mod:`weakseg.methods.scribble_settings` and docs/benchmarks.md).
* ``--variant paper``: the published method as the authors' code trains it
  (:data:`~weakseg.methods.scribble_settings.PAPER_MAAG`,
  :class:`~weakseg.methods.adversarial.PaperShapePrior`): supervised loss rescaled to the
  critic's loss, adversarial weight 0.2 on a separate unlabelled batch, a critic with 1x1
  squeeze convolutions, input noise and label flipping, Adam 1e-4 with a cyclic rate and
  the best checkpoint on held-out validation scribbles.
"""

from __future__ import annotations

from weakseg.methods.scribble_settings import ATTENTION_UNET_PCE, PAPER_MAAG
from weakseg.methods.scribble_unet_spec import scribble_unet_spec
from weakseg.methods.spec import SCRIBBLES, UNPAIRED_MASKS

SPEC = scribble_unet_spec(
    name="maag",
    summary="attention U-Net on scribbles + multi-scale adversarial shape prior learnt from unpaired masks",
    learns_from=(SCRIBBLES, UNPAIRED_MASKS),
    defaults={**ATTENTION_UNET_PCE, "adversarial_weight": 1.0, "variant": "weakseg"},
    variants={"paper": PAPER_MAAG},
)
