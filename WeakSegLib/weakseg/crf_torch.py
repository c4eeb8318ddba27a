"""The dense CRF's torch back-end: mean-field with exact kernels for small blocks, windowed ones otherwise.

Called by :func:`weakseg.crf.refine_with_crf` (which checks the inputs and builds the
features); see there for the model and the parameters (:class:`weakseg.crf.CrfParams`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from weakseg.crf_grid import active_axes, blocks, positions_mm

if TYPE_CHECKING:
    from weakseg.crf import CrfParams

# The separable smoothness kernel reaches this many standard deviations.
SMOOTHNESS_TRUNCATE = 3.0
# Voxels per slab when a 3D volume is refined slab by slab.
SLAB_VOXELS = 2_000_000
# Kernel values below e^-40 are negligible; clamping the exponent there also keeps
# exp() off its slow path for subnormal results (10-20x slower on x86).
LOG_KERNEL_FLOOR = -40.0
# Memory the torch backend may spend keeping neighbour weights between iterations.
WEIGHT_CACHE_BYTES = 128 * 2**20

def refine_torch(
    features: np.ndarray, log_probabilities: np.ndarray, spacing: tuple[float, float, float], params: CrfParams, mode: str
) -> np.ndarray:
    """Mean-field in torch: exact kernels for small blocks, truncated windowed ones otherwise."""
    axes = active_axes(mode)
    block_voxels = int(np.prod(log_probabilities.shape[1:])) if mode == "3d" else int(np.prod(log_probabilities.shape[2:]))
    with torch.no_grad():
        features_t = torch.from_numpy(features)
        log_probabilities_t = torch.from_numpy(log_probabilities)
        if block_voxels <= params.exact_max_voxels:
            refined = torch.empty_like(log_probabilities_t)
            for block in blocks(mode, log_probabilities.shape[1:]):
                refined[:, block] = _exact_block(
                    features_t[:, block], log_probabilities_t[:, block], spacing, axes, params
                )
        else:
            refined = _windowed_mean_field(features_t, log_probabilities_t, spacing, axes, params)
    return refined.numpy()


def _exact_block(
    features: torch.Tensor,
    log_probabilities: torch.Tensor,
    spacing: tuple[float, float, float],
    axes: tuple[int, ...],
    params: CrfParams,
) -> torch.Tensor:
    """Exact dense mean-field on one small block with the full ``N × N`` kernel matrices.

    Memory is a few ``N × N`` float32 matrices, hence :attr:`CrfParams.exact_max_voxels`.
    """
    classes, *shape = log_probabilities.shape
    count = int(np.prod(shape))
    block_shape = tuple(shape[axis] for axis in axes)
    positions = torch.from_numpy(positions_mm(block_shape, tuple(spacing[axis] for axis in axes))).T
    intensities = features.reshape(features.shape[0], count).T
    squared_position = torch.cdist(positions, positions).square_()
    appearance = torch.cdist(intensities, intensities).square_()
    appearance.add_(squared_position, alpha=1.0 / params.appearance_position_mm**2).mul_(-0.5)
    appearance.clamp_(min=LOG_KERNEL_FLOOR).exp_()
    smoothness = squared_position.mul_(-0.5 / params.smoothness_position_mm**2).clamp_(min=LOG_KERNEL_FLOOR).exp_()
    pairwise = appearance.div_(appearance.sum(dim=1, keepdim=True)).mul_(params.appearance_weight)
    pairwise.add_(smoothness.div_(smoothness.sum(dim=1, keepdim=True)), alpha=params.smoothness_weight)
    unary = log_probabilities.reshape(classes, count)
    q = torch.softmax(unary, dim=0)
    for _ in range(params.iterations):
        q = torch.softmax(unary + q @ pairwise.T, dim=0)
    return q.reshape(classes, *shape)


@dataclass(frozen=True)
class _Offset:
    """A neighbour displacement ``(dz, dy, dx)`` in voxels and its log position weight."""

    shift: tuple[int, int, int]
    log_weight: float


def _appearance_offsets(spacing: tuple[float, float, float], axes: tuple[int, ...], params: CrfParams) -> list[_Offset]:
    """Half of the sampled neighbour displacements (the other half is their negatives).

    Along each active axis, displacements reach ``truncate`` σ_pa, sampled every
    ``stride`` voxels with at most ``window`` samples each side; displacements outside
    the ``truncate`` σ ellipsoid are dropped. Each sample stands for the ``prod(stride)``
    voxels of its cell, so its weight is multiplied by that volume and a sparse grid
    gives the same total weight as the dense one.
    """
    sigma = params.appearance_position_mm
    ranges = []
    cell_volume = 1
    for axis in range(3):
        reach = int(params.truncate * sigma / spacing[axis]) if axis in axes else 0
        stride = max(1, math.ceil(reach / params.window))
        cell_volume *= stride
        ranges.append(range(-(reach // stride) * stride, reach + 1, stride))
    offsets = []
    for dz in ranges[0]:
        for dy in ranges[1]:
            for dx in ranges[2]:
                shift = (dz, dy, dx)
                if shift <= (0, 0, 0):
                    continue
                distance_sq = sum((step * size / sigma) ** 2 for step, size in zip(shift, spacing))
                if distance_sq <= params.truncate**2:
                    offsets.append(_Offset(shift, math.log(cell_volume) - 0.5 * distance_sq))
    return offsets


def _smoothness_taps(spacing: tuple[float, float, float], axes: tuple[int, ...], sigma_mm: float) -> list[np.ndarray]:
    """Per axis (Z, Y, X), 1D Gaussian weights for displacements ``1..r`` (empty for no smoothing)."""
    taps = []
    for axis in range(3):
        reach = int(SMOOTHNESS_TRUNCATE * sigma_mm / spacing[axis]) if axis in axes else 0
        steps = np.arange(1, reach + 1) * spacing[axis] / sigma_mm
        taps.append(np.exp(-0.5 * steps**2).astype(np.float32))
    return taps


def _windowed_mean_field(
    features: torch.Tensor,
    log_probabilities: torch.Tensor,
    spacing: tuple[float, float, float],
    axes: tuple[int, ...],
    params: CrfParams,
) -> torch.Tensor:
    """Mean-field with truncated kernels on ``(C, Z, Y, X)`` features and ``(K, Z, Y, X)`` log-probabilities.

    The appearance weights of every neighbour pair do not change between iterations,
    so they are computed once and kept, for slabs of slices whose weights fit in
    :data:`WEIGHT_CACHE_BYTES`. In 2D the slices are independent and slabs are simply
    refined one after the other. A 3D volume too large for the cache is refined with
    the weights recomputed at every iteration (see :func:`_streamed_mean_field`).
    """
    offsets = _appearance_offsets(spacing, axes, params)
    taps = _smoothness_taps(spacing, axes, params.smoothness_position_mm)
    depth, height, width = log_probabilities.shape[1:]
    slice_bytes = 4 * height * width * max(1, len(offsets))
    if axes == (0, 1, 2):
        if depth * slice_bytes > WEIGHT_CACHE_BYTES:
            return _streamed_mean_field(features, log_probabilities, offsets, taps, params)
        return _cached_mean_field(features, log_probabilities, offsets, taps, params)
    refined = torch.empty_like(log_probabilities)
    slab = max(1, WEIGHT_CACHE_BYTES // slice_bytes)
    for start in range(0, depth, slab):
        stop = min(depth, start + slab)
        refined[:, start:stop] = _cached_mean_field(
            features[:, start:stop], log_probabilities[:, start:stop], offsets, taps, params
        )
    return refined


def _cached_mean_field(
    features: torch.Tensor, log_probabilities: torch.Tensor, offsets: list[_Offset], taps: list[np.ndarray], params: CrfParams
) -> torch.Tensor:
    """Mean-field on one slab with its neighbour weights computed once (``len(offsets)`` slab-sized tensors)."""
    pairs = list(_neighbour_pairs(features, offsets))
    q = torch.softmax(log_probabilities, dim=0)
    for _ in range(params.iterations):
        q = torch.softmax(_updated_logits(log_probabilities, q, pairs, taps, params), dim=0)
    return q


def _streamed_mean_field(
    features: torch.Tensor, log_probabilities: torch.Tensor, offsets: list[_Offset], taps: list[np.ndarray], params: CrfParams
) -> torch.Tensor:
    """3D mean-field over slabs of slices with a halo, weights recomputed every iteration.

    Each iteration updates every voxel from the previous ``Q`` (parallel update); a slab
    reads ``halo`` extra slices on each side so that messages across slab borders are
    exact. Memory beyond the inputs and outputs stays a few slab-sized tensors.
    """
    halo = max([abs(offset.shift[0]) for offset in offsets] + [len(taps[0])])
    depth, height, width = log_probabilities.shape[1:]
    slab = max(1, SLAB_VOXELS // (height * width))
    q = torch.softmax(log_probabilities, dim=0)
    for _ in range(params.iterations):
        logits = torch.empty_like(log_probabilities)
        for start in range(0, depth, slab):
            stop = min(depth, start + slab)
            low, high = max(0, start - halo), min(depth, stop + halo)
            pairs = _neighbour_pairs(features[:, low:high], offsets)
            slab_logits = _updated_logits(log_probabilities[:, low:high], q[:, low:high], pairs, taps, params)
            logits[:, start:stop] = slab_logits[:, start - low : stop - low]
        q = torch.softmax(logits, dim=0)
    return q


def _updated_logits(
    log_probabilities: torch.Tensor,
    q: torch.Tensor,
    pairs: Iterable[tuple[tuple, tuple, torch.Tensor]],
    taps: list[np.ndarray],
    params: CrfParams,
) -> torch.Tensor:
    """``log P + w_a M_a(Q) + w_s M_s(Q)``, all ``(K, z, Y, X)``."""
    logits = log_probabilities.clone()
    if params.appearance_weight > 0:
        logits.add_(_appearance_messages(q, pairs), alpha=params.appearance_weight)
    if params.smoothness_weight > 0:
        logits.add_(_smoothness_messages(q, taps), alpha=params.smoothness_weight)
    return logits


def _shifted_views(shift: tuple[int, int, int], shape: tuple[int, ...]) -> tuple[tuple, tuple] | None:
    """Index tuples ``(here, there)`` so that ``there`` is ``here`` moved by ``shift``; None if out of the grid."""
    here, there = [slice(None)], [slice(None)]
    for step, size in zip(shift, shape):
        if abs(step) >= size:
            return None
        here.append(slice(max(0, -step), size - max(0, step)))
        there.append(slice(max(0, step), size - max(0, -step)))
    return tuple(here), tuple(there)


def _neighbour_pairs(
    features: torch.Tensor, offsets: list[_Offset]
) -> Iterator[tuple[tuple, tuple, torch.Tensor]]:
    """For each offset, the views ``(here, there)`` and the appearance weights between them.

    Args:
        features: ``(C, z, Y, X)`` intensities in units of σ_I.
        offsets: half of the neighbour displacements.

    Yields:
        ``here``, ``there``: index tuples (leading ``slice(None)`` for the channel axis);
        ``weights``: float32 tensor of the overlap's shape, ``k_a`` between ``here`` and
        ``there`` times the sample's cell volume.
    """
    for offset in offsets:
        views = _shifted_views(offset.shift, features.shape[1:])
        if views is None:
            continue
        here, there = views
        weights = (features[here] - features[there]).square_().sum(dim=0)
        yield here, there, weights.mul_(-0.5).add_(offset.log_weight).clamp_(min=LOG_KERNEL_FLOOR).exp_()


def _appearance_messages(q: torch.Tensor, pairs: Iterable[tuple[tuple, tuple, torch.Tensor]]) -> torch.Tensor:
    """Bilateral-kernel average of ``q`` ``(K, z, Y, X)`` around each voxel, itself included.

    Each pair's weights serve both directions (the kernel is symmetric). Returns
    ``(K, z, Y, X)`` messages in [0, 1].
    """
    totals = q.clone()
    norms = torch.ones(q.shape[1:], dtype=q.dtype)
    for here, there, weights in pairs:
        totals[here].addcmul_(weights, q[there])
        totals[there].addcmul_(weights, q[here])
        norms[here[1:]].add_(weights)
        norms[there[1:]].add_(weights)
    return totals.div_(norms)


def _smoothness_messages(q: torch.Tensor, taps: list[np.ndarray]) -> torch.Tensor:
    """Separable Gaussian average of ``q`` ``(K, z, Y, X)``, normalised near the borders."""
    stacked = torch.cat([q, torch.ones_like(q[:1])])
    for axis, axis_taps in enumerate(taps):
        if len(axis_taps):
            stacked = _blur_along(stacked, axis + 1, axis_taps)
    return stacked[:-1].div_(stacked[-1:])


def _blur_along(values: torch.Tensor, dim: int, taps: np.ndarray) -> torch.Tensor:
    """Zero-padded 1D Gaussian blur of ``values`` along ``dim`` (centre weight 1)."""
    size = values.shape[dim]
    blurred = values.clone()
    for step, weight in enumerate(taps, start=1):
        if step >= size:
            break
        blurred.narrow(dim, step, size - step).add_(values.narrow(dim, 0, size - step), alpha=float(weight))
        blurred.narrow(dim, 0, size - step).add_(values.narrow(dim, step, size - step), alpha=float(weight))
    return blurred
