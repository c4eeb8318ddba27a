"""Method ``transfer``: from a fully segmented source domain to weakly labelled target scans.

A U-Net learns from the full masks of a *source* cohort (another sequence, scanner or
centre) and adapts to a *target* cohort that has only image-level labels (which classes
each slice shows) and, optionally, scribbles, with the three parts of Dong et al. (ICCV
2019, "Semantic-transferable weakly-supervised endoscopic lesions segmentation"), each
switchable for ablation:

1. **target pseudo labels** (``pseudo_label_weight``): from the network's own target
   probabilities, restricted to the classes each slice's image label names, with the
   class-balanced, superpixel generator of :mod:`weakseg.methods.pseudo_labels`; renewed
   every self-training round, admitting the most confident share of target slices first
   and the harder ones in later rounds;
2. **per-class feature-centroid alignment** (``centroid_weight``): class centroids of the
   last decoder features, accumulated over iterations (:mod:`weakseg.methods.transfer_alignment`),
   source from the masks, target from the pseudo labels (and scribbles), pulled together;
3. **output-space adversarial learning** (``adversarial_weight``): a critic tells source
   softmax maps from target ones, and the segmenter learns to make target outputs look
   like source outputs (Tsai et al., CVPR 2018).

Target scribbles, when given, are used as pixel labels too, with the cohort method's scribble
terms (balanced partial cross-entropy, the background prior beyond their hull, entropy and
total-variation regularisers). The model file holds a moving average of the weights
(``ema_decay``), as the cohort method's does.
Training runs on arrays (:mod:`weakseg.methods.transfer_training`, no SimpleITK, so it runs
on a GPU machine from a compact ``.npz``); :mod:`weakseg.methods.transfer_data` reads the
folders. The model file is a 2D U-Net that ``predict`` and ``segment --model`` apply and
adapt exactly as the cohort method's (:mod:`weakseg.methods.scribble_unet`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from weakseg.errors import WeakSegInputError
from weakseg.methods.spec import IMAGE_LABELS, SCRIBBLES, SOURCE_MASKS, TRAINED, MethodSpec, setting
from weakseg.settings import StoredSettings, check_unet_image_size

MODEL_KIND = "transfer-unet2d"


@dataclass
class TransferConfig(StoredSettings):
    """Settings of a transfer training run (stored in the model file).

    Attributes:
        image_size: square side every slice is resized to (multiple of 2**(levels-1)).
        channels, dropout: U-Net widths per level (finest first) and bottleneck dropout.
        steps, batch_size, learning_rate, weight_decay: AdamW with polynomial decay;
            ``batch_size`` slices of each domain per step.
        warmup: share of the steps before the first pseudo labels (source masks, target
            scribbles, alignment and adversarial terms only).
        rounds: self-training rounds after the warm-up; pseudo labels are renewed at the
            start of each.
        first_round_share: share of the labelled target slices admitted in round 1 (the
            most confident ones), rising linearly to all of them in the last round.
        pseudo_label_weight: weight of the partial cross-entropy on target pseudo labels (0 = off).
        centroid_weight: weight of the class-centroid alignment (0 = off).
        centroid_momentum: share of the accumulated centroid kept at each step.
        adversarial_weight: weight of the output-space adversarial term (0 = off).
        critic_width: channels of the output-space critic's finest block (doubled at each
            coarser scale). 16 costs a quarter of 32 per critic pass; the critic was most of a
            CPU step at 32 (docs/benchmarks.md).
        scribble_weight: weight of the partial cross-entropy on target scribbles.
        outside_weight, outside_margin, entropy_weight, tv_weight: with target scribbles, the
            cohort method's other scribble terms on the target slices (background prior beyond
            the scribbles' hull; entropy and total-variation regularisers).
        ema_decay: > 0: the saved model is the exponential moving average of the weights
            (:class:`~weakseg.weight_average.WeightAverage`); 0: the last step's weights.
        ignore_scribbles: leave target scribbles unused even where they exist.
        pseudo_label_threshold, foreground_fraction, background_fraction, superpixels,
            compactness, vote, purity: :class:`~weakseg.methods.pseudo_labels.PseudoLabelParams`.
        largest_component: keep each class's largest 3D component at prediction.
        max_rotation_degrees, max_scale: augmentation of both domains' slices
            (:func:`weakseg.data.augment`). The wide zoom range lets masks of a source cohort
            whose structures fill more of the field of view teach the target's smaller ones
            (docs/benchmarks.md: source-only 0.52 against 0.40 at 0.15 on MS-CMRSeg).
        checkpoint_every: steps between checkpoints; seed: network init and batch order.
    """

    image_size: int = setting(128, "--image-size", "side in pixels every slice is resized to (192-256 on a GPU)", 16, 2048)
    channels: tuple[int, ...] = setting(None, "--channels", "U-Net widths per level, finest first (16,32,64,128,256 on a GPU)", 1, 4096, default_factory=lambda: (8, 16, 32, 64, 128))
    dropout: float = 0.1
    steps: int = setting(4000, "--steps", "training steps", 1, 10_000_000)
    batch_size: int = setting(12, "--batch-size", "slices per training step", 1, 4096)
    learning_rate: float = setting(2e-3, "--learning-rate", "initial learning rate (polynomial decay to 0)", 1e-8, 10.0)
    weight_decay: float = 1e-4
    warmup: float = 0.3
    rounds: int = setting(3, "--rounds", "self-training rounds", 1, 100)
    first_round_share: float = 0.5
    pseudo_label_weight: float = setting(1.0, "--pseudo-label-weight", "transfer: weight of the target pseudo-label loss (0 = off)", 0.0, 100.0)
    centroid_weight: float = setting(0.1, "--centroid-weight", "transfer: weight of the class-centroid alignment (0 = off)", 0.0, 100.0)
    centroid_momentum: float = 0.9
    adversarial_weight: float = setting(0.01, "--adversarial-weight", "adversarial term's weight (maag: relative to the supervised term; transfer: output-space critic)", 0.0, 100.0)
    critic_width: int = setting(16, "--critic-width", "transfer: channels of the output-space critic's finest block "
                                "(doubled at each coarser scale; files from before this option: 32)", 1, 1024)
    scribble_weight: float = 1.0
    outside_weight: float = setting(0.1, "--outside-weight", "weight of the background prior beyond the scribbles' hull (0 = off)", 0.0, 100.0)
    outside_margin: float = 0.1
    entropy_weight: float = 0.05
    tv_weight: float = 0.05
    ema_decay: float = setting(0.999, "--ema-decay", "the model file holds an exponential moving average of the weights "
                               "with this decay (0 = off, the last step's weights)", 0.0, 0.99999)
    ignore_scribbles: bool = setting(False, "--ignore-scribbles", "transfer: leave the target's scribbles unused (image-level labels only)")
    pseudo_label_threshold: float = 0.5
    foreground_fraction: float = 0.8
    background_fraction: float = 0.8
    superpixels: int = 0
    compactness: float = 0.1
    vote: float = 0.5
    purity: float = 0.9
    largest_component: bool = True
    max_rotation_degrees: float = 20.0
    max_scale: float = setting(0.3, "--max-scale", "transfer: largest relative zoom in or out of the training slices "
                               "(0.3: 0.7-1.3; the heart fills less of an LGE slice than of a cine one)", 0.0, 0.9)
    checkpoint_every: int = 100
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` when the settings cannot build the network (before any work)."""
        check_unet_image_size(self.image_size, self.channels)
        if not 0.0 <= self.warmup < 1.0:
            raise WeakSegInputError(f"transfer warm-up share {self.warmup} must lie in [0, 1)")


# Settings that change the network, its critic or its input: a resumed run must keep them.
ARCHITECTURE_SETTINGS = ("image_size", "channels", "dropout", "critic_width")
# The critic's width in model files written before ``critic_width`` was a setting.
FORMER_CRITIC_WIDTH = 32


def load_transfer_model(path: str | os.PathLike, device: Any = "cpu", payload: dict | None = None) -> Any:
    """A transfer model file as a :class:`~weakseg.methods.scribble_unet.CohortModel` (same prediction, adaptation).

    Raises:
        WeakSegInputError: missing, unreadable or damaged file, or a model of another method.
    """
    import torch

    from weakseg.engine import load_model_checkpoint
    from weakseg.methods.scribble_settings import CohortConfig
    from weakseg.methods.scribble_unet import CohortModel, _resolve_device
    from weakseg.models import build_network

    device = _resolve_device(device)
    payload, metadata = load_model_checkpoint(path, device, MODEL_KIND, "transfer", payload)
    try:
        config = TransferConfig.from_dict(metadata["config"])
        network = build_network(metadata["model_config"])
        network.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeakSegInputError(f"{path}: damaged transfer model ({type(error).__name__}: {error})") from None
    network.to(torch.device(device)).eval()
    # Prediction and adaptation read these cohort settings; a transfer model has no scribble-hull prior.
    applied = CohortConfig(image_size=config.image_size, channels=tuple(config.channels), dropout=config.dropout,
                           batch_size=config.batch_size, outside_weight=0.0, largest_component=config.largest_component)
    return CohortModel(network=network, class_names=list(metadata["class_names"]), image_size=config.image_size,
                       config=applied, device=device, step=int(payload["step"]), path=str(path), metadata=metadata)


SPEC = MethodSpec(
    name="transfer",
    summary="full masks of a source cohort (--source) + image-level labels (and scribbles) of the target: "
            "pseudo labels, class-centroid alignment, output-space adversarial learning",
    learns_from=(SOURCE_MASKS, IMAGE_LABELS, SCRIBBLES),
    usage=TRAINED,
    settings=TransferConfig,
    train="weakseg.methods.transfer_data:train",
    load="weakseg.methods.transfer:load_transfer_model",
    predict="weakseg.methods.scribble_unet:predict_volume",
    adapt="weakseg.methods.scribble_unet:adapt_model",
    model_kind=MODEL_KIND,
)
