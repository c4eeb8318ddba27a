"""Dense-CRF refinement of per-voxel class probabilities (Krähenbühl & Koltun, NeurIPS 2011).

A network trained from scribbles tends to leak across faint edges and to leave small
islands. A fully connected CRF fixes much of that by letting each voxel take the class
that nearby voxels *of similar intensity* hold. The energy of a labelling ``x`` is

    E(x) = sum_i -log P_i(x_i)  +  sum_{i<j} [x_i != x_j] (w_a k_a(i, j) + w_s k_s(i, j))

with the Potts compatibility ``[x_i != x_j]`` and two Gaussian kernels:

* appearance (bilateral): ``k_a = exp(-|p_i - p_j|² / 2σ_pa² - |I_i - I_j|² / 2σ_I²)``
  joins near voxels that look alike, so labels spread up to intensity edges;
* smoothness: ``k_s = exp(-|p_i - p_j|² / 2σ_ps²)`` removes isolated voxels.

Positions ``p`` are in millimetres (index × spacing), so the same parameters fit any
voxel size and anisotropic volumes. Intensities ``I`` are divided by each channel's
robust range (99th minus 1st percentile), so ``σ_I`` is a fraction of the image's
contrast and the same value serves MRI, CT (HU) and RGB pictures alike.

Inference is the usual mean-field iteration: starting from ``Q = P``, repeat
``Q_i(l) ∝ exp(log P_i(l) + w_a M^a_i(l) + w_s M^s_i(l))`` where ``M_i(l)`` is the
kernel-weighted average of ``Q_j(l)`` over the neighbours ``j`` of ``i`` (itself
included with weight 1). Averaging (each kernel normalised to sum 1 around every
voxel, pydensecrf's ``NORMALIZE_AFTER``) makes a weight mean "how many units of
log-probability full agreement of the neighbourhood is worth", independent of voxel
size. Potts compatibility makes the penalty ``w (1 - M(l))`` equivalent to this
reward.

Two backends compute the same model:

* ``"pydensecrf"``: the authors' permutohedral-lattice filtering (``pip install
  pydensecrf2``, needs a C++ compiler). Exact kernels, approximate filtering.
* ``"torch"``: no compiler needed (Slicer on Windows and macOS). Volumes up to
  ``exact_max_voxels`` per block use the exact dense kernel matrix. Larger ones use a
  truncated dense CRF in the spirit of ConvCRF (Teichmann & Cipolla, 2018): messages
  from neighbours within ``truncate`` standard deviations, sampled on a grid with at
  most ``window`` samples each side per axis (a sparser grid for wide kernels, each
  sample standing for the voxels of its grid cell). The smoothness kernel is separable
  and is applied exactly, axis by axis. Messages are accumulated with shifted views of
  the volume (no ``unfold``), and slabs of slices are processed one at a time, so the
  memory beyond the inputs and outputs stays small.

Slice-wise or 3D: with ``mode="auto"`` a volume whose slice spacing exceeds
:data:`ANISOTROPY_RATIO` times its in-plane spacing (cine MRI: 1.5 mm pixels, 8 mm
slices) is refined slice by slice in 2D, since voxels of adjacent thick slices show
different anatomy; otherwise the refinement is 3D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from weakseg.crf_grid import active_axes, blocks, positions_mm
from weakseg.errors import WeakSegInputError

BACKENDS = ("auto", "pydensecrf", "torch")
MODES = ("auto", "2d", "3d")
# "auto" mode is slice-wise when slice spacing > ANISOTROPY_RATIO x in-plane spacing.
ANISOTROPY_RATIO = 2.0
# Percentiles whose difference is a channel's robust intensity range.
ROBUST_PERCENTILES = (1.0, 99.0)
# Largest accepted deviation of the input probabilities' class sum from 1.
SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CrfParams:
    """Parameters of the dense CRF. Lengths are in mm; the defaults suit cardiac MRI.

    The defaults were chosen on ACDC validation cases (patients 061, 065, 068) by
    refining degraded ground truth (randomly warped by about 3 pixels, or with
    correlated and pixel noise) in 2D at the 1 mm spacing those files carry: mean
    foreground Dice rose from 0.74 to 0.76 (warped) and from 0.61 to 0.86 (noisy), the
    thin myocardium gaining least (and losing a little on the two smaller hearts). A
    narrow reach and a tight intensity σ matter most: wider kernels (8 to 15 mm) or a
    looser σ_I (0.2) erode the myocardium into the similar-looking background.

    Attributes:
        appearance_position_mm: σ_pa, spatial reach of the appearance (bilateral) kernel.
        appearance_intensity: σ_I as a fraction of each channel's robust intensity range
            (99th - 1st percentile): 0.1 joins voxels whose intensities differ by about
            a tenth of the image's contrast.
        appearance_weight: w_a, log-probability units that full agreement of the
            similar-looking neighbourhood adds to a class.
        smoothness_position_mm: σ_ps, reach of the position-only smoothness kernel.
        smoothness_weight: w_s.
        iterations: mean-field iterations (5 to 10 converge in practice).
        mode: ``"2d"`` slice by slice, ``"3d"``, or ``"auto"`` (2D when the slice
            spacing is more than :data:`ANISOTROPY_RATIO` times the in-plane spacing).
        probability_floor: probabilities are raised to at least this before taking the
            log, so that an overconfident input can still be corrected (1e-4 caps a
            unary cost at about 9.2).
        truncate: torch backend, neighbours farther than this many σ_pa are ignored.
        window: torch backend, at most this many neighbour samples each side per axis.
        exact_max_voxels: torch backend, blocks (a slice in 2D, the volume in 3D) with
            at most this many voxels use the exact ``N × N`` kernel matrix.
    """

    appearance_position_mm: float = 4.0
    appearance_intensity: float = 0.05
    appearance_weight: float = 6.0
    smoothness_position_mm: float = 1.5
    smoothness_weight: float = 2.0
    iterations: int = 5
    mode: str = "auto"
    probability_floor: float = 1e-4
    truncate: float = 2.0
    window: int = 5
    exact_max_voxels: int = 2500

    def __post_init__(self) -> None:
        for name in ("appearance_position_mm", "appearance_intensity", "smoothness_position_mm", "truncate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise WeakSegInputError(f"CRF parameter {name} must be a positive number, got {value}")
        for name in ("appearance_weight", "smoothness_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise WeakSegInputError(f"CRF parameter {name} must be zero or positive, got {value}")
        if self.iterations < 0 or self.window < 1 or self.exact_max_voxels < 0:
            raise WeakSegInputError(
                f"CRF parameters iterations ({self.iterations}), window ({self.window}) and "
                f"exact_max_voxels ({self.exact_max_voxels}) must be >= 0, >= 1 and >= 0"
            )
        if not 0 < self.probability_floor < 1:
            raise WeakSegInputError(f"CRF parameter probability_floor must lie in (0, 1), got {self.probability_floor}")
        if self.mode not in MODES:
            raise WeakSegInputError(f"CRF mode must be one of {', '.join(MODES)}, got {self.mode!r}")


def pydensecrf_available() -> bool:
    """Whether the compiled pydensecrf backend (``pip install pydensecrf2``) can be imported.

    Any failure counts as unavailable, not only ImportError: a wheel built against
    another numpy can fail with other errors, and "auto" must then fall back to torch.
    """
    try:
        import pydensecrf.densecrf  # noqa: F401
    except Exception:
        return False
    return True


def resolve_mode(mode: str, spacing_zyx: tuple[float, float, float], shape_zyx: tuple[int, int, int]) -> str:
    """``"2d"`` or ``"3d"``: ``"auto"`` is 2D for one slice or thick slices, else 3D."""
    if mode != "auto":
        return mode
    if shape_zyx[0] == 1:
        return "2d"
    in_plane = max(spacing_zyx[1], spacing_zyx[2])
    return "2d" if spacing_zyx[0] > ANISOTROPY_RATIO * in_plane else "3d"


def refine_with_crf(
    image: np.ndarray,
    probabilities: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    params: CrfParams | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Refine class probabilities with a dense CRF on the image.

    Args:
        image: float ``(C, Z, Y, X)`` intensities, any units (C = 1 grey, 3 RGB, ...).
        probabilities: float ``(K, Z, Y, X)``, non-negative and summing to 1 over K.
        spacing_zyx: voxel size in mm in array order.
        params: CRF parameters; ``None`` for the defaults.
        backend: ``"pydensecrf"``, ``"torch"``, or ``"auto"`` (pydensecrf when it can be
            imported, torch otherwise).

    Returns:
        float32 ``(K, Z, Y, X)`` refined probabilities summing to 1 over K.

    Raises:
        WeakSegInputError: inconsistent shapes, non-finite values, probabilities that do
            not sum to 1, bad spacing, or an unknown/unavailable backend.
    """
    params = params or CrfParams()
    image, probabilities, spacing = _checked_inputs(image, probabilities, spacing_zyx)
    backend = _resolve_backend(backend)
    if probabilities.shape[0] == 1 or params.iterations == 0:
        return probabilities.copy()
    mode = resolve_mode(params.mode, spacing, probabilities.shape[1:])
    features = _appearance_features(image, params.appearance_intensity)
    log_probabilities = _floored_log(probabilities, params.probability_floor)
    if backend == "pydensecrf":
        return _refine_pydensecrf(features, log_probabilities, spacing, params, mode)
    from weakseg.crf_torch import refine_torch

    return refine_torch(features, log_probabilities, spacing, params, mode)


def _checked_inputs(
    image: np.ndarray, probabilities: np.ndarray, spacing_zyx
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """float32 contiguous copies of the inputs after checking shapes, values and spacing."""
    image = np.asarray(image)
    probabilities = np.asarray(probabilities)
    if image.ndim != 4 or probabilities.ndim != 4 or image.shape[1:] != probabilities.shape[1:]:
        raise WeakSegInputError(
            f"CRF needs an image (C, Z, Y, X) and probabilities (K, Z, Y, X) on the same grid; "
            f"got image shape {image.shape} and probabilities shape {probabilities.shape}"
        )
    if 0 in image.shape or 0 in probabilities.shape:
        raise WeakSegInputError(f"CRF got an empty array: image shape {image.shape}, probabilities shape {probabilities.shape}")
    spacing = tuple(float(value) for value in np.ravel(spacing_zyx))
    if len(spacing) != 3 or not all(math.isfinite(value) and value > 0 for value in spacing):
        raise WeakSegInputError(f"CRF spacing must be three positive numbers (z, y, x) in mm, got {spacing_zyx}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
    if not np.all(np.isfinite(image)):
        raise WeakSegInputError("CRF image contains NaN or infinite values")
    if not np.all(np.isfinite(probabilities)) or probabilities.min() < -SUM_TOLERANCE:
        raise WeakSegInputError("CRF probabilities must be finite and non-negative")
    sums = probabilities.sum(axis=0)
    if np.abs(sums - 1).max() > SUM_TOLERANCE:
        raise WeakSegInputError(
            f"CRF probabilities must sum to 1 over the class axis (axis 0 of shape {probabilities.shape}); "
            f"sums range from {sums.min():.4g} to {sums.max():.4g}"
        )
    return image, probabilities, spacing  # type: ignore[return-value]


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise WeakSegInputError(f"CRF backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "pydensecrf" if pydensecrf_available() else "torch"
    if backend == "pydensecrf" and not pydensecrf_available():
        raise WeakSegInputError("CRF backend 'pydensecrf' is not installed (pip install pydensecrf2); use 'torch'")
    return backend


def _appearance_features(image: np.ndarray, intensity_fraction: float) -> np.ndarray:
    """``(C, Z, Y, X)`` float32 intensities in units of σ_I.

    Each channel is divided by ``intensity_fraction`` times its robust range (99th
    minus 1st percentile; the full range if that is zero, 1 if the channel is flat),
    so that a difference of 1 in these units is one σ_I of the appearance kernel.
    """
    features = np.empty_like(image)
    for channel, values in enumerate(image):
        low, high = np.percentile(values, ROBUST_PERCENTILES)
        spread = float(high - low) or float(values.max() - values.min()) or 1.0
        features[channel] = (values - low) / (spread * intensity_fraction)
    return features


def _floored_log(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """``log`` of probabilities raised to ``floor`` and renormalised; float32 ``(K, Z, Y, X)``."""
    floored = np.maximum(probabilities, floor)
    floored /= floored.sum(axis=0, keepdims=True)
    return np.log(floored)


def _refine_pydensecrf(
    features: np.ndarray, log_probabilities: np.ndarray, spacing: tuple[float, float, float], params: CrfParams, mode: str
) -> np.ndarray:
    """Mean-field with pydensecrf's permutohedral lattice, block by block (see :func:`_blocks`)."""
    refined = np.empty_like(log_probabilities)
    axes = active_axes(mode)
    for block in blocks(mode, log_probabilities.shape[1:]):
        refined[:, block] = _pydensecrf_block(features[:, block], log_probabilities[:, block], spacing, axes, params)
    return refined


def _pydensecrf_block(
    features: np.ndarray,
    log_probabilities: np.ndarray,
    spacing: tuple[float, float, float],
    axes: tuple[int, ...],
    params: CrfParams,
) -> np.ndarray:
    """Refine one block: ``features`` (C, z, Y, X), ``log_probabilities`` (K, z, Y, X) -> Q (K, z, Y, X)."""
    import pydensecrf.densecrf as densecrf

    classes, *shape = log_probabilities.shape
    count = int(np.prod(shape))
    block_shape = tuple(shape[axis] for axis in axes)
    positions = positions_mm(block_shape, tuple(spacing[axis] for axis in axes))
    crf = densecrf.DenseCRF(count, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(-log_probabilities.reshape(classes, count)))
    for position_mm, weight, with_intensity in (
        (params.smoothness_position_mm, params.smoothness_weight, False),
        (params.appearance_position_mm, params.appearance_weight, True),
    ):
        if weight == 0:
            continue
        kernel_features = positions / np.float32(position_mm)
        if with_intensity:
            kernel_features = np.concatenate([kernel_features, features.reshape(features.shape[0], count)])
        crf.addPairwiseEnergy(
            np.ascontiguousarray(kernel_features, dtype=np.float32),
            compat=float(weight),
            kernel=densecrf.DIAG_KERNEL,
            normalization=densecrf.NORMALIZE_AFTER,
        )
    refined = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return refined.reshape(classes, *shape)
