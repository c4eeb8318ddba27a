"""Unit checks of the losses that are not covered by a method's learning test."""

from __future__ import annotations

import torch

from weakseg.losses import masked_distillation


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
