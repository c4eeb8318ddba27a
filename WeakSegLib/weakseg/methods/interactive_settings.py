"""Settings of the interactive method (kept apart from its torch code, see :mod:`weakseg.methods.interactive`)."""

from __future__ import annotations

from dataclasses import dataclass

from weakseg.methods.spec import setting


@dataclass
class InteractiveConfig:
    """Settings of the interactive method (defaults tuned on ACDC val 061-070).

    Attributes:
        steps: optimisation steps; each sees every slice of the region once.
        learning_rate: Adam's initial rate, decayed polynomially to zero.
        channels: U-Net widths per level.
        pseudo_label_weight: weight of the propagated-label cross-entropy.
        smoothness_weight: weight of the total-variation regulariser.
        margin_fraction, minimum_margin: the region of interest is the bounding box of
            the foreground scribbles grown by ``max(minimum_margin, fraction * size)``
            voxels in-plane; all slices are kept.
        max_size: regions larger in-plane are resampled to fit, to bound the time.
        use_crf: refine the prediction with the dense CRF.
        warm_start_fraction: when a warm-start cache holds the network of an earlier run
            on the same image, training continues from it for this fraction of ``steps``
            at this fraction of ``learning_rate`` (0.4 chosen on four ACDC val volumes among
            0.3, 0.4, 0.5; see docs/benchmarks.md).
    """

    steps: int = setting(200, "--steps", "training steps", 1, 1_000_000)
    learning_rate: float = 3e-3
    channels: tuple[int, ...] = (8, 16, 32, 64)
    pseudo_label_weight: float = 1.0
    smoothness_weight: float = 0.1
    margin_fraction: float = 0.3
    minimum_margin: int = 12
    max_size: int = 160
    use_crf: bool = True
    warm_start_fraction: float = 0.4
