"""Scribbles + unpaired masks: attention U-Net, multi-scale discriminator, MAAG training.

Tiny networks on the synthetic cohorts of test_cohort (3x32x32 volumes, two blob
classes), so the file runs in seconds on one CPU core.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from weakseg.engine import load_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.io import read_image
from weakseg.methods.adversarial import mask_pyramid
from weakseg.cases import list_cases
from weakseg.methods.registry import method_named
from weakseg.methods.scribble_training import train_cohort
from weakseg.methods.scribble_unet import load_cohort_model, predict_volume


def config_for_method(method: str, **changes):
    """The settings of a registered scribble method with ``changes`` on top."""
    return method_named(method).make_settings(**changes)
from weakseg.models import AttentionUNet2D, MultiScaleDiscriminator, UNet2D, build_network
from weakseg.segnrrd import Segment, write_seg_nrrd
from weakseg.unpaired_masks import list_mask_files, load_unpaired_masks

from test_cohort import CLASSES, cohort, write_volume  # noqa: F401  (cohort is a fixture)

TINY = dict(image_size=32, channels=(4, 8, 16), batch_size=6, checkpoint_every=5, seed=1)


def test_attention_unet_segments_at_every_decoder_scale():
    network = AttentionUNet2D(2, 3, (4, 8, 16, 32))
    scales = network.forward_scales(torch.randn(5, 2, 64, 48))
    assert network.scale_count == 3
    assert [tuple(logits.shape) for logits in scales] == [(5, 3, 64, 48), (5, 3, 32, 24), (5, 3, 16, 12)]
    network.eval()
    image = torch.randn(1, 2, 64, 48)
    assert torch.equal(network(image), network.forward_scales(image)[0])


def test_attention_gate_lies_on_the_prediction_path():
    network = AttentionUNet2D(1, 3, (4, 8, 16)).eval()
    image = torch.randn(1, 1, 32, 32)
    before = network(image)
    with torch.no_grad():
        network.scale_heads[0].bias[0] = 50.0  # background certain everywhere: the gate closes
    after = network(image)
    assert not torch.allclose(before, after)


def test_architecture_round_trips_through_the_stored_config():
    for architecture in (UNet2D, AttentionUNet2D):
        network = architecture(1, 4, (4, 8, 16), 0.0)
        rebuilt = build_network(dict(network.config))
        assert type(rebuilt) is architecture
        rebuilt.load_state_dict(network.state_dict())
    assert type(build_network({"in_channels": 1, "num_classes": 2, "channels": [4, 8], "dropout": 0.0})) is UNet2D


def test_discriminator_sees_every_scale():
    discriminator = MultiScaleDiscriminator(num_classes=3, scale_count=3, width=4)
    pyramid = [torch.rand(2, 3, 32 // 2**scale, 32 // 2**scale, requires_grad=True) for scale in range(3)]
    scores = discriminator(pyramid)
    assert scores.shape == (2,)
    scores.sum().backward()
    for scale, segmentation in enumerate(pyramid):
        assert segmentation.grad is not None and segmentation.grad.abs().sum() > 0, f"scale {scale} unused"
    with pytest.raises(ValueError, match="expected 3 segmentations"):
        discriminator(pyramid[:2])


def test_mask_pyramid_is_one_hot_averaged_per_scale():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4, :4] = 2
    pyramid = mask_pyramid(labels, 3, 3)
    assert [tuple(level.shape) for level in pyramid] == [(1, 3, 8, 8), (1, 3, 4, 4), (1, 3, 2, 2)]
    for level in pyramid:
        assert torch.allclose(level.sum(dim=1), torch.ones_like(level[:, 0]))
    assert pyramid[2][0, 2, 0, 0] == 1.0 and pyramid[2][0, 0, 1, 1] == 1.0


# ----------------------------------------------------------------------------- unpaired masks


def test_unpaired_masks_from_a_cohort_split(cohort):  # noqa: F811
    masks = list_mask_files(cohort, "4-5")
    assert [mask.case for mask in masks] == ["case004", "case005"]
    slices = load_unpaired_masks(masks, CLASSES, 16, training_cases=["case001", "case002"])
    assert slices.shape == (6, 16, 16) and slices.dtype == torch.int64
    assert set(slices.unique().tolist()) == {0, 1, 2}


def test_unpaired_masks_of_training_cases_are_refused(cohort):  # noqa: F811
    with pytest.raises(WeakSegInputError, match="case004"):
        load_unpaired_masks(list_mask_files(cohort, "4-5"), CLASSES, 16, training_cases=["case004"])


def test_unpaired_masks_with_other_classes_are_refused(tmp_path):
    mask = np.zeros((2, 16, 16), np.uint8)
    mask[:, 4:8, 4:8] = 1
    mask[:, 10:12, 10:12] = 5
    write_volume(mask, tmp_path / "atlas.nrrd")
    with pytest.raises(WeakSegInputError, match=r"atlas\.nrrd: holds code\(s\) \[5\]"):
        load_unpaired_masks(list_mask_files(tmp_path), CLASSES, 16)


def test_unpaired_masks_missing_a_class_are_refused(tmp_path):
    mask = np.zeros((2, 16, 16), np.uint8)
    mask[:, 4:8, 4:8] = 1
    write_volume(mask, tmp_path / "only_disk.nii.gz")
    with pytest.raises(WeakSegInputError, match=r"never contain class\(es\) \['square'\]"):
        load_unpaired_masks(list_mask_files(tmp_path), CLASSES, 16)


def test_unpaired_segmentation_matched_by_name(tmp_path):
    labels = np.zeros((2, 16, 16), np.uint8)
    labels[:, 2:6, 2:6] = 1
    labels[:, 9:13, 9:13] = 2
    reference = sitk.GetImageFromArray(labels)
    write_seg_nrrd(tmp_path / "other.seg.nrrd", labels, reference, [Segment("Square", 1, (1, 0, 0)), Segment("disk", 2, (0, 1, 0))])
    slices = load_unpaired_masks(list_mask_files(tmp_path), CLASSES, 16)
    assert (slices[0, 3, 3], slices[0, 10, 10]) == (2, 1)
    write_seg_nrrd(tmp_path / "other.seg.nrrd", labels, reference, [Segment("tumour", 1, (1, 0, 0)), Segment("disk", 2, (0, 1, 0))])
    with pytest.raises(WeakSegInputError, match=r"other\.seg\.nrrd: segment\(s\) \['tumour'\]"):
        load_unpaired_masks(list_mask_files(tmp_path), CLASSES, 16)


# ----------------------------------------------------------------------------- training


def test_maag_trains_resumes_and_predicts(cohort, tmp_path):  # noqa: F811
    path = tmp_path / "maag.pt"
    masks = list_mask_files(cohort, "4")
    config = config_for_method("maag", steps=10, learning_rate=1e-3, **TINY)
    train_cohort(list_cases(cohort, "1-3"), path, config, CLASSES, unpaired_masks=masks)
    payload = load_checkpoint(path)
    assert payload["metadata"]["model_config"]["architecture"] == "attention-unet2d"
    assert payload["metadata"]["unpaired_mask_cases"] == ["case004"]
    assert set(payload["extra"]["shape_prior"]) == {"discriminator", "optimizer"}
    config.steps = 15
    train_cohort(list_cases(cohort, "1-3"), path, config, CLASSES, resume=True, unpaired_masks=masks)
    model = load_cohort_model(path)
    assert model.step == 15 and isinstance(model.network, AttentionUNet2D)
    labels, probabilities = predict_volume(model, read_image(cohort / "case005_image.nii.gz"))
    assert labels.shape == (3, 28, 40) and probabilities.shape == (3, 3, 28, 40)


def test_maag_needs_unpaired_masks_and_only_it_takes_them(cohort, tmp_path):  # noqa: F811
    cases = list_cases(cohort, "1-3")
    with pytest.raises(WeakSegInputError, match="needs unpaired masks"):
        train_cohort(cases, tmp_path / "m.pt", config_for_method("maag", steps=2, **TINY), CLASSES)
    with pytest.raises(WeakSegInputError, match="drop the unpaired masks"):
        train_cohort(cases, tmp_path / "m.pt", config_for_method("pce", steps=2, **TINY), CLASSES,
                     unpaired_masks=list_mask_files(cohort, "4"))
    assert not (tmp_path / "m.pt").exists()
