"""Applying a 2D network to a volume, shared by every 2D network method.

Slices are resized to the network's square input, run in batches with the softmax
averaged over the four flips (identity, left-right, up-down, both: test-time
augmentation), and the probabilities resized back to the image's slice size, so results
keep the image's grid. :func:`weakseg.components.keep_largest_components` is the optional
clean-up of structures that come in one piece.

Flip averaging and the largest-component filter together are the *post-processing*; one
switch, ``post_processing`` (``weakseg predict --no-post-processing``, the ``(raw)`` rows
of ``weakseg bench scribbles``), turns both off so that a network's own output can be
measured: a filter that keeps one component can zero a class whose largest component
is a false one.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from weakseg.data import resize_images

# Slices per forward pass. On a 2-core CPU 8 was the fastest of 2-48 for the default
# cohort network (128 px): larger batches allocate blocks the C allocator hands back to the
# system after each use, and touching fresh pages costs more than the larger matrix products
# save (see docs/benchmarks.md, "predict").
PREDICTION_BATCH = 8
FLIPS = ((), (-1,), (-2,), (-2, -1))
NO_FLIPS = ((),)


def fold_batch_norm(network: nn.Module) -> nn.Module:
    """A copy of ``network`` for prediction, with each batch norm folded into the convolution before it.

    In eval mode a ``BatchNorm2d`` right after a ``Conv2d`` (as in every block of
    :mod:`weakseg.models`) is an affine map per channel, so it is merged into that
    convolution's weights and bias and replaced by an identity: one pass over the feature
    maps fewer per block, the same outputs up to float rounding. Batch norms that do not
    directly follow a convolution in an ``nn.Sequential`` are left as they are; ``network``
    itself is not changed. The copy is in eval mode.
    """
    folded = copy.deepcopy(network).eval()
    for container in folded.modules():
        if not isinstance(container, nn.Sequential):
            continue
        for index in range(len(container) - 1):
            convolution, norm = container[index], container[index + 1]
            if not (isinstance(convolution, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                    and norm.track_running_stats and norm.running_var is not None):
                continue
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.affine:
                scale = scale * norm.weight
            shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0)
            bias = convolution.bias if convolution.bias is not None else torch.zeros_like(shift)
            with torch.no_grad():
                convolution.weight.mul_(scale.reshape(-1, 1, 1, 1))
                convolution.bias = nn.Parameter(bias * scale + shift)
            container[index + 1] = nn.Identity()
    return folded


@torch.no_grad()
def flip_averaged_softmax(network: torch.nn.Module, slices: torch.Tensor, device: torch.device | str,
                          batch_size: int = PREDICTION_BATCH, post_processing: bool = True) -> torch.Tensor:
    """Softmax of ``network`` on ``(N, C, S, S)`` slices averaged over :data:`FLIPS`: ``(N, K, S, S)`` on the CPU.

    ``post_processing=False`` runs the slices once, unflipped (:data:`NO_FLIPS`). The network is put in
    eval mode and runs as a copy with its batch norms folded (:func:`fold_batch_norm`); on the CPU in
    channels-last memory order, which lets the convolutions skip reordering their input and output at
    every layer (about 1.5x faster on the default cohort network, same results up to float rounding).
    """
    flips = FLIPS if post_processing else NO_FLIPS
    network.eval()
    channels_last = torch.device(device).type == "cpu"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    runner = fold_batch_norm(network).to(device=device, memory_format=memory_format)
    outputs = []
    for start in range(0, len(slices), batch_size):
        batch = slices[start : start + batch_size].to(device).contiguous(memory_format=memory_format)
        total = 0
        for dims in flips:
            flipped = batch.flip(dims) if dims else batch
            probabilities = F.softmax(runner(flipped), dim=1)
            total = total + (probabilities.flip(dims) if dims else probabilities)
        outputs.append((total / len(flips)).cpu().contiguous())
    return torch.cat(outputs)


def to_image_grid(probabilities: torch.Tensor, size_yx: tuple[int, int], floor: float) -> np.ndarray:
    """``(Z, K, S, S)`` probabilities -> ``(K, Z, Y, X)`` float32 on the image's slice size, summing to 1.

    ``floor`` keeps the division safe where every resized probability is ~0. The classes
    are moved to the front before resizing (each class map is resized on its own either
    way), so the result is written once in its final order, in place.
    """
    by_class = probabilities.float().permute(1, 0, 2, 3).contiguous()
    resized = resize_images(by_class, tuple(size_yx))
    resized = resized.clone() if resized is by_class else resized
    resized.clamp_(min=0)
    resized.div_(resized.sum(dim=0, keepdim=True).clamp_(min=floor))
    return resized.numpy()


def most_probable_class(probabilities: np.ndarray) -> np.ndarray:
    """uint8 codes of the highest of ``(K, ...)`` probabilities, the first on ties: ``argmax(axis=0)``.

    One running maximum over the classes, each a contiguous block: about half the time of
    ``np.argmax`` over the first axis, and a sixth of torch's, on a 256x256x150 volume.
    """
    best = probabilities[0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    for code in range(1, len(probabilities)):
        labels[probabilities[code] > best] = code
        np.maximum(best, probabilities[code], out=best)
    return labels


def check_channels(expected: int, found: int, image_name: str, model_path: str = "") -> None:
    """Raise :class:`~weakseg.errors.WeakSegInputError` when an image's channel count differs from the model's."""
    from weakseg.errors import WeakSegInputError

    if found != expected:
        source = f" ({model_path})" if model_path else ""
        raise WeakSegInputError(
            f"{image_name}: image has {found} channel(s) but the model{source} was trained on {expected}-channel images"
        )
