"""``weakseg bench imagelabel``: segmentation from image-level labels, the pipeline and its baselines in one run.

The methods learn from slice labels ("shows a lesion" / "healthy") only; full masks are
read for two things alone: deriving those slice labels (BraTS layout), and scoring.

Methods:
    intensity   brain/foreground-masked intensity above mean + k * std (or below
                mean - k * std), with k and the direction chosen on the training cases
    cam         class activation maps of the slice classifier (CAM > 0.5 on slices the
                classifier calls lesion)
    cam+crf     the same probabilities refined by the dense CRF
    network+crf the self-trained U-Net refined by the CRF, without the appearance step
                (an ablation of ``full``)
    full        CAM -> class-balanced superpixel pseudo labels -> self-trained U-Net ->
                per-volume appearance refinement -> CRF
    cycle       method ``cycle``'s masks read from its lesion -> healthy translation (CAM-guided
                CycleGAN, fused with the CAM, Otsu, CRF), before its segmentation network;
                the overlays add the translated healthy image
    cycle-net   method ``cycle``'s prediction: its segmentation network (one flip-averaged pass),
                the edges redrawn by the image's appearance model, then the CRF (as ``full``)
    cycle-net-alone  the same network without the appearance step and the CRF (an ablation)

The rows ``full`` and ``network+crf`` are the ``imagelabel`` method and an ablation of it, the
``cycle`` rows the ``cycle`` method. ``cam`` and ``cam+crf`` use the classifier of the
``imagelabel`` model, or, when no ``imagelabel`` row is asked for, the ``cycle`` model's (the
same classifier, trained the same way), so that one model is trained, not two.

Layouts (``layout``, detected when ``auto``):
    brats       a folder of volumes ``<case>_<channel>.nii.gz`` (``--channel``, default
                ``flair``) with ``<case>_label.nii.gz`` (lesion = label > 0) and optionally
                ``<case>_brainmask.nii.gz`` (used by the intensity baseline). Slice labels
                come from the masks. ``--train-split`` / ``--test-split`` are comma lists of
                substrings of case names (``pat0005,pat0006``).
    medimgseg   a folder holding one or more datasets (``ISIC/``, ``BraTS/``), each with
                ``val/images`` + ``val/labels`` (lesion images), ``testA`` or ``test``
                (lesion images to evaluate), ``testB/`` (healthy images). Training uses
                ``val`` and the even-numbered healthy images, evaluation the test images
                and the odd-numbered healthy ones. One table per dataset.

Scores, per method: mean 3D Dice per volume (per image for 2D data), mean Dice over
lesion slices, the seed paper's per-image JA / DI / AC / SE / SP (Jaccard, Dice, pixel
accuracy, sensitivity, specificity; mean over lesion slices), slice-level lesion /
no-lesion accuracy (a slice is predicted "lesion" when any pixel is), and seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from weakseg.bench.reports import imagelabel_table, seed_spread, spread_table, write_csv, write_overlay
from weakseg.contract import BACKGROUND
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import slice_labels_from_mask
from weakseg.io import read_image, read_labelmap
from weakseg.methods.appearance import foreground_region
from weakseg.metrics import dice_per_class
from weakseg.progress import SILENT, Progress

IMAGELABEL_METHODS = ("intensity", "cam", "cam+crf", "network+crf", "full", "cycle", "cycle-net", "cycle-net-alone")
DEFAULT_ROWS = IMAGELABEL_METHODS[:5]  # the cycle rows train a second model: asked for by name
PIPELINE_ROWS = ("network+crf", "full")
CYCLE_ROWS = ("cycle", "cycle-net", "cycle-net-alone")
CLASS_NAMES = [BACKGROUND, "lesion"]
INTENSITY_K_GRID = np.round(np.arange(0.0, 3.01, 0.1), 2)


@dataclass
class BenchCase:
    """One image or volume: raw intensities ``(C, Z, Y, X)``, truth ``(Z, Y, X)`` 0/1, region mask."""

    name: str
    array: np.ndarray
    truth: np.ndarray
    region: np.ndarray
    spacing_zyx: tuple[float, float, float]


@dataclass
class ImageLabelBenchOptions:
    """What to benchmark; ``rounds``, ``steps``, ``gan_steps``, ``image_size``, ``class_balance``, ``normalisation``,
    ``dice_weight`` None keep the methods' defaults (``steps``: the classifier's and each training stage's of both methods)."""

    data_dir: str
    out: str = "bench-out"
    methods: tuple[str, ...] = DEFAULT_ROWS
    layout: str = "auto"
    train_split: str | None = None
    test_split: str | None = None
    channel: str = "flair"
    rounds: int | None = None
    steps: int | None = None
    gan_steps: int | None = None
    image_size: int | None = None
    class_balance: str | None = None
    normalisation: str | None = None
    dice_weight: float | None = None
    overlays: int = 3
    device: str = "auto"
    seed: int = 0
    seeds: tuple[int, ...] = ()  # several: one run per seed (``out/seed-N``) and the spread over them
    cam_guide: bool = True  # the cycle rows: False trains the cycle model with --no-cam-guide


@dataclass
class ImageLabelBenchResult:
    """Per dataset: the summary rows and the table printed for people."""

    summaries: dict[str, list[dict]]
    tables: dict[str, str]

    @property
    def text(self) -> str:
        return "\n".join(self.tables.values())


def check_options(options: ImageLabelBenchOptions) -> None:
    """Raise :class:`WeakSegInputError` for unknown rows or a weight out of range (before any work)."""
    unknown = [name for name in options.methods if name not in IMAGELABEL_METHODS]
    if unknown:
        raise WeakSegInputError(f"--methods: unknown {unknown}; choose from {', '.join(IMAGELABEL_METHODS)}")
    if options.dice_weight is not None and not 0.0 <= options.dice_weight <= 100.0:
        raise WeakSegInputError(f"--dice-weight {options.dice_weight}: give a weight from 0 to 100")


def run_imagelabel_bench(options: ImageLabelBenchOptions, progress: Progress = SILENT) -> ImageLabelBenchResult:
    """Run the benchmark; one summary and table per dataset."""
    check_options(options)
    layout = detect_layout(options.data_dir) if options.layout == "auto" else options.layout
    if layout == "brats":
        datasets = {Path(options.data_dir).name: _brats_splits(options)}
    else:
        datasets = _medimgseg_splits(options.data_dir)
    out = Path(options.out)
    result = ImageLabelBenchResult({}, {})
    seeds = options.seeds or (options.seed,)
    runs = [(dataset, seed) for dataset in datasets for seed in seeds]
    for index, (dataset, seed) in enumerate(runs):
        part = progress.part(index / len(runs), (index + 1) / len(runs))
        folder = out / dataset if len(datasets) > 1 else out
        train, test = datasets[dataset]
        summary, table = _bench_dataset(dataset, train, test, list(options.methods), layout, replace(options, seed=seed),
                                        folder / f"seed-{seed}" if len(seeds) > 1 else folder, part)
        if len(seeds) == 1:
            result.summaries[dataset], result.tables[dataset] = summary, table
            continue
        result.tables[dataset] = result.tables.get(dataset, "") + f"seed {seed}: {table}\n\n"
        result.summaries.setdefault(dataset, []).extend({"seed": seed, **row} for row in summary)
    if len(seeds) > 1:
        for dataset, rows in result.summaries.items():
            spread = seed_spread(rows, "method", list(options.methods), ("dice_3d", "slice_dice"))
            write_csv((out / dataset if len(datasets) > 1 else out) / "spread.csv", spread)
            result.tables[dataset] += f"{dataset}, seeds {','.join(map(str, seeds))}:\n" + spread_table(
                spread, "method", {"dice_3d": "3D Dice", "slice_dice": "Dice (lesion slices)"})
    progress.report(1.0, "done")
    return result


def detect_layout(folder: str) -> str:
    """``brats`` when the folder holds ``*_label.nii.gz`` volumes, ``medimgseg`` when it holds dataset folders."""
    if not os.path.isdir(folder):
        raise WeakSegInputError(f"{folder}: no such folder")
    names = os.listdir(folder)
    if any(name.endswith("_label.nii.gz") for name in names):
        return "brats"
    if any(os.path.isdir(os.path.join(folder, name, "testB")) for name in names) or "testB" in names:
        return "medimgseg"
    raise WeakSegInputError(
        f"{folder}: neither a BraTS-style folder (<case>_label.nii.gz volumes) nor a medimgseg-style "
        "folder (datasets with val/, testA/ or test/, testB/); pass --layout"
    )


# --------------------------------------------------------------------------- reading


def _brats_splits(options: ImageLabelBenchOptions) -> tuple[list[BenchCase], list[BenchCase]]:
    folder = Path(options.data_dir)
    suffix = f"_{options.channel}.nii.gz"
    names = sorted(entry.name[: -len(suffix)] for entry in folder.iterdir() if entry.name.endswith(suffix))
    if not names:
        raise WeakSegInputError(f"{folder}: no <case>{suffix} volumes (choose the channel with --channel)")
    if not options.train_split or not options.test_split:
        raise WeakSegInputError("the brats layout needs --train-split and --test-split (e.g. pat0005,pat0006)")

    def select(spec: str) -> list[BenchCase]:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        chosen = [name for name in names if any(item in name for item in items)]
        if not chosen:
            raise WeakSegInputError(f"split {spec!r} selects none of the cases in {folder}: {names}")
        return [_read_brats_case(folder, name, suffix) for name in chosen]

    return select(options.train_split), select(options.test_split)


def _read_brats_case(folder: Path, name: str, suffix: str) -> BenchCase:
    image = read_image(folder / f"{name}{suffix}")
    label_path = folder / f"{name}_label.nii.gz"
    if not label_path.exists():
        raise WeakSegInputError(f"{label_path}: missing; the bench needs a mask per volume to score and label slices")
    truth = (read_labelmap(label_path, image.reference) > 0).astype(np.uint8)
    mask_path = folder / f"{name}_brainmask.nii.gz"
    region = (read_labelmap(mask_path, image.reference) > 0) if mask_path.exists() else foreground_region(image.array)
    spacing = tuple(float(value) for value in reversed(image.reference.GetSpacing()))
    return BenchCase(name, image.array, truth, region, spacing)


def _medimgseg_splits(folder: str) -> dict[str, tuple[list[BenchCase], list[BenchCase]]]:
    root = Path(folder)
    candidates = [root] if (root / "testB").is_dir() else sorted(path for path in root.iterdir() if (path / "testB").is_dir())
    datasets = {}
    for dataset in candidates:
        test_folder = next((dataset / name for name in ("testA", "test") if (dataset / name).is_dir()), None)
        if not (dataset / "val").is_dir() or test_folder is None:
            raise WeakSegInputError(f"{dataset}: needs val/ and testA/ (or test/) folders beside testB/")
        healthy = sorted(path for path in (dataset / "testB").iterdir() if path.is_file())
        train = _read_picture_folder(dataset / "val") + [_read_picture(path, None) for path in healthy[0::2]]
        test = _read_picture_folder(test_folder) + [_read_picture(path, None) for path in healthy[1::2]]
        datasets[dataset.name] = (train, test)
    return datasets


def _read_picture_folder(folder: Path) -> list[BenchCase]:
    """Lesion pictures of ``folder/images`` with masks ``folder/labels/<stem>_segmentation.png``."""
    cases = []
    for path in sorted((folder / "images").iterdir()):
        mask = folder / "labels" / f"{path.stem}_segmentation.png"
        if not mask.exists():
            raise WeakSegInputError(f"{mask}: missing mask for {path}")
        cases.append(_read_picture(path, mask))
    if not cases:
        raise WeakSegInputError(f"{folder / 'images'}: no pictures")
    return cases


def _read_picture(path: Path, mask_path: Path | None) -> BenchCase:
    """A 2D picture (Z = 1); no mask means a healthy image (truth all zero)."""
    image = read_image(path)
    if mask_path is None:
        truth = np.zeros(image.shape_zyx, dtype=np.uint8)
    else:
        mask = read_image(mask_path).array
        if mask.shape[1:] != image.array.shape[1:]:
            raise WeakSegInputError(f"{mask_path}: size {mask.shape[2:]} differs from its image's {image.array.shape[2:]}")
        truth = (mask[0] > mask[0].max() / 2).astype(np.uint8) if mask.max() > 0 else np.zeros(image.shape_zyx, np.uint8)
    return BenchCase(path.stem, image.array, truth, foreground_region(image.array), (1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- methods


def intensity_labels(case: BenchCase, k: float, direction: int) -> np.ndarray:
    """Region pixels beyond mean + k * std (direction +1) or below mean - k * std (-1) of the region."""
    grey = case.array.mean(axis=0)
    values = grey[case.region]
    z_score = (grey - values.mean()) / max(float(values.std()), 1e-6)
    return ((direction * z_score > k) & case.region).astype(np.uint8)


def choose_intensity_rule(train: list[BenchCase]) -> tuple[float, int, float]:
    """``(k, direction, mean training Dice)`` maximising the mean Dice over the lesion training cases."""
    lesion_cases = [case for case in train if case.truth.any()]
    best = (0.0, 1, -1.0)
    for direction in (1, -1):
        for k in INTENSITY_K_GRID:
            score = float(np.mean([_dice(intensity_labels(case, k, direction), case.truth) for case in lesion_cases]))
            if score > best[2]:
                best = (float(k), direction, score)
    return best


def _train_model(train: list[BenchCase], layout: str, options: ImageLabelBenchOptions, progress: Progress):
    from weakseg.engine import pick_device
    from weakseg.methods.imagelabel import ImageLabelConfig
    from weakseg.methods.imagelabel_pipeline import LabelledVolume, train_image_label_model

    config = ImageLabelConfig(seed=options.seed, mirror_excess=layout == "brats")
    if options.rounds is not None:
        config.rounds = options.rounds
    if options.steps is not None:
        config.classifier_steps = config.round_steps = options.steps
    if options.image_size is not None:
        config.image_size = options.image_size
    if options.class_balance is not None:
        config.class_balance = options.class_balance
    if options.normalisation is not None:
        config.normalisation = options.normalisation
    if options.dice_weight is not None:
        config.dice_weight = options.dice_weight
    volumes = [LabelledVolume(case.name, case.array, slice_labels_from_mask(case.truth, CLASS_NAMES)) for case in train]
    return train_image_label_model(volumes, CLASS_NAMES, config, progress, pick_device(options.device))


def _train_cycle_model(train: list[BenchCase], layout: str, options: ImageLabelBenchOptions, progress: Progress):
    from weakseg.engine import pick_device
    from weakseg.methods.cycle import CycleSettings
    from weakseg.methods.cycle_training import train_cycle_model
    from weakseg.methods.imagelabel_pipeline import LabelledVolume

    settings = CycleSettings(seed=options.seed, mirror_excess=layout == "brats", no_cam_guide=not options.cam_guide)
    if options.steps is not None:
        settings.classifier_steps = settings.segmenter_steps = options.steps
    if options.gan_steps is not None:
        settings.gan_steps = options.gan_steps
    if options.image_size is not None:
        settings.image_size = options.image_size
    if options.normalisation is not None:
        settings.normalisation = options.normalisation
    settings.check()
    volumes = [LabelledVolume(case.name, case.array, slice_labels_from_mask(case.truth, CLASS_NAMES)) for case in train]
    return train_cycle_model(volumes, CLASS_NAMES, settings, progress, pick_device(options.device))


def _predict(method: str, case: BenchCase, model, rule: tuple[float, int, float]) -> tuple[np.ndarray, tuple]:
    """The row's labels ``(Z, Y, X)`` and the images its overlay adds (the healthy translation for ``cycle``)."""
    if method == "cycle":
        from weakseg.methods.cycle_model import translation_masks

        labels, healthy = translation_masks(model, case.array)
        return labels, (healthy,)
    if method in ("cycle-net", "cycle-net-alone"):
        from weakseg.methods.cycle_model import segment_array

        alone = False if method == "cycle-net-alone" else None
        return segment_array(model, case.array, case.spacing_zyx, appearance=alone, crf=alone)[0], ()
    return _predict_imagelabel(method, case, model, rule), ()


def _predict_imagelabel(method: str, case: BenchCase, model, rule: tuple[float, int, float]) -> np.ndarray:
    from weakseg.methods.imagelabel_baselines import cam_probabilities, refine_probabilities
    from weakseg.methods.imagelabel_pipeline import segment_volume

    if method == "intensity":
        return intensity_labels(case, rule[0], rule[1])
    if method in ("full", "network+crf"):
        labels, _ = segment_volume(model, case.array, case.spacing_zyx, crf=True, appearance=method == "full")
        return labels
    probabilities = cam_probabilities(model, case.array)
    if method == "cam+crf":
        probabilities = refine_probabilities(case.array, probabilities, case.spacing_zyx)
    return probabilities.argmax(axis=0).astype(np.uint8)


# --------------------------------------------------------------------------- one dataset


def _bench_dataset(dataset: str, train: list[BenchCase], test: list[BenchCase], methods: list[str], layout: str,
                   options: ImageLabelBenchOptions, out: Path, progress: Progress) -> tuple[list[dict], str]:
    started = time.perf_counter()
    rule = choose_intensity_rule(train)
    wants_cycle = any(method in CYCLE_ROWS for method in methods)
    wants_cam = any(method in ("cam", "cam+crf") for method in methods)
    model = cycle_model = None
    if any(method in PIPELINE_ROWS for method in methods) or (wants_cam and not wants_cycle):
        model = _train_model(train, layout, options, progress.part(0.0, 0.4 if wants_cycle else 0.8))
    if wants_cycle:
        cycle_model = _train_cycle_model(train, layout, options, progress.part(0.4 if model else 0.0, 0.8))
    training_seconds = time.perf_counter() - started
    progress = progress.part(0.8, 1.0)
    case_rows, slice_rows = [], []
    for index, case in enumerate(test):
        for method_index, method in enumerate(methods):
            progress.report((index * len(methods) + method_index) / (len(test) * len(methods)), f"{case.name}: {method}")
            started = time.perf_counter()
            prediction, more_images = _predict(method, case, cycle_model if method in CYCLE_ROWS else model or cycle_model,
                                               rule)
            seconds = time.perf_counter() - started
            case_rows.append({"dataset": dataset, "case": case.name, "method": method,
                              "dice_3d": _dice(prediction, case.truth) if case.truth.any() else float("nan"),
                              "lesion_slices": int(case.truth.reshape(case.truth.shape[0], -1).any(1).sum()),
                              "seconds": seconds})
            slice_rows += _slice_rows(dataset, case, method, prediction)
            if index < options.overlays and case.truth.any():
                write_overlay(out, case.name, method, case.array, case.truth, prediction, more_images=more_images)
    summary = summarise(case_rows, slice_rows, methods)
    write_csv(out / "cases.csv", case_rows)
    write_csv(out / "slices.csv", slice_rows)
    write_csv(out / "summary.csv", summary)
    header = (f"{dataset}: trained on {len(train)} images/volumes ({training_seconds:.0f} s), tested on {len(test)}; "
              f"intensity rule: {'above mean +' if rule[1] > 0 else 'below mean -'} {rule[0]:.1f} std "
              f"(training Dice {rule[2]:.3f})")
    return summary, header + "\n" + imagelabel_table(summary)


def _slice_rows(dataset: str, case: BenchCase, method: str, prediction: np.ndarray) -> list[dict]:
    rows = []
    for index, (predicted, true) in enumerate(zip(prediction > 0, case.truth > 0)):
        true_positive = int(np.count_nonzero(predicted & true))
        false_positive = int(np.count_nonzero(predicted & ~true))
        false_negative = int(np.count_nonzero(~predicted & true))
        true_negative = int(predicted.size - true_positive - false_positive - false_negative)
        rows.append({"dataset": dataset, "case": case.name, "slice": index, "method": method,
                     "lesion": bool(true.any()), "predicted_lesion": bool(predicted.any()),
                     "tp": true_positive, "fp": false_positive, "fn": false_negative, "tn": true_negative})
    return rows


def summarise(case_rows: list[dict], slice_rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method: mean 3D Dice, lesion-slice Dice / JA / AC / SE / SP, slice accuracy, seconds."""
    summary = []
    for method in methods:
        cases = [row for row in case_rows if row["method"] == method]
        slices = [row for row in slice_rows if row["method"] == method]
        lesion = [row for row in slices if row["lesion"]]
        tp, fp, fn, tn = (np.array([row[key] for row in lesion], dtype=np.float64) for key in ("tp", "fp", "fn", "tn"))
        summary.append({
            "method": method,
            "dice_3d": float(np.nanmean([row["dice_3d"] for row in cases])),
            "slice_dice": float(np.mean(2 * tp / np.maximum(2 * tp + fp + fn, 1))),
            "jaccard": float(np.mean(tp / np.maximum(tp + fp + fn, 1))),
            "accuracy": float(np.mean((tp + tn) / np.maximum(tp + fp + fn + tn, 1))),
            "sensitivity": float(np.mean(tp / np.maximum(tp + fn, 1))),
            "specificity": float(np.mean(tn / np.maximum(tn + fp, 1))),
            "slice_accuracy": float(np.mean([row["lesion"] == row["predicted_lesion"] for row in slices])),
            "lesion_slices": len(lesion),
            "slices": len(slices),
            "seconds": float(np.mean([row["seconds"] for row in cases])),
        })
    return summary


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of the whole lesion (every code > 0), 1.0 when both are empty."""
    return float(dice_per_class((prediction > 0).astype(np.uint8), (truth > 0).astype(np.uint8), 2)[1])
