"""Method ``shape-gan``: segmentation without any mask of the training images (Wang et al., IEEE TMI 2021).

"Annotation-efficient learning for medical image segmentation based on noisy pseudo
labels and adversarial learning" (L. Wang, D. Guo, G. Wang, S. Zhang). The user has
images and knows the shape of the structure: a shape model (``--shape-model ellipse``,
:mod:`weakseg.shape_models`) or unpaired masks of other images (``--unpaired-split`` /
``--unpaired-masks``). Three stages (:mod:`weakseg.methods.shape_gan_training`):

1. an image <-> mask CycleGAN whose mask critic is a VAE of the auxiliary masks and whose
   image-to-mask generator is calibrated by that critic's judgement (DGCC)
   (:mod:`weakseg.methods.shape_gan_cycle`);
2. pseudo labels: the image-to-mask generator's masks of the training images (largest
   component, holes filled);
3. a U-Net segmenter trained on them with the noise-weighted Dice loss over a few rounds,
   the pixel weights re-estimated after each (:mod:`weakseg.noisy_labels`).

Each part can be switched off for ablation: ``--no-vae-discriminator`` (a plain
least-squares mask critic), ``--no-dgcc``, ``--plain-dice`` (all pixel weights 1).
One structure (binary); 2D images, or 3D volumes treated slice by slice.
"""

from __future__ import annotations

from dataclasses import dataclass

from weakseg.methods.spec import SHAPE_MODEL, TRAINED, UNPAIRED_MASKS, MethodSpec, setting
from weakseg.settings import StoredSettings, check_unet_image_size

MODEL_KIND = "shape-gan"


@dataclass
class ShapeGanSettings(StoredSettings):
    """Settings of a ``shape-gan`` run (stored in the model file).

    The paper's full-resolution, many-epoch GPU training is scaled down so that a run fits
    minutes on a CPU: small widths, a 128-pixel-wide grid, a few thousand steps.

    Attributes:
        shape_model: ``ellipse[:params]`` (see :mod:`weakseg.shape_models`), or "" when
            unpaired masks are given.
        image_size: width of the network grid; the height follows the images' aspect ratio.
        channels: U-Net widths of the generators, finest first.
        segmenter_channels: U-Net widths of the segmenter.
        gan_steps: steps of the CycleGAN game.
        gan_learning_rate: Adam learning rate of generators and critics (CycleGAN's 2e-4,
            raised for short runs).
        shape_weight: the mask critic's term in the generators' loss. CycleGAN weighs its
            adversarial terms 1 against cycle terms of 10 over ~10^5 steps; in a run of a few
            hundred steps the cycle terms then win and the image-to-mask generator learns to
            hide a grey copy of the image in its mask instead of drawing a shape.
        rounds, round_steps: segmenter rounds and steps per round.
        batch_size: slices per step.
        learning_rate: the segmenter's Adam learning rate (polynomial decay per round).
        plain_discriminator, no_dgcc, plain_dice: the ablations.
        seed: network initialisation and batch order.
    """

    shape_model: str = setting("", "--shape-model", "shape-gan: auxiliary masks from a shape model, "
                               "ellipse[:major=0.25-0.85,aspect=0.7-0.9,x=0.3-0.7,y=0.3-0.7,angle=0-180] "
                               "(fractions of the image; instead of unpaired masks)")
    image_size: int = setting(128, "--image-size", "network grid width in pixels (shape-gan: the height follows the "
                                                   "images' aspect ratio)", 16, 2048)
    channels: tuple[int, ...] = setting(None, "--channels", "U-Net widths per level, finest first", 1, 4096,
                                        default_factory=lambda: (8, 16, 32, 64, 128))
    segmenter_channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    gan_steps: int = setting(1500, "--gan-steps", "steps of the image<->mask CycleGAN", 1, 10_000_000)
    gan_learning_rate: float = 5e-4
    shape_weight: float = setting(10.0, "--shape-weight", "shape-gan: weight of the mask critic's term against the "
                                  "cycle terms (weight 10 each)", 0.0, 1000.0)
    rounds: int = setting(3, "--rounds", "segmenter rounds (noise weights re-estimated after each)", 1, 100)
    round_steps: int = setting(250, "--steps", "segmenter training steps per round", 1, 10_000_000)
    batch_size: int = setting(8, "--batch-size", "slices per training step", 1, 4096)
    learning_rate: float = setting(2e-3, "--learning-rate", "initial learning rate (polynomial decay to 0)", 1e-8, 10.0)
    plain_discriminator: bool = setting(False, "--no-vae-discriminator",
                                        "shape-gan ablation: a plain least-squares mask critic instead of the VAE")
    no_dgcc: bool = setting(False, "--no-dgcc", "shape-gan ablation: no discriminator-guided channel calibration")
    plain_dice: bool = setting(False, "--plain-dice", "shape-gan ablation: plain Dice instead of noise-weighted Dice")
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` when the settings cannot run (before any work)."""
        from weakseg.shape_models import parse_shape_model

        if self.shape_model:
            parse_shape_model(self.shape_model)
        check_unet_image_size(self.image_size, self.channels, minimum_multiple=16)
        check_unet_image_size(self.image_size, self.segmenter_channels, minimum_multiple=16)


SPEC = MethodSpec(
    name="shape-gan",
    summary="no masks of the training images: CycleGAN image<->mask with a VAE shape critic and DGCC learns from a "
            "shape model or unpaired masks, then a segmenter learns its pseudo labels with noise-weighted Dice",
    learns_from=(SHAPE_MODEL, UNPAIRED_MASKS),
    usage=TRAINED,
    settings=ShapeGanSettings,
    train="weakseg.methods.shape_gan_training:train",
    load="weakseg.methods.shape_gan_model:load_model",
    predict="weakseg.methods.shape_gan_model:predict_image",
    measure="weakseg.head_circumference:head_circumference_columns",
    model_kind=MODEL_KIND,
)
