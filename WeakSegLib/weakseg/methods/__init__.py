"""Segmentation methods: each turns an image and its weak labels into a class labelmap.

:func:`segment_image` is the one entry point the command line, the benchmark and the
Slicer module use, so that every caller runs a method the same way.
"""

from __future__ import annotations

import numpy as np

from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage
from weakseg.progress import SILENT, Progress
from weakseg.weak_labels import Scribbles

METHODS = ("weakseg", "growcut")


def segment_image(
    image: LoadedImage,
    scribbles: Scribbles,
    method: str = "weakseg",
    model=None,
    steps: int | None = None,
    device_name: str = "auto",
    seed: int = 0,
    progress: Progress = SILENT,
) -> np.ndarray:
    """Segment ``image`` from ``scribbles``; returns uint8 class codes ``(Z, Y, X)``.

    Args:
        method: ``"weakseg"`` (learn from the scribbles) or ``"growcut"`` (Slicer's Grow
            from seeds, the baseline).
        model: a cohort model (:func:`weakseg.methods.cohort.load_cohort_model`) to adapt
            to these scribbles instead of learning from scratch (``weakseg`` only).
        steps: training steps, or None for the method's default.
    """
    if method not in METHODS:
        raise WeakSegInputError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "growcut":
        if model is not None:
            raise WeakSegInputError("method 'growcut' does not use a model; drop --model or use --method weakseg")
        from weakseg.methods.growcut import segment_growcut

        progress.report(0.0, "growing from seeds")
        labels = segment_growcut(image, scribbles)
        progress.report(1.0, "done")
        return labels
    import torch

    from weakseg.engine import pick_device

    device = pick_device(device_name)
    torch.manual_seed(seed)
    if model is not None:
        from weakseg.methods.cohort import adapt_to_scribbles

        kwargs = {"steps": steps} if steps else {}
        labels, _ = adapt_to_scribbles(model, image, scribbles, progress=progress, **kwargs)
        return labels
    from weakseg.methods.interactive import InteractiveConfig, segment_interactive

    config = InteractiveConfig()
    if steps:
        config.steps = steps
    return segment_interactive(image, scribbles, config, progress, device, seed)
