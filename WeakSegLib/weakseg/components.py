"""Connected-component clean-up of label volumes, and choosing its form from a model's own training scribbles.

A network trained from weak labels sometimes labels a blob far from the structure (a
basal slice read as left ventricle, a bright vessel read as lesion). Keeping the largest
connected component of every class removes such blobs, but when a false blob of a class
is larger than its true region, the true region is the one removed (a class Dice of 0).

When the foreground classes form one object (the heart: right ventricle, myocardium and
left ventricle touch), a second rule removes such blobs first: keep the largest connected
piece of *all foreground classes together*, then the largest component of each class
within it (the order nnU-Net's post-processing also uses). On separate structures
(left and right kidney as two classes) that rule would delete all but one of them, so it
is chosen per model, from data: :func:`one_piece_keeps_scribbles` applies both rules to
the network's predictions of its training cases and adopts the one-piece rule only when
it keeps the scribbled foreground voxels as the per-class rule does.
"""

from __future__ import annotations

import numpy as np

from weakseg.bounding_box import bounding_box
from weakseg.contract import UNLABELLED

# The share of the correctly predicted, scribbled foreground voxels the one-piece rule may lose
# against the per-class rule and still be adopted. A structure it wrongly removes takes all of
# its scribbles with it, far more than this share of a cohort's scribbled foreground.
ONE_PIECE_TOLERANCE = 0.002


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a bool ``mask`` (faces, edges and corners connect), as bool."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count < 2:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == sizes.argmax()


def keep_largest_components(labels: np.ndarray, num_classes: int, one_piece: bool = False) -> np.ndarray:
    """Keep the largest connected component of every foreground class ``1..num_classes-1``; the rest -> background.

    Components connect through faces, edges and corners. Each class is labelled within the
    bounding box of its voxels only (usually a small part of the volume). ``one_piece``
    first keeps only the largest connected piece of all foreground classes together (for
    classes that form one object; see the module's description).
    """
    result = labels.copy()
    if one_piece:
        _clear_all_but_largest(result, result > 0)
    for code in range(1, num_classes):
        _clear_all_but_largest(result, result == code)
    return result


def _clear_all_but_largest(labels: np.ndarray, mask: np.ndarray) -> None:
    """Set to background, in place, the voxels of ``mask`` outside its largest component (labelled within its box)."""
    box = bounding_box(mask)
    if box is not None:
        inside = mask[box]
        labels[box][inside & ~_largest(inside)] = 0


def scribbled_voxels_kept(labels: np.ndarray, scribbles: np.ndarray) -> int:
    """How many scribbled foreground voxels (codes 1..254) ``labels`` gives their scribble's class."""
    foreground = (scribbles != UNLABELLED) & (scribbles != 0)
    return int(np.count_nonzero(labels[foreground] == scribbles[foreground]))


def one_piece_keeps_scribbles(predictions: list[np.ndarray], scribbles: list[np.ndarray], num_classes: int,
                              tolerance: float = ONE_PIECE_TOLERANCE) -> tuple[bool, dict]:
    """Whether the one-piece clean-up suits a model, judged on its predictions of scribbled volumes.

    Args:
        predictions: the network's labels of each training volume (argmax, no clean-up).
        scribbles: the same volumes' scribbles, on the same grid (255 = unlabelled).
        num_classes: classes including background.

    Returns:
        ``(adopt, record)``: ``adopt`` is True when there are at least two foreground classes
        and the one-piece rule keeps at least ``1 - tolerance`` of the scribbled foreground
        voxels that the per-class rule keeps; ``record`` holds both counts (stored in the
        model file so the choice can be checked).
    """
    per_class = one_piece = 0
    for labels, scribbled in zip(predictions, scribbles):
        per_class += scribbled_voxels_kept(keep_largest_components(labels, num_classes), scribbled)
        one_piece += scribbled_voxels_kept(keep_largest_components(labels, num_classes, one_piece=True), scribbled)
    adopt = num_classes > 2 and per_class > 0 and one_piece >= (1.0 - tolerance) * per_class
    return adopt, {"one_piece": bool(adopt), "scribbled_voxels_kept": {"per_class": per_class, "one_piece": one_piece}}
