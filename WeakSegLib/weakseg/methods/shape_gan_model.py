"""A trained ``shape-gan`` model: loading its segmenter and applying it to an image.

Prediction is slice by slice on the training grid: flip-averaged softmax, resized back to
the image, then per slice the largest component with its holes filled (the method
segments one structure, in one piece).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weakseg.engine import load_model_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.inference import check_channels, flip_averaged_softmax, to_image_grid
from weakseg.io import LoadedImage
from weakseg.methods.shape_gan import MODEL_KIND, ShapeGanSettings
from weakseg.methods.shape_gan_data import Grid, image_slices
from weakseg.models.unet import UNet2D
from weakseg.progress import SILENT, Progress


@dataclass
class ShapeGanModel:
    """A trained segmenter with what prediction needs."""

    segmenter: UNet2D
    grid: Grid
    class_names: list[str]
    device: torch.device


def clean_masks(foreground: np.ndarray) -> np.ndarray:
    """Per slice of bool ``(N, H, W)``: the largest connected component with its holes filled."""
    from scipy.ndimage import binary_fill_holes
    from skimage.measure import label as connected_components

    result = np.zeros_like(foreground, dtype=bool)
    for index, mask in enumerate(foreground):
        if not mask.any():
            continue
        components = connected_components(mask, connectivity=2)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[index] = binary_fill_holes(components == sizes.argmax())
    return result


def load_model(path: str, device: torch.device, payload: dict | None = None) -> ShapeGanModel:
    """The segmenter of a ``shape-gan`` model file (see :func:`weakseg.apply.load_model`).

    Raises:
        WeakSegInputError: not a shape-gan model, or a run that has not finished.
    """
    payload, metadata = load_model_checkpoint(path, device, MODEL_KIND, "shape-gan", payload)
    if (metadata.get("state") or {}).get("stage") != "done":
        raise WeakSegInputError(f"{path}: the shape-gan training did not finish; continue it with weakseg train "
                                "... --resume")
    settings = ShapeGanSettings.from_dict(metadata["config"])
    segmenter = UNet2D(int(metadata["in_channels"]), 2, settings.segmenter_channels)
    prefix = "segmenter."
    segmenter.load_state_dict({key[len(prefix):]: value for key, value in payload["model"].items()
                               if key.startswith(prefix)})
    height, width, aspect = metadata["grid"]
    return ShapeGanModel(segmenter.to(device).eval(), Grid(int(height), int(width), float(aspect)),
                         list(metadata["class_names"]), device)


def predict_image(model: ShapeGanModel, image: LoadedImage, progress: Progress = SILENT,
                  post_processing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(Z, Y, X)`` uint8 and probabilities ``(2, Z, Y, X)`` of ``image``, slice by slice.

    Flip-averaged softmax on the grid, resized back to the image; per slice the largest
    component, holes filled (one structure, in one piece). ``post_processing=False``: one
    unflipped pass, thresholded, nothing removed or filled.
    """
    check_channels(model.segmenter.config["in_channels"], image.array.shape[0], image.path)
    slices = image_slices(image, model.grid)
    softmax = flip_averaged_softmax(model.segmenter, slices, model.device, post_processing=post_processing)
    probabilities = to_image_grid(softmax, image.shape_zyx[1:], 1e-6)
    progress.report(1.0, "predicted")
    foreground = probabilities[1] > 0.5
    labels = (clean_masks(foreground) if post_processing else foreground).astype(np.uint8)
    return labels, probabilities
