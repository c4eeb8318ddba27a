"""The :class:`~weakseg.methods.spec.MethodSpec` shared by the scribble U-Net methods (cohort, pce, maag).

They differ only in their settings' defaults and in the weak labels they take; training,
the model file, prediction and adaptation are the same code.
"""

from __future__ import annotations

from weakseg.methods.scribble_settings import CohortConfig
from weakseg.methods.spec import TRAINED, UNPAIRED_MASKS, MethodSpec

MODEL_KIND = "cohort-unet2d"


def scribble_unet_spec(name: str, summary: str, learns_from: tuple[str, ...], defaults: dict,
                       variants: dict | None = None) -> MethodSpec:
    """The spec of one scribble U-Net method: ``defaults`` replace :class:`CohortConfig`'s.

    ``variants`` (the shape-prior method only) maps a ``--variant`` value to the defaults it brings.
    """
    shape_prior = UNPAIRED_MASKS in learns_from
    return MethodSpec(
        name=name,
        summary=summary,
        learns_from=learns_from,
        usage=TRAINED,
        settings=CohortConfig,
        defaults=defaults,
        train="weakseg.methods.scribble_training:train",
        load="weakseg.methods.scribble_unet:load_cohort_model",
        predict="weakseg.methods.scribble_unet:predict_volume",
        adapt="weakseg.methods.scribble_unet:adapt_model",
        model_kind=MODEL_KIND,
        needs_unpaired_masks=shape_prior,
        hidden_options=() if shape_prior else ("--adversarial-weight", "--variant", "--validation-fraction"),
        data_parallel=True,
        variants=variants or {},
    )
