"""Method ``imagelabel``: segmentation from image-level labels (a slice or image shows a class, or is healthy).

CAM classifier -> pseudo labels -> self-trained U-Net -> appearance model -> dense CRF;
see :mod:`weakseg.methods.imagelabel_pipeline`. Labels come from a CSV
(:mod:`weakseg.image_labels`, ``weakseg train DATA --method imagelabel --image-labels CSV``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from weakseg.errors import WeakSegInputError
from weakseg.methods.spec import IMAGE_LABELS, TRAINED, MethodSpec, setting
from weakseg.settings import NORMALISATION_HELP, NORMALISATIONS, StoredSettings, check_unet_image_size

if TYPE_CHECKING:
    from weakseg.methods.appearance import AppearanceParams
    from weakseg.methods.pseudo_labels import PseudoLabelParams

MODEL_KIND = "imagelabel-cam-unet2d"


@dataclass
class ImageLabelConfig(StoredSettings):
    """Settings of :func:`train_image_label_model` (stored in the model file).

    The defaults were chosen on the BraTS development data on a 2-core CPU, most on the
    training patients (pat0005, pat0006), the background fractions and the appearance
    seeds and gate also looking at the val patients (pat0003, pat0004); the README's
    "Image-level labels" section says which was chosen where.

    Attributes:
        image_size: square side slices are resized to (multiple of 16).
        normalisation: ``volume`` z-scores each image by its own statistics (MRI, whose
            intensities have no absolute scale); ``cohort`` clips and z-scores every image by
            one set of per-channel statistics over all training images, kept in the model
            (photographs, CT: there the labels rest on absolute colour or density, which a
            per-image z-score erases: a picture of healthy skin, z-scored alone, shows its
            faint texture at the contrast of a mole); ``median`` divides each image by its own
            foreground median (MRI slices each stretched to its own range, where a tumour darkens
            the rest of its slice and a z-score would follow it:
            :func:`weakseg.data.normalise_by_median`); ``auto`` picks ``cohort`` when every
            training image is a colour picture, ``volume`` otherwise
            (:func:`weakseg.data.training_intensities`).
        mirror_excess: add, for every channel, how much brighter each pixel is than its
            left-right mirror position (the positive part of the difference) as an input
            channel. For hyperintense lesions (FLAIR, T2) in a left-right symmetric organ
            centred in the field of view (brain MRI in atlas space, as BraTS is): a
            lesion is usually one-sided, so it stands out while the symmetric anatomy
            cancels. Without it, a classifier trained on two BraTS patients learned the
            anatomy of the slice levels where lesions happened to lie (the lateral
            ventricles) instead of the lesion (CAM 3D Dice 0.02-0.13 on pat0005); with
            the signed difference 0.02-0.25, with the positive part 0.30-0.33.
        classifier_channels, classifier_steps: CAM classifier widths and training steps.
        cam_top_fraction: share of CAM positions pooled into the class logit
            (:class:`~weakseg.methods.cam.CamClassifier`).
        cam_scales: input scales whose CAMs are averaged (with flips).
        segmenter_channels, dropout: U-Net widths per level and bottleneck dropout.
        rounds, round_steps: self-training rounds and training steps per round.
        first_round_share: share of the lesion slices used in round 1 (rising linearly
            to all of them in the last round).
        batch_size, learning_rate, weight_decay: AdamW with polynomial decay, per stage.
        balance_classes: weight the segmentation loss by inverse class frequency
            (:func:`~weakseg.losses.balanced_class_weights`). Off by default: with a
            wide unlabelled band around each lesion, up-weighting the rare foreground
            let the network grow lesions over it (about 3x the true volume on BraTS
            training patients).
        dice_weight: weight of a soft Dice term (over the labelled pixels) added to the
            segmentation network's partial cross-entropy; 0 = cross-entropy alone, the default.
            With weight 1, on the 12 medimgseg ISIC training pictures three seeds scored
            0.899-0.907 against 0.834-0.921 with cross-entropy alone, and on a short schedule it
            kept a seed whose network otherwise learnt background alone; on the BraTS volumes it
            cost 0.003-0.010 on three seeds (docs/benchmarks.md).
        cam_threshold: CAM value above which the CAM baselines call a pixel foreground.
        pseudo_label_threshold: probability above which a pixel is won by a class in the
            pseudo labels (the appearance posterior in round 1, the network's probability later).
        foreground_fraction, background_fraction, superpixels, compactness, vote, purity:
            see :class:`~weakseg.methods.pseudo_labels.PseudoLabelParams` (round 1).
        class_balance: ``"image"``: each class's confidence cut-off is its quantile in each
            slice; ``"dataset"``: one cut-off per class over all the lesion slices of the
            round (class-balanced self-training, Zou et al. ECCV 2018;
            :func:`~weakseg.methods.pseudo_labels.dataset_cutoffs`).
        network_fraction: the foreground and background fractions of later rounds, from the
            network's probabilities. Keeping only 60% of its foreground each round made
            lesions shrink round after round; the background fractions (0.95 and 0.97,
            earlier 0.8 and 0.9) keep the unlabelled band narrow, since the network grows
            lesions across it (1.8-1.9x the true volume on the BraTS val patients with the
            earlier fractions, 1.6x with these; the appearance step corrects the rest).
        appearance: sharpen the network's prediction with the image's appearance model
            (step 4 of the module docstring; the first round's CAM sharpening is always on).
        cam_seed, network_seed: score at or above which a pixel seeds its class's
            appearance model, for CAMs (first round) and for the network's probabilities
            (prediction); see :class:`~weakseg.methods.appearance.AppearanceParams`.
        appearance_gate, appearance_prior: the ``gate`` and ``prior`` of that model.
        crf: refine the network's probabilities with the dense CRF.
        seed: network initialisation and batch order.
    """

    image_size: int = setting(128, "--image-size", "square side slices are resized to (multiple of 16)", 16, 2048)
    normalisation: str = setting("auto", "--normalisation", NORMALISATION_HELP, choices=NORMALISATIONS)
    mirror_excess: bool = setting(False, "--mirror-excess", "add the brighter-than-mirror channel (hyperintense lesions in a left-right symmetric organ centred in the image, e.g. brain FLAIR)")
    classifier_channels: tuple[int, ...] = (16, 32, 64)
    classifier_steps: int = setting(400, "--steps", "training steps of the classifier and of each self-training round", 1, 10_000_000)
    cam_top_fraction: float = 0.02
    cam_scales: tuple[float, ...] = (1.0,)
    segmenter_channels: tuple[int, ...] = setting(None, "--channels", "segmentation U-Net widths per level, finest first", 1, 4096, default_factory=lambda: (8, 16, 32, 64, 128))
    dropout: float = 0.1
    rounds: int = setting(3, "--rounds", "self-training rounds", 1, 100)
    round_steps: int = setting(250, "--steps", "training steps of the classifier and of each self-training round", 1, 10_000_000)
    first_round_share: float = 0.5
    batch_size: int = setting(12, "--batch-size", "slices per training step", 1, 4096)
    learning_rate: float = setting(2e-3, "--learning-rate", "initial learning rate of each stage (polynomial decay to 0)", 1e-8, 10.0)
    weight_decay: float = 1e-4
    balance_classes: bool = False
    dice_weight: float = setting(0.0, "--dice-weight", "imagelabel: weight of a soft Dice term added to the "
                                 "segmentation network's cross-entropy (0: cross-entropy alone)", 0.0, 100.0)
    cam_threshold: float = 0.3
    pseudo_label_threshold: float = 0.5
    class_balance: str = setting("image", "--class-balance", "pseudo-label confidence cut-off per class: image "
                                 "(its quantile in each slice) or dataset (one per class over all slices, as in "
                                 "class-balanced self-training)", choices=("dataset", "image"))
    foreground_fraction: float = 1.0
    background_fraction: float = 0.95
    network_fraction: float = 0.97
    superpixels: int = 200
    compactness: float = 0.1
    vote: float = 0.5
    purity: float = 0.9
    appearance: bool = True
    cam_seed: float = 0.5
    network_seed: float = 0.9
    appearance_gate: float = 0.1
    appearance_prior: float = 0.5
    crf: bool = True
    seed: int = 0

    def pseudo_label_params(self, from_network: bool = False) -> PseudoLabelParams:
        """The generator's settings for the appearance-sharpened CAMs (round 1) or the network (later rounds)."""
        from weakseg.methods.pseudo_labels import PseudoLabelParams

        if from_network:
            return PseudoLabelParams(self.pseudo_label_threshold, self.network_fraction, self.network_fraction,
                                     self.superpixels, self.compactness, self.vote, self.purity)
        return PseudoLabelParams(self.pseudo_label_threshold, self.foreground_fraction, self.background_fraction,
                                 self.superpixels, self.compactness, self.vote, self.purity)

    def appearance_params(self, from_network: bool = False) -> AppearanceParams:
        """The appearance model's settings, seeded by CAMs (first round) or by the network (prediction)."""
        from weakseg.methods.appearance import AppearanceParams

        seed = self.network_seed if from_network else self.cam_seed
        return AppearanceParams(seed=seed, gate=self.appearance_gate, prior=self.appearance_prior)

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` when the settings cannot build the networks (before any work)."""
        check_unet_image_size(self.image_size, self.segmenter_channels, minimum_multiple=16)
        if self.class_balance not in ("dataset", "image"):
            raise WeakSegInputError(f"--class-balance {self.class_balance!r}: expected dataset or image")


SPEC = MethodSpec(
    name="imagelabel",
    summary="image-level labels (slice or image shows a class / healthy): CAM, pseudo labels, self-training, CRF",
    learns_from=(IMAGE_LABELS,),
    usage=TRAINED,
    settings=ImageLabelConfig,
    train="weakseg.methods.imagelabel_pipeline:train",
    load="weakseg.methods.imagelabel_pipeline:load_image_label_model",
    predict="weakseg.methods.imagelabel_pipeline:predict_image",
    model_kind=MODEL_KIND,
)
