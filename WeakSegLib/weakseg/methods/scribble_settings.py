"""Settings of the scribble U-Net methods (``cohort``, ``pce``, ``maag``): one dataclass, three defaults.

Kept apart from the training code so that the command line can list the settings, their
ranges and every method's true defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from weakseg.errors import WeakSegInputError
from weakseg.methods.spec import setting
from weakseg.settings import StoredSettings, check_unet_image_size


@dataclass
class CohortConfig(StoredSettings):
    """Settings of a cohort training run (stored in the model file as a plain dict).

    The defaults were chosen from CPU training curves on ACDC (docs/benchmarks.md): 16000 steps
    with an exponential moving average of the weights (``ema_decay`` 0.999) and the one-piece
    clean-up the model chooses (:mod:`weakseg.components`) gave a mean val Dice of 0.875, 0.875
    and 0.872 without scribbles in three runs (39 min on two quiet cores); 8000 steps 0.875,
    0.865, 0.870 and 0.870; 3000 steps without the average 0.859. On a GPU use ``image_size`` 160-256, ``channels`` (16, 32, 64, 128, 256) and ~10k
    steps: on one H100, 160 px reached 0.884 / 0.893 at step 7400 (6.5 min with four runs
    sharing the GPU); see the README's benchmark. ``pce`` and ``maag`` keep 3000 steps without
    the average (:data:`ATTENTION_UNET_PCE`).

    Attributes:
        image_size: square side every slice is resized to (multiple of 2**(levels-1)).
        channels, dropout: :class:`~weakseg.models.UNet2D` widths per level, bottleneck dropout.
        steps, batch_size, learning_rate, weight_decay: AdamW, polynomial decay.
        ema_decay: > 0: the saved model is the exponential moving average of the weights
            (:class:`~weakseg.weight_average.WeightAverage`), the latest weights are kept in
            the file to resume; 0: the last step's weights.
        entropy_weight, tv_weight: regularisers on all pixels.
        pseudo_label_weight, pseudo_label_threshold, pseudo_label_warmup: self-training on
            confident predictions after ``warmup`` x ``steps`` (0 = off; not validated on ACDC).
        outside_weight, outside_margin: background prior beyond the scribbles' hull.
        largest_component: default of :func:`predict_volume` / :func:`adapt_to_scribbles`.
        max_rotation_degrees, max_scale: augmentation (:func:`weakseg.data.augment`).
        architecture: ``"unet2d"`` or ``"attention-unet2d"`` (:mod:`weakseg.models`).
        adversarial_weight: > 0 adds the multi-scale adversarial shape prior learnt from
            unpaired masks (:mod:`weakseg.methods.adversarial`; needs ``attention-unet2d``).
        variant: how the shape prior is trained: ``"weakseg"`` (this library's variant) or
            ``"paper"`` (the published MAAG: :data:`PAPER_MAAG` and
            :class:`~weakseg.methods.adversarial.PaperShapePrior`).
        validation_fraction: variant ``paper``: the share of the training cases held out
            (the last ones of the list) to pick the best checkpoint on their scribbles.
        checkpoint_every: steps between checkpoints; seed: network init and batch order.
    """

    architecture: str = "unet2d"
    variant: str = setting("weakseg", "--variant", "how the shape prior is trained: weakseg (this library's variant) "
                           "or paper (the published MAAG: dynamic loss weighting, unlabelled batch, Adam 1e-4, "
                           "best-validation checkpoint)", choices=("weakseg", "paper"))
    validation_fraction: float = setting(0.1, "--validation-fraction", "variant paper: share of the training cases "
                                         "held out to select the checkpoint on their scribbles", 0.01, 0.5)
    adversarial_weight: float = setting(0.0, "--adversarial-weight", "weight of the adversarial term: maag's shape prior, "
                                        "transfer's output-space critic, collaborative's lesion-map critic, cycle's "
                                        "image critics; maag: relative to the supervised term", 0.0, 100.0)
    image_size: int = setting(128, "--image-size", "side in pixels every slice is resized to (192-256 on a GPU)", 16, 2048)
    channels: tuple[int, ...] = setting(None, "--channels", "U-Net widths per level, finest first (16,32,64,128,256 on a GPU)", 1, 4096, default_factory=lambda: (8, 16, 32, 64, 128))
    dropout: float = setting(0.1, "--dropout", "channel dropout in the U-Net's bottleneck (0 = off)", 0.0, 0.9)
    steps: int = setting(16000, "--steps", "training steps", 1, 10_000_000)
    batch_size: int = setting(12, "--batch-size", "slices per training step", 1, 4096)
    learning_rate: float = setting(2e-3, "--learning-rate", "initial learning rate (polynomial decay to 0)", 1e-8, 10.0)
    ema_decay: float = setting(0.999, "--ema-decay", "the model file holds an exponential moving average of the weights "
                               "with this decay (0 = off, the last step's weights)", 0.0, 0.99999)
    weight_decay: float = 1e-4
    entropy_weight: float = 0.05
    tv_weight: float = 0.05
    pseudo_label_weight: float = 0.0
    pseudo_label_threshold: float = 0.95
    pseudo_label_warmup: float = 0.3
    outside_weight: float = setting(0.1, "--outside-weight", "weight of the background prior beyond the scribbles' hull (0 = off)", 0.0, 100.0)
    outside_margin: float = 0.1
    largest_component: bool = True
    max_rotation_degrees: float = 20.0
    max_scale: float = 0.15
    checkpoint_every: int = 100
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` when the settings cannot build a network (before any work)."""
        check_unet_image_size(self.image_size, self.channels)
        if self.adversarial_weight and self.architecture != "attention-unet2d":
            raise WeakSegInputError("the adversarial shape prior needs the attention-unet2d architecture")
        if self.variant not in ("weakseg", "paper"):
            raise WeakSegInputError(f"--variant {self.variant!r}: expected weakseg or paper")
        if self.variant == "paper" and self.ema_decay:
            raise WeakSegInputError("--ema-decay: variant paper saves the best-validation weights, not an average; "
                                    "use --ema-decay 0")
        if self.variant == "paper" and not self.adversarial_weight:
            raise WeakSegInputError("--variant paper: the published method has its adversarial term on "
                                    "(--adversarial-weight > 0)")


# Settings that change the network or its input: a resumed run must keep them.
ARCHITECTURE_SETTINGS = ("architecture", "image_size", "channels", "dropout")

# pce and maag depart from the paper's Adam 1e-4 and adversarial weight 0.2 where ACDC
# val (scribbles 001-035, masks 036-060, 3000 steps) showed it: at 1e-4 neither network
# had converged after 4000 steps (mean Dice 0.000 once the largest component was kept), and
# at weight 0.2 MAAG still predicted a large false left ventricle far from the heart (LV
# Dice 0.000, mean 0.558) where weight 1.0 gave 0.861 (see the README's MAAG table).
# They keep the 3000 steps without a weight average they were measured with (the cohort
# default's 8000 steps and average were chosen for the cohort U-Net only).
ATTENTION_UNET_PCE = {"architecture": "attention-unet2d", "entropy_weight": 0.0, "tv_weight": 0.0,
                      "outside_weight": 0.0, "learning_rate": 1e-3, "weight_decay": 0.0,
                      "steps": 3000, "ema_decay": 0.0}

# The published MAAG (Valvano et al., IEEE TMI 2021, and the authors' code,
# gvalvano/multiscale-adversarial-attention-gates): Adam at 1e-4 for segmenter and critic,
# adversarial weight 0.2, batch 12, no weight decay; the rest of the game is in
# :class:`weakseg.methods.adversarial.PaperShapePrior`, the schedule and the checkpoint
# selection in :mod:`weakseg.methods.scribble_training`.
PAPER_MAAG = {"learning_rate": 1e-4, "adversarial_weight": 0.2, "batch_size": 12, "weight_decay": 0.0}
