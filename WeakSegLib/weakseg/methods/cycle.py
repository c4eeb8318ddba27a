"""Method ``cycle``: lesion masks from "lesion / healthy" labels by cycle-consistent label transfer.

After Du et al., "Consistency label transfer network for weakly supervised medical image
segmentation" (MedImgSeg): a lesion image is translated into its healthy counterpart by a
generator guided by the class activation map, and the lesion is what had to change.
Stages (:mod:`weakseg.methods.cycle_training`):

1. a CAM classifier (:mod:`weakseg.methods.cam`, trained as ``imagelabel`` trains it) on the
   slice labels;
2. a CycleGAN between the lesion and the healthy slices (:mod:`weakseg.methods.cycle_game`):
   generators lesion->healthy and healthy->lesion that may change an image only where a
   guide map allows (``output = x + guide * delta``; the guide of a lesion slice is its CAM
   times the classifier's lesion probability), per-domain image critics, cycle and identity
   losses, and the joint discrimination: the frozen classifier must call the translated
   lesion image healthy and the translated healthy image lesion;
3. pseudo masks (:mod:`weakseg.methods.cycle_masks`): ``|x - G(x)|`` fused with the CAM,
   thresholded per slice (Otsu), refined by the dense CRF;
4. a 2D U-Net trained on those masks, so prediction is one forward pass (flip-averaged).

Binary (background and one lesion class); 2D images (grey or RGB) and 3D volumes slice by slice.
"""

from __future__ import annotations

from dataclasses import dataclass

from weakseg.errors import WeakSegInputError
from weakseg.methods.spec import IMAGE_LABELS, TRAINED, MethodSpec, setting
from weakseg.settings import NORMALISATION_HELP, NORMALISATIONS, StoredSettings, check_unet_image_size

MODEL_KIND = "cycle"


@dataclass
class CycleSettings(StoredSettings):
    """Settings of a ``cycle`` run (stored in the model file).

    The authors' code (U-GAT-IT based: least-squares critics, cycle and identity weights 10,
    adversarial weight 1, Adam with betas 0.5 / 0.999) trains at 256 px for many thousand
    steps on a GPU; these defaults are scaled down to minutes on a CPU: small widths, 128 px,
    fewer steps and a higher learning rate.

    Attributes:
        image_size: square side slices are resized to (multiple of 16).
        normalisation: per volume, per training cohort, by each image's median, or ``auto``, as in
            :class:`~weakseg.methods.imagelabel.ImageLabelConfig`.
        mirror_excess: add the brighter-than-mirror channel to the classifier's input (see
            :class:`~weakseg.methods.imagelabel.ImageLabelConfig`); the generators see the image alone.
        classifier_channels, classifier_steps, cam_top_fraction, cam_scales, cam_threshold: the
            CAM classifier, as in ``imagelabel`` (``cam_threshold`` serves the bench's CAM rows).
        generator_channels: U-Net widths of both generators, finest first.
        gan_steps, gan_batch_size, gan_learning_rate: the translation game.
        adversarial_weight, cycle_weight, identity_weight: the CycleGAN terms.
        joint_weight: the joint discrimination (the classifier's verdict on translated images).
        change_weight: L1 of the change a lesion->healthy translation makes (WeakSeg's own: the
            smallest change that makes the image healthy).
        cam_fusion: weight of the CAM in the fused score ``(1 - w) * difference + w * cam``.
        no_cam_guide: the generators are not guided by the CAM and it is not fused into the mask
            (``--no-cam-guide``): they may change a lesion image anywhere and the mask is what
            changed alone; the classifier still picks the lesion slices and judges the
            translations. Meant for training sets on which the CAM misses the lesions; on the
            12-image medimgseg samples it works on some seeds and fails on others
            (docs/benchmarks.md).
        crf: refine the pseudo masks, and the network's predictions, with the dense CRF.
        appearance: at prediction, redraw the network's lesion edges with the image's own
            appearance model seeded by the network's surest pixels, as ``imagelabel`` does
            (:mod:`weakseg.methods.prediction_refinement`). The network, trained
            on the masks of two BraTS patients, grows each lesion into a round blob around it
            (on the test patients 1.2-1.7 times the true volume, seeds 0-1); within one image the
            lesion's intensity draws its edge.
        segmenter_channels, dropout, segmenter_steps, batch_size, learning_rate, weight_decay:
            the segmentation U-Net and its AdamW training (also the classifier's optimiser).
        dice_weight: weight of a soft Dice term (over the labelled pixels) added to the segmenter's
            partial cross-entropy; 0 = cross-entropy alone. Chosen on the BraTS training patients
            (one translation game, seed 2, the segmenter retrained from its masks): 3D Dice of the
            network on those patients 0.600 with weight 1, 0.539 with cross-entropy alone; with
            cross-entropy alone, whole runs of seed 2 ended with an empty network (it learnt to
            call everything background).
        checkpoint_every: the model file is rewritten every this many steps (and after each stage).
        seed: initialisation, batch order, dropout.
    """

    image_size: int = setting(128, "--image-size", "square side slices are resized to (multiple of 16)", 16, 2048)
    normalisation: str = setting("auto", "--normalisation", NORMALISATION_HELP, choices=NORMALISATIONS)
    mirror_excess: bool = setting(False, "--mirror-excess", "add the brighter-than-mirror channel (hyperintense lesions in a left-right symmetric organ centred in the image, e.g. brain FLAIR)")
    classifier_channels: tuple[int, ...] = (16, 32, 64)
    classifier_steps: int = setting(400, "--classifier-steps", "cycle: steps of the CAM classifier", 1, 10_000_000)
    cam_top_fraction: float = 0.02
    cam_scales: tuple[float, ...] = (1.0,)
    cam_threshold: float = 0.3
    generator_channels: tuple[int, ...] = (8, 16, 32, 64)
    gan_steps: int = setting(1500, "--gan-steps", "cycle: steps of the lesion<->healthy translation game", 1, 10_000_000)
    gan_batch_size: int = 4
    gan_learning_rate: float = 5e-4
    adversarial_weight: float = setting(1.0, "--adversarial-weight", "cycle: weight of the image critics' terms", 0.0, 1000.0)
    cycle_weight: float = 10.0
    identity_weight: float = 10.0
    joint_weight: float = setting(1.0, "--joint-weight", "cycle: weight of the joint discrimination (the classifier "
                                  "must call translated lesion images healthy and vice versa)", 0.0, 1000.0)
    change_weight: float = 1.0
    cam_fusion: float = 0.5
    no_cam_guide: bool = setting(False, "--no-cam-guide", "cycle: translate without the CAM's guidance (the generators "
                              "may change the whole image; the mask is what changed), for when the CAM misses the "
                              "lesions")
    crf: bool = True
    appearance: bool = True
    segmenter_channels: tuple[int, ...] = setting(None, "--channels", "segmentation U-Net widths per level, finest first", 1, 4096, default_factory=lambda: (8, 16, 32, 64, 128))
    dropout: float = 0.1
    dice_weight: float = 1.0
    segmenter_steps: int = setting(750, "--steps", "cycle: training steps of the segmentation network", 1, 10_000_000)
    batch_size: int = setting(12, "--batch-size", "slices per training step", 1, 4096)
    learning_rate: float = setting(2e-3, "--learning-rate", "initial learning rate of each stage (polynomial decay to 0)", 1e-8, 10.0)
    weight_decay: float = 1e-4
    checkpoint_every: int = setting(100, "--checkpoint-every", "cycle: rewrite the model file every N steps (resume "
                                    "continues from there)", 1, 10_000_000)
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` when the settings cannot build the networks (before any work)."""
        check_unet_image_size(self.image_size, self.segmenter_channels, minimum_multiple=16)
        check_unet_image_size(self.image_size, self.generator_channels, minimum_multiple=16)
        if not 0.0 <= self.cam_fusion <= 1.0:
            raise WeakSegInputError(f"cam_fusion {self.cam_fusion}: expected a value in 0..1")


SPEC = MethodSpec(
    name="cycle",
    summary="image-level labels (lesion / healthy): CAM-guided CycleGAN lesion->healthy, mask from what changed, "
            "CRF, then a segmentation network",
    learns_from=(IMAGE_LABELS,),
    usage=TRAINED,
    settings=CycleSettings,
    train="weakseg.methods.cycle_training:train",
    load="weakseg.methods.cycle_model:load_model",
    predict="weakseg.methods.cycle_model:predict_image",
    model_kind=MODEL_KIND,
)
