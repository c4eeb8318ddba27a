"""Applying a 2D network to a volume, shared by every 2D network method.

Slices are resized to the network's square input, run in batches with the softmax
averaged over the four flips (identity, left-right, up-down, both: test-time
augmentation), and the probabilities resized back to the image's slice size, so results
keep the image's grid. :func:`keep_largest_components` is the optional clean-up of
structures that come in one piece.

Flip averaging and the largest-component filter together are the *post-processing*; one
switch, ``post_processing`` (``weakseg predict --no-post-processing``, the ``(raw)`` rows
of ``weakseg bench scribbles``), turns both off so that a network's own output can be
measured: a filter that keeps one component can zero a class whose largest component
is a false one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from weakseg.data import resize_images

PREDICTION_BATCH = 16
FLIPS = ((), (-1,), (-2,), (-2, -1))
NO_FLIPS = ((),)


@torch.no_grad()
def flip_averaged_softmax(network: torch.nn.Module, slices: torch.Tensor, device: torch.device | str,
                          batch_size: int = PREDICTION_BATCH, post_processing: bool = True) -> torch.Tensor:
    """Softmax of ``network`` on ``(N, C, S, S)`` slices averaged over :data:`FLIPS`: ``(N, K, S, S)`` on the CPU.

    ``post_processing=False`` runs the slices once, unflipped (:data:`NO_FLIPS`). The network is put in eval mode.
    """
    flips = FLIPS if post_processing else NO_FLIPS
    network.eval()
    outputs = []
    for start in range(0, len(slices), batch_size):
        batch = slices[start : start + batch_size].to(device)
        total = 0
        for dims in flips:
            flipped = batch.flip(dims) if dims else batch
            probabilities = F.softmax(network(flipped), dim=1)
            total = total + (probabilities.flip(dims) if dims else probabilities)
        outputs.append((total / len(flips)).cpu())
    return torch.cat(outputs)


def to_image_grid(probabilities: torch.Tensor, size_yx: tuple[int, int], floor: float) -> np.ndarray:
    """``(Z, K, S, S)`` probabilities -> ``(K, Z, Y, X)`` float32 on the image's slice size, summing to 1.

    ``floor`` keeps the division safe where every resized probability is ~0.
    """
    resized = resize_images(probabilities, tuple(size_yx)).clamp(min=0)
    resized = resized / resized.sum(dim=1, keepdim=True).clamp(min=floor)
    return np.ascontiguousarray(resized.permute(1, 0, 2, 3).numpy().astype(np.float32))


def keep_largest_components(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Keep the largest connected component of every foreground class ``1..num_classes-1``; the rest -> background."""
    from skimage.measure import label as connected_components

    result = labels.copy()
    for code in range(1, num_classes):
        mask = labels == code
        if not mask.any():
            continue
        components = connected_components(mask, connectivity=mask.ndim)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[mask & (components != sizes.argmax())] = 0
    return result


def check_channels(expected: int, found: int, image_name: str, model_path: str = "") -> None:
    """Raise :class:`~weakseg.errors.WeakSegInputError` when an image's channel count differs from the model's."""
    from weakseg.errors import WeakSegInputError

    if found != expected:
        source = f" ({model_path})" if model_path else ""
        raise WeakSegInputError(
            f"{image_name}: image has {found} channel(s) but the model{source} was trained on {expected}-channel images"
        )
