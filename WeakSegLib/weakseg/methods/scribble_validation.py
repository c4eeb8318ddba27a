"""Checkpoint selection on held-out scribbles (variant ``paper`` of method ``maag``).

The published MAAG keeps the checkpoint with the best validation Dice, measured from the
second half of training on (the authors' code: every epoch from epoch n/2 on). Their
validation volumes carry full masks; a scribble-supervised run here has none, so the
score is the Dice of the network's raw prediction (no flip averaging, no component
filter) on the *scribbled* pixels of held-out training cases, per foreground class, then
averaged: the same criterion on the labels a scribble user has, and never the test cases.
"""

from __future__ import annotations

import torch

from weakseg.contract import UNLABELLED
from weakseg.inference import flip_averaged_softmax


def scribble_dice(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  device: torch.device) -> float:
    """Mean foreground Dice of ``network`` on the scribbled pixels of ``(N, C, S, S)`` slices.

    ``labels`` ``(N, S, S)`` holds scribble codes (255 = unlabelled). Classes without a
    scribbled pixel are left out of the mean; 0.0 when none has one. Leaves the network in
    eval mode.
    """
    predicted = flip_averaged_softmax(network, images, device, post_processing=False).argmax(dim=1)
    scribbled = labels != UNLABELLED
    scores = []
    for code in range(1, num_classes):
        truth = labels == code
        if not truth.any():
            continue
        mine = (predicted == code) & scribbled
        scores.append(2.0 * float((mine & truth).sum()) / float(mine.sum() + truth.sum()))
    return sum(scores) / len(scores) if scores else 0.0
