"""Unit checks of the losses that are not covered by a method's learning test."""

from __future__ import annotations

import torch

from weakseg.contract import UNLABELLED
from weakseg.losses import (entropy_minimisation, masked_distillation, partial_cross_entropy, partial_cross_entropy_and_dice,
                            scribble_regularisers, total_variation)


def test_masked_distillation_is_zero_when_the_student_matches_the_teacher():
    logits = torch.randn(2, 3, 5, 5)
    mask = torch.ones(2, 5, 5, dtype=torch.bool)
    assert masked_distillation(logits, torch.softmax(logits, dim=1), mask).item() < 1e-6


def test_masked_distillation_reads_only_the_masked_pixels():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.softmax(torch.randn(1, 3, 4, 4, generator=generator), dim=1)
    student = torch.randn(1, 3, 4, 4, generator=generator)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    changed = student.clone()
    changed[0, :, 2:] += 5.0
    reference = masked_distillation(student, teacher, mask)
    assert reference.item() > 0
    torch.testing.assert_close(masked_distillation(changed, teacher, mask), reference)
    expected = (teacher * (teacher.log() - torch.log_softmax(student, dim=1))).sum(dim=1)[mask].mean()
    torch.testing.assert_close(reference, expected)


def test_masked_distillation_of_an_empty_mask_is_zero_with_a_gradient():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = masked_distillation(logits, torch.full((1, 2, 3, 3), 0.5), torch.zeros(1, 3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_scribble_regularisers_push_the_far_pixels_to_background():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    far = torch.zeros(2, 8, 8, dtype=torch.long)
    far[:, :2] = 1
    expected = 0.5 * torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[far == 1], torch.zeros(32, dtype=torch.long))
    torch.testing.assert_close(scribble_regularisers(logits, far, 0.0, 0.0, 0.5), expected)
    assert scribble_regularisers(logits, None, 0.0, 0.0, 0.5).item() == 0.0
    background_there = logits.clone()
    background_there[:, 0, :2] = 20.0
    assert scribble_regularisers(background_there, far, 0.0, 0.0, 0.5) < 1e-6


def test_scribble_regularisers_add_the_weighted_entropy_and_total_variation():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    expected = 0.05 * entropy_minimisation(logits) + 0.2 * total_variation(logits)
    torch.testing.assert_close(scribble_regularisers(logits, None, 0.05, 0.2, 0.1), expected)


def test_a_shares_background_prior_is_normalised_by_the_global_batch():
    """Two processes' shares, each scaled by the world size and normalised by the global count, average to the whole batch's term."""
    torch.manual_seed(2)
    logits = torch.randn(4, 3, 6, 6)
    far = (torch.rand(4, 6, 6) > 0.5).long()
    whole = scribble_regularisers(logits, far, 0.0, 0.0, 0.1)
    total = (far == 1).sum()
    shares = [scribble_regularisers(logits[part], far[part], 0.0, 0.0, 0.1, world_size=2, far_total=total)
              for part in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close((shares[0] + shares[1]) / 2, whole)


def test_the_dice_term_weighs_a_small_lesion_that_cross_entropy_lets_a_network_ignore():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :2, :2] = 1  # a lesion of 4 pixels among 60 labelled ones
    labels[0, 6:, :2] = UNLABELLED
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 0] = 3.0  # "background everywhere"
    cross_entropy = partial_cross_entropy(logits, labels)
    assert partial_cross_entropy_and_dice(logits, labels, 0.0) == cross_entropy
    with_dice = partial_cross_entropy_and_dice(logits, labels, 1.0)
    assert cross_entropy < 0.3  # the missed lesion is a small share of the mean
    assert with_dice - cross_entropy > 0.45  # the lesion class's Dice is ~0: half the mean over the two classes
    changed = logits.clone()
    changed[0, :, 6:, :2] = torch.tensor([-5.0, 5.0])[:, None, None]  # the unlabelled pixels do not count
    assert torch.isclose(partial_cross_entropy_and_dice(changed, labels, 1.0), with_dice)
