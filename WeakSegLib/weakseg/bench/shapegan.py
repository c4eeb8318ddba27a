"""``weakseg bench shapegan``: segmentation without masks of the training images, on HC18-style data.

Protocol (HC18, ``<case>_image.png`` / ``<case>_mask.png`` and ``hc18_pixel_size.csv``):
train on the images of ``train_split`` (000-149), score on ``test_split`` (150-199).
The masks of the training images train the reference row only; for the other rows they
only score the GAN's pseudo labels (column "pseudo-label Dice (training)").

Rows:

* ``supervised``: the segmenter on the true masks of the training images (plain Dice, as
  many steps as all rounds of a shape-gan row together): the reference;
* ``shape-gan``: ``--shape-model ellipse`` (the default model), training images all of
  ``train_split``;
* ``shape-gan-unpaired``: training on ``unpaired_train_split`` (000-099) with the masks of
  ``unpaired_split`` (100-149) as unpaired masks;
* ``no-vae-discriminator``, ``no-dgcc``: ``shape-gan`` with one part of the GAN off (their
  GAN may run fewer steps, ``ablation_gan_steps``; the table says so);
* ``plain-dice``: ``shape-gan`` with plain Dice. After a ``shape-gan`` row it keeps that
  row's GAN and pseudo labels and redoes only the segmenter stage (same seeded start and
  batch order, :func:`~weakseg.methods.shape_gan_training.retrain_segmenter`), so the two
  rows differ by the loss alone.

Scores per test image: Dice of the structure, HD95 in mm and the absolute error of the
head circumference (ellipse fit, :mod:`weakseg.head_circumference`) against the CSV's
``head_circumference_mm``, all with the CSV's pixel size. ``cases.csv``, ``summary.csv``
and overlay PNGs go to ``out``.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from weakseg.bench.reports import seed_spread, spread_table, write_csv, write_overlay
from weakseg.cases import list_cases
from weakseg.errors import WeakSegInputError
from weakseg.head_circumference import PIXEL_SIZE_CSV, head_circumference_mm
from weakseg.io import read_image
from weakseg.methods.registry import method_named
from weakseg.methods.spec import TrainingRequest
from weakseg.metrics import evaluate_labelmaps
from weakseg.progress import SILENT, Progress

ROWS = ("supervised", "shape-gan", "shape-gan-unpaired", "no-vae-discriminator", "no-dgcc", "plain-dice")
ABLATIONS = {"no-vae-discriminator": {"plain_discriminator": True}, "no-dgcc": {"no_dgcc": True},
             "plain-dice": {"plain_dice": True}}
GAN_ABLATIONS = ("no-vae-discriminator", "no-dgcc")


@dataclass
class ShapeGanBenchOptions:
    """What to benchmark; ``settings`` are changes to the method's defaults for every row."""

    data_dir: str
    out: str = "bench-out"
    rows: tuple[str, ...] = ROWS
    train_split: str = "000-149"
    unpaired_train_split: str = "000-099"
    unpaired_split: str = "100-149"
    test_split: str = "150-199"
    shape_model: str = "ellipse"
    settings: dict = field(default_factory=dict)
    ablation_gan_steps: int | None = None
    overlays: int = 3
    device: str = "auto"
    seed: int = 0
    seeds: tuple[int, ...] = ()  # several: one run per seed (``out/seed-N``) and the spread over them


@dataclass
class ShapeGanBenchResult:
    table: str
    summary: list[dict]  # one entry per row, and per seed (with a ``seed``) when several ran


def check_options(options: ShapeGanBenchOptions) -> None:
    """Refuse unknown rows and a folder without the pixel-size CSV before any work."""
    unknown = [row for row in options.rows if row not in ROWS]
    if unknown:
        raise WeakSegInputError(f"--rows: unknown row(s) {unknown}; expected some of {', '.join(ROWS)}")
    if not (Path(options.data_dir) / PIXEL_SIZE_CSV).is_file():
        raise WeakSegInputError(f"{options.data_dir}: no {PIXEL_SIZE_CSV} (columns case, pixel_size_mm, "
                                "head_circumference_mm) to measure in mm")


def _reference_table(data_dir: str) -> dict[str, dict[str, float]]:
    with open(Path(data_dir) / PIXEL_SIZE_CSV, newline="") as handle:
        return {row["case"]: {"pixel": float(row["pixel_size_mm"]), "hc": float(row["head_circumference_mm"])}
                for row in csv.DictReader(handle)}


def _train_row(row: str, options: ShapeGanBenchOptions, device, progress: Progress) -> tuple:
    """The row's trained model, the steps its GAN ran (0: no GAN) and its model file (None: not kept)."""
    from weakseg.engine import pick_device
    from weakseg.methods.shape_gan_model import load_model
    from weakseg.methods.shape_gan_training import retrain_segmenter, train_supervised
    from weakseg.unpaired_masks import list_mask_files

    spec = method_named("shape-gan")
    changes = {**options.settings, "seed": options.seed, **ABLATIONS.get(row, {})}
    if row in GAN_ABLATIONS and options.ablation_gan_steps:
        changes["gan_steps"] = options.ablation_gan_steps
    if row != "shape-gan-unpaired":
        changes["shape_model"] = options.shape_model
    settings = spec.make_settings(**changes)
    settings.check()
    if row == "supervised":
        return train_supervised(options.data_dir, options.train_split, settings, pick_device(device), progress), 0, None
    path = Path(options.out) / "models" / f"{row}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    main_model = Path(options.out) / "models" / "shape-gan.pt"
    if row == "plain-dice" and "shape-gan" in options.rows[: options.rows.index(row)]:
        retrain_segmenter(str(main_model), str(path), options.data_dir, settings, pick_device(device), progress)
        return load_model(str(path), pick_device(device)), settings.gan_steps, path
    unpaired = list_mask_files(options.data_dir, options.unpaired_split) if row == "shape-gan-unpaired" else None
    spec.function("train")(TrainingRequest(
        data_dir=options.data_dir, out_path=str(path), settings=settings, class_names=None,
        device=pick_device(device), progress=progress, unpaired_masks=unpaired,
        split=options.unpaired_train_split if row == "shape-gan-unpaired" else options.train_split))
    return load_model(str(path), pick_device(device)), settings.gan_steps, path


def pseudo_label_dice(model_path: Path, data_dir: str) -> float:
    """Mean Dice of a shape-gan model's pseudo labels against the true masks of its training images, on the
    network grid; NaN when a training image has no mask.

    The masks are used for this score only: it says how much of a row's result the GAN gave
    and how much the segmenter's rounds added.
    """
    import torch

    from weakseg.data import resize_labels
    from weakseg.engine import load_checkpoint
    from weakseg.methods.shape_gan_data import binary_mask

    payload = load_checkpoint(str(model_path), torch.device("cpu"))
    metadata = payload["metadata"]
    height, width = int(metadata["grid"][0]), int(metadata["grid"][1])
    masks = {case.name: case.label_path for case in list_cases(data_dir, None, require_scribbles=False)}
    names = list(metadata["training_cases"])
    if any(not masks.get(name) for name in names):
        return float("nan")
    pseudo = payload["extra"]["pseudo_labels"].bool()
    truth = torch.cat([resize_labels(torch.from_numpy(binary_mask(masks[name]).astype(np.int64)), (height, width))
                       for name in names]).bool()
    overlap = (pseudo & truth).sum(dim=(1, 2)).float()
    sizes = (pseudo.sum(dim=(1, 2)) + truth.sum(dim=(1, 2))).float()
    return float(torch.where(sizes > 0, 2 * overlap / sizes.clamp(min=1), torch.ones_like(sizes)).mean())


def run_shapegan_bench(options: ShapeGanBenchOptions, progress: Progress = SILENT) -> ShapeGanBenchResult:
    """Train every row, score it on the test split; returns the Markdown table.

    With several ``seeds`` the whole bench runs once per seed, in ``out/seed-N``, and
    ``out/spread.csv`` and the table add each row's mean, lowest, highest and spread over them.
    """
    check_options(options)
    tests = [case for case in list_cases(options.data_dir, options.test_split, require_scribbles=False)
             if case.label_path]
    if not tests:
        raise WeakSegInputError(f"{options.data_dir}: split {options.test_split!r} has no case with a mask to score")
    seeds = options.seeds or (options.seed,)
    if len(seeds) == 1:
        summary = _bench_one_seed(replace(options, seed=seeds[0]), Path(options.out), tests, progress)
        return ShapeGanBenchResult(_table(summary, len(tests), options), summary)
    tables, summaries = [], []
    for index, seed in enumerate(seeds):
        part = progress.part(index / len(seeds), (index + 1) / len(seeds))
        summary = _bench_one_seed(replace(options, seed=seed), Path(options.out) / f"seed-{seed}", tests, part)
        tables.append(f"seed {seed}: {_table(summary, len(tests), options)}")
        summaries.extend({"seed": seed, **entry} for entry in summary)
    spread = seed_spread(summaries, "row", list(options.rows), ("dice", "pseudo_label_dice", "hc_error_mm"))
    write_csv(Path(options.out) / "spread.csv", spread)
    tables.append(f"seeds {','.join(map(str, seeds))}:\n"
                  + spread_table(spread, "row", {"dice": "Dice", "pseudo_label_dice": "pseudo-label Dice",
                                                 "hc_error_mm": "HC abs. error (mm)"}))
    return ShapeGanBenchResult("\n\n".join(tables), summaries)


def _bench_one_seed(options: ShapeGanBenchOptions, out: Path, tests: list, progress: Progress) -> list[dict]:
    """Every row at ``options.seed``, scored on ``tests``; the CSVs and overlays go to ``out``."""
    from weakseg.methods.shape_gan_data import binary_mask
    from weakseg.methods.shape_gan_model import predict_image

    out.mkdir(parents=True, exist_ok=True)
    options = replace(options, out=str(out))
    reference = _reference_table(options.data_dir)
    rows, summary = [], []
    for index, row in enumerate(options.rows):
        part = progress.part(index / len(options.rows), (index + 1) / len(options.rows))
        started = time.perf_counter()
        model, gan_steps, model_path = _train_row(row, options, options.device, part.part(0, 0.9))
        training_seconds = time.perf_counter() - started
        pseudo_dice = pseudo_label_dice(model_path, options.data_dir) if model_path else float("nan")
        scores = []
        for number, case in enumerate(tests):
            image = read_image(case.image_path)
            truth = binary_mask(case.label_path, image.reference).astype(np.uint8)
            prediction, _ = predict_image(model, image)
            pixel = reference[case.name]["pixel"]
            score = _score(prediction, truth, pixel)
            score["hc_error_mm"] = abs(score.pop("hc_mm") - reference[case.name]["hc"])
            rows.append({"row": row, "case": case.name, **{key: f"{value:.4f}" for key, value in score.items()}})
            scores.append(score)
            if number < options.overlays:
                write_overlay(out, case.name, row, image.array, truth, prediction)
        summary.append({"row": row, "gan_steps": gan_steps, "pseudo_label_dice": pseudo_dice,
                        "dice": float(np.mean([item["dice"] for item in scores])),
                        "hd95_mm": _mean_defined([item["hd95_mm"] for item in scores]),
                        "empty": sum(item["hd95_mm"] != item["hd95_mm"] for item in scores),
                        "hc_error_mm": float(np.mean([item["hc_error_mm"] for item in scores])),
                        "training_s": training_seconds})
        part.report(1.0, f"{row}: Dice {summary[-1]['dice']:.3f}")
        write_csv(out / "cases.csv", rows)
        write_csv(out / "summary.csv", [{key: (f"{value:.4f}" if isinstance(value, float) else value)
                                         for key, value in entry.items()} for entry in summary])
    return summary


def _mean_defined(values: list[float]) -> float:
    """Mean of the values that are not NaN (HD95 of an empty prediction is undefined); NaN when none is."""
    defined = [value for value in values if value == value]
    return float(np.mean(defined)) if defined else float("nan")


def _score(prediction: np.ndarray, truth: np.ndarray, pixel: float) -> dict[str, float]:
    def image(labels: np.ndarray) -> sitk.Image:
        result = sitk.GetImageFromArray(labels[0].astype(np.uint8))
        result.SetSpacing((pixel, pixel))
        return result

    scores = evaluate_labelmaps(image(prediction), image(truth), ["background", "foreground"])["foreground"]
    return {"dice": scores.dice, "hd95_mm": scores.hd95_mm,
            "hc_mm": head_circumference_mm(prediction[0] > 0, (pixel, pixel))}


def _table(summary: list[dict], count: int, options: ShapeGanBenchOptions) -> str:
    header = ["row", "GAN steps", "pseudo-label Dice (training)", "Dice", "HD95 (mm)", "HC abs. error (mm)",
              "empty predictions", "training s"]
    lines = [f"{count} test images ({options.test_split})", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary:
        pseudo = entry["pseudo_label_dice"]
        pseudo = "–" if pseudo != pseudo else f"{pseudo:.3f}"
        values = [entry["row"], str(entry["gan_steps"]), pseudo, f"{entry['dice']:.3f}", f"{entry['hd95_mm']:.2f}",
                  f"{entry['hc_error_mm']:.2f}", str(entry["empty"]), f"{entry['training_s']:.0f}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)
