"""Running any registered method: load a model file whatever its method, segment or predict an image.

The command line, the benchmarks and the demo call these, so every caller runs a method
the same way; which code runs comes from the method's spec (:mod:`weakseg.methods.registry`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage
from weakseg.methods.registry import method_for_model, method_named
from weakseg.methods.spec import PER_IMAGE, MethodSpec
from weakseg.progress import SILENT, Progress
from weakseg.weak_labels import Scribbles


@dataclass
class TrainedModel:
    """A model file loaded by its method: the method's spec, its model object, the file."""

    spec: MethodSpec
    model: Any
    path: str

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names)


def load_model(path: str | os.PathLike, device: Any = "cpu") -> TrainedModel:
    """Load a model file written by ``weakseg train`` with the method that wrote it.

    Raises:
        WeakSegInputError: missing, unreadable or damaged file, or a model of no known method.
    """
    from weakseg.engine import load_checkpoint, pick_device

    device = pick_device(device) if isinstance(device, str) else device
    payload = load_checkpoint(path, device)
    spec = method_for_model(payload.get("metadata") or {}, str(path))
    return TrainedModel(spec, spec.function("load")(path, device, payload), str(path))


def segment_image(
    image: LoadedImage,
    scribbles: Scribbles,
    method: str = "interactive",
    model: TrainedModel | None = None,
    steps: int | None = None,
    device_name: str = "auto",
    seed: int = 0,
    progress: Progress = SILENT,
    settings: Any = None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Segment ``image`` from ``scribbles``; returns uint8 class codes ``(Z, Y, X)``.

    Args:
        method: a per-image method (``interactive``, ``growcut``; old spellings accepted).
        model: a trained model to adapt to these scribbles instead (its method must adapt;
            ``method`` must then be ``interactive``, the method that learns).
        steps: training (or adaptation) steps, or None for the method's default.
        settings: the method's settings; None takes its defaults (and ``steps``).
        cache_dir: a folder of networks trained on earlier runs (method ``interactive``
            only): a run on an image segmented before starts from its network and takes
            fewer steps (:mod:`weakseg.warm_start`); the network trained now is stored there.
    """
    spec = method_named(method, PER_IMAGE)
    from weakseg.engine import pick_device

    if cache_dir is not None and (spec.name != "interactive" or model is not None):
        raise WeakSegInputError(f"--cache {cache_dir}: only the interactive method without --model keeps a cache")

    if model is not None:
        if spec.name != "interactive":
            raise WeakSegInputError(f"method {spec.name!r} does not use a model; drop --model or use --method interactive")
        if not model.spec.adapt:
            raise WeakSegInputError(f"{model.path}: a {model.spec.name} model cannot adapt to scribbles")
        import torch

        pick_device(device_name)
        torch.manual_seed(seed)
        labels, _ = model.spec.function("adapt")(model.model, image, scribbles, progress, steps)
        return labels
    device = pick_device(device_name)
    if settings is None and spec.settings is not None:
        settings = spec.make_settings(**({"steps": steps} if steps else {}))
    if cache_dir is None:
        return spec.function("segment")(image, scribbles, settings, device, progress, seed)
    from weakseg.warm_start import WarmStartCache

    return spec.function("segment")(image, scribbles, settings, device, progress, seed, WarmStartCache(cache_dir))


def predict_image(model: TrainedModel, image: LoadedImage, progress: Progress = SILENT,
                  post_processing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Segment ``image`` with a trained model, without scribbles: labels ``(Z, Y, X)``, probabilities ``(K, Z, Y, X)``.

    ``post_processing=False`` returns the network's raw output (no flip averaging, no
    largest-component filter; :mod:`weakseg.inference`); True keeps the model's own settings.
    """
    return model.spec.function("predict")(model.model, image, progress, post_processing=post_processing)
