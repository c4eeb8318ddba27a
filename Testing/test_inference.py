"""Applying a 2D network to a volume: the fast paths give what the plain computations give."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from weakseg.inference import FLIPS, flip_averaged_softmax, fold_batch_norm, most_probable_class, to_image_grid
from weakseg.models import UNet2D
from weakseg.models.attention_unet import AttentionUNet2D


def network_with_trained_statistics(kind=UNet2D) -> nn.Module:
    """A small network whose batch norms hold non-trivial running statistics and affine weights."""
    torch.manual_seed(0)
    network = kind(1, 3, (4, 8, 16), dropout=0.1)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.3, 3.0)
            module.weight.data.normal_(1.0, 0.3)
            module.bias.data.normal_(0.0, 0.3)
    return network.eval()


@pytest.mark.parametrize("kind", [UNet2D, AttentionUNet2D])
def test_folding_batch_norm_keeps_the_outputs_and_leaves_the_network_alone(kind):
    network = network_with_trained_statistics(kind)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    images = torch.randn(3, 1, 32, 32)
    folded = fold_batch_norm(network)
    with torch.no_grad():
        expected, found = network(images), folded(images)
    assert torch.allclose(found, expected, atol=1e-4)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert all(torch.equal(before[name], value) for name, value in network.state_dict().items())
    assert any(isinstance(module, nn.BatchNorm2d) for module in network.modules())


def test_flip_averaged_softmax_is_the_mean_of_the_flipped_back_softmaxes():
    network = network_with_trained_statistics()
    network.train()
    slices = torch.randn(11, 1, 32, 32)
    found = flip_averaged_softmax(network, slices, "cpu", batch_size=4)
    assert not network.training
    with torch.no_grad():
        expected = sum(F.softmax(network(slices.flip(dims) if dims else slices), dim=1).flip(dims) if dims
                       else F.softmax(network(slices), dim=1) for dims in FLIPS) / len(FLIPS)
    assert found.shape == (11, 3, 32, 32) and found.is_contiguous()
    assert torch.allclose(found, expected, atol=1e-5)


def test_image_grid_is_the_resized_probabilities_by_class_summing_to_one():
    torch.manual_seed(1)
    small = F.softmax(torch.randn(5, 3, 16, 16), dim=1)
    grid = to_image_grid(small, (40, 24), floor=1e-8)
    expected = F.interpolate(small, size=(40, 24), mode="bilinear", align_corners=False).permute(1, 0, 2, 3)
    assert grid.shape == (3, 5, 40, 24) and grid.dtype == np.float32
    assert np.allclose(grid, expected.numpy(), atol=1e-6)
    assert np.allclose(grid.sum(axis=0), 1.0, atol=1e-5)
    same_size = to_image_grid(small, (16, 16), floor=1e-8)
    assert np.allclose(same_size, small.permute(1, 0, 2, 3).numpy(), atol=1e-6)


def test_most_probable_class_is_argmax_including_ties():
    rng = np.random.default_rng(0)
    probabilities = rng.random((4, 6, 7, 8)).astype(np.float32)
    probabilities[:, 0] = 0.25  # every class tied: argmax takes the first
    probabilities[2, 1, :3] = probabilities[1, 1, :3] = 2.0  # a tie of two classes
    labels = most_probable_class(probabilities)
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, probabilities.argmax(axis=0))


def test_bounding_box_holds_every_true_voxel_and_nothing_wider():
    from weakseg.bounding_box import bounding_box

    mask = np.zeros((6, 7, 8), dtype=bool)
    assert bounding_box(mask) is None
    mask[1, 5, 2] = mask[4, 2, 6] = True
    assert bounding_box(mask) == (slice(1, 5), slice(2, 6), slice(2, 7))
    assert bounding_box(mask[1]) == (slice(5, 6), slice(2, 3))
