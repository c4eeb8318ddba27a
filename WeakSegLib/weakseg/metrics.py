"""Per-class evaluation of a predicted labelmap against a ground-truth labelmap.

Overlap (Dice, Jaccard, sensitivity, specificity) comes from SimpleITK's
``LabelOverlapMeasuresImageFilter`` and surface distances from ``LabelContour`` and
``SignedMaurerDistanceMap``, so the numbers are those of a widely used, tested toolkit
rather than of hand-written overlap code. Distances are in millimetres: they use the
image spacing, so anisotropic volumes (thick slices) are measured correctly.

Class ``code`` in the labelmaps is the class ``class_names[code]``; by the WeakSeg
convention ``class_names[0]`` is the background.

Empty structures are handled explicitly (``T`` = ground-truth voxels of the class,
``P`` = predicted voxels of the class, ``N`` = all voxels):

========================  ======  =======  ========  ===========  ===========
case                      dice    jaccard  hd95_mm   sensitivity  specificity
========================  ======  =======  ========  ===========  ===========
T and P both empty        1.0     1.0      nan       nan          1.0
T empty, P not            0.0     0.0      nan       nan          computed
T not empty, P empty      0.0     0.0      nan       0.0          computed
T covers every voxel      ...     ...      ...       computed     nan
========================  ======  =======  ========  ===========  ===========

``nan`` marks a value that is undefined (no surface to measure from, or a rate whose
denominator is zero), so that averages over cases can skip it with ``np.nanmean``
instead of silently counting it as perfect or as a failure.

:func:`dice_per_class` is a fast numpy variant for training-time validation and
benchmarks, where per-class Dice alone is needed many times.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from weakseg.errors import WeakSegInputError
from weakseg.io import geometry_differences

HD_PERCENTILE = 95.0


@dataclass(frozen=True)
class ClassScores:
    """Agreement of one class between prediction and ground truth.

    Attributes:
        dice: ``2|P∩T| / (|P|+|T|)`` in [0, 1].
        jaccard: ``|P∩T| / |P∪T|`` in [0, 1].
        hd95_mm: 95th percentile of the pooled symmetric surface distances, in mm
            (``nan`` when either structure is empty).
        sensitivity: ``|P∩T| / |T|`` (true positive rate; ``nan`` when T is empty).
        specificity: ``|¬P∩¬T| / |¬T|`` (true negative rate; ``nan`` when T is everything).
    """

    dice: float
    jaccard: float
    hd95_mm: float
    sensitivity: float
    specificity: float


def evaluate_labelmaps(
    prediction: sitk.Image,
    truth: sitk.Image,
    class_names: list[str],
    prediction_name: str = "prediction",
    truth_name: str = "ground truth",
) -> dict[str, ClassScores]:
    """Score every class of ``prediction`` against ``truth``.

    Args:
        prediction: integer labelmap, 2D or 3D, one component per pixel.
        truth: integer labelmap on the same grid (size, spacing, origin, direction).
        class_names: ``class_names[code]`` names class ``code``; every listed class is
            scored, labels outside ``0..len(class_names)-1`` are ignored.
        prediction_name, truth_name: how error messages name the two inputs (file paths
            when called from the command line).

    Returns:
        ``{class name: ClassScores}`` in the order of ``class_names``.

    Raises:
        WeakSegInputError: no class names, a labelmap with several components or
            non-integer values, or the two grids differ.
    """
    if not class_names:
        raise WeakSegInputError("evaluation needs at least one class name")
    prediction = _as_integer_labelmap(prediction, prediction_name)
    truth = _as_integer_labelmap(truth, truth_name)
    differences = geometry_differences(truth, prediction)
    if differences:
        raise WeakSegInputError(
            f"{prediction_name} does not lie on the grid of {truth_name}: " + "; ".join(differences)
        )
    return {
        name: _score_class(prediction == code, truth == code) for code, name in enumerate(class_names)
    }


def _as_integer_labelmap(image: sitk.Image, name: str) -> sitk.Image:
    """The labelmap cast to Int32 after checking it is scalar and whole-numbered."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise WeakSegInputError(
            f"{name}: a labelmap must have one value per voxel, not {image.GetNumberOfComponentsPerPixel()}"
        )
    values = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise WeakSegInputError(f"{name}: a labelmap must hold whole numbers")
    return sitk.Cast(image, sitk.sitkInt32)


def _score_class(predicted: sitk.Image, true: sitk.Image) -> ClassScores:
    """Scores of one class from its two binary (UInt8, 0/1) masks."""
    total = int(np.prod(true.GetSize()))
    predicted_count = _count(predicted)
    true_count = _count(true)
    if predicted_count == 0 or true_count == 0:
        return _score_with_empty(predicted_count, true_count, total)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(predicted, true)
    specificity = math.nan if true_count == total else 1.0 - overlap.GetFalsePositiveError(1)
    return ClassScores(
        dice=overlap.GetDiceCoefficient(1),
        jaccard=overlap.GetJaccardCoefficient(1),
        hd95_mm=_hd95_mm(predicted, true),
        sensitivity=1.0 - overlap.GetFalseNegativeError(1),
        specificity=specificity,
    )


def _count(mask: sitk.Image) -> int:
    return int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))


def _score_with_empty(predicted_count: int, true_count: int, total: int) -> ClassScores:
    """Scores when the prediction or the truth (or both) has no voxel of the class.

    With ``T`` empty every voxel is a true negative except the ``P`` ones, so the
    specificity is ``1 - |P| / N``; with ``P`` empty it is 1.
    """
    both_empty = predicted_count == 0 and true_count == 0
    negatives = total - true_count
    return ClassScores(
        dice=1.0 if both_empty else 0.0,
        jaccard=1.0 if both_empty else 0.0,
        hd95_mm=math.nan,
        sensitivity=math.nan if true_count == 0 else 0.0,
        specificity=math.nan if negatives == 0 else (negatives - predicted_count) / negatives,
    )


def _hd95_mm(predicted: sitk.Image, true: sitk.Image) -> float:
    """95th percentile of the symmetric surface distances between two non-empty masks, in mm.

    The surface of a mask is its ``LabelContour`` (object voxels with a face neighbour
    outside the object or outside the image). Each surface voxel of one mask gets the distance (between voxel
    centres, scaled by the spacing) to the nearest surface voxel of the other, read
    from an exact Euclidean distance map of that surface. Both directions are pooled
    before taking the percentile (the MedPy ``hd95`` definition; MONAI instead takes the
    larger of the two directed percentiles, which is never smaller). For a class that
    touches the image border, such as the background, the border voxels shared by both
    masks add zero distances, so its HD95 says little.
    """
    predicted_surface = _surface(predicted)
    true_surface = _surface(true)
    distances = np.concatenate(
        [
            _distances_to_surface(predicted_surface, true_surface),
            _distances_to_surface(true_surface, predicted_surface),
        ]
    )
    return float(np.percentile(distances, HD_PERCENTILE))


def _surface(mask: sitk.Image) -> sitk.Image:
    """Surface voxels of a mask, on the mask's grid padded by one voxel of background.

    The padding makes voxels on the image border count as surface (as scipy's erosion
    does in MedPy), so a structure cut by the field of view, or filling it, has one.
    """
    margin = [1] * mask.GetDimension()
    return sitk.LabelContour(sitk.ConstantPad(mask, margin, margin, 0), fullyConnected=False)


def _distances_to_surface(from_surface: sitk.Image, to_surface: sitk.Image) -> np.ndarray:
    """Distances in mm from every voxel of ``from_surface`` to the nearest of ``to_surface``."""
    distance_map = sitk.Abs(
        sitk.SignedMaurerDistanceMap(to_surface, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    )
    on_surface = sitk.GetArrayViewFromImage(from_surface) > 0
    return sitk.GetArrayViewFromImage(distance_map)[on_surface].astype(np.float64)


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every class code ``0..num_classes-1`` from one confusion count.

    Args:
        prediction: integer labels, any shape.
        truth: integer labels, same shape as ``prediction``. Codes outside
            ``0..num_classes-1`` in either array count for no class.
        num_classes: number of class codes.

    Returns:
        float64 ``(num_classes,)``; 1.0 for a class absent from both arrays (as in
        :func:`evaluate_labelmaps`).

    Raises:
        WeakSegInputError: shapes differ or ``num_classes`` < 1.
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        raise WeakSegInputError(f"prediction shape {prediction.shape} differs from ground truth shape {truth.shape}")
    if num_classes < 1:
        raise WeakSegInputError(f"num_classes must be at least 1, got {num_classes}")
    confusion = _confusion(prediction.ravel(), truth.ravel(), num_classes)
    intersection = np.diag(confusion)[:num_classes]
    predicted_sizes = confusion.sum(axis=1)[:num_classes]
    true_sizes = confusion.sum(axis=0)[:num_classes]
    sizes = predicted_sizes + true_sizes
    dice = np.ones(num_classes, dtype=np.float64)
    present = sizes > 0
    dice[present] = 2.0 * intersection[present] / sizes[present]
    return dice


def _confusion(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K+1, K+1)`` counts indexed ``[predicted, true]``; row/column ``K`` gathers invalid codes."""
    prediction = _valid_codes_or_other(prediction, num_classes)
    truth = _valid_codes_or_other(truth, num_classes)
    side = num_classes + 1
    return np.bincount(prediction * side + truth, minlength=side * side).reshape(side, side)


def _valid_codes_or_other(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = labels.astype(np.int64, copy=False)
    return np.where((labels >= 0) & (labels < num_classes), labels, num_classes)


def format_scores_table(scores: dict[str, ClassScores]) -> str:
    """A plain-text table of scores, one row per class, for printing on a terminal.

    When there are two classes or more, a last row gives the mean over every class but
    the first (the background, by convention), ignoring undefined (``nan``) values.
    Undefined values print as ``n/a``.
    """
    columns = ("dice", "jaccard", "hd95_mm", "sensitivity", "specificity")
    headers = ("Dice", "Jaccard", "HD95 (mm)", "Sensitivity", "Specificity")
    rows = [(name, [getattr(score, column) for column in columns]) for name, score in scores.items()]
    names = list(scores)
    if len(names) >= 2:
        foreground = np.array([values for _, values in rows[1:]], dtype=np.float64)
        rows.append((f"mean (without {names[0]})", list(_nan_mean_columns(foreground))))
    name_width = max([len("class")] + [len(name) for name, _ in rows])
    widths = [max(len(header), 9) for header in headers]
    lines = ["  ".join([f"{'class':<{name_width}}"] + [f"{h:>{w}}" for h, w in zip(headers, widths)])]
    lines.append("-" * len(lines[0]))
    for name, values in rows:
        cells = [f"{_format_value(value):>{width}}" for value, width in zip(values, widths)]
        lines.append("  ".join([f"{name:<{name_width}}"] + cells))
    return "\n".join(lines)


def _nan_mean_columns(values: np.ndarray) -> np.ndarray:
    """Column means ignoring nan; a column that is all nan stays nan (without a warning)."""
    defined = np.isfinite(values)
    counts = defined.sum(axis=0)
    sums = np.where(defined, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _format_value(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def scores_as_dict(scores: dict[str, ClassScores]) -> dict[str, dict[str, float]]:
    """Plain nested dictionaries (for JSON output); ``nan`` stays ``nan``."""
    return {name: asdict(score) for name, score in scores.items()}
