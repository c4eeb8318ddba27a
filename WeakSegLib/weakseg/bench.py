"""``weakseg bench scribbles``: every method on every test case, one table.

All methods see the same images and the same scribbles in one run, so their rows are
directly comparable. Per case and method the benchmark records per-class Dice and the
wall-clock seconds of the method alone (reading files and scoring excluded). It prints a
table of per-class mean Dice and mean seconds per volume, and writes ``cases.csv``,
``summary.csv`` and overlay PNGs (image | truth | prediction) for a few cases.

Methods:
    growcut           Slicer's Grow from seeds on the scribbles (the baseline)
    weakseg           interactive mode: learns from each volume's scribbles alone
    cohort            cohort model, **no** scribbles of the test volume
    cohort+scribbles  cohort model adapted to the test volume's scribbles
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from weakseg.commands import class_list
from weakseg.errors import WeakSegInputError
from weakseg.io import read_image, read_labelmap, write_atomically
from weakseg.metrics import dice_per_class
from weakseg.overlay import overlay_picture, write_png
from weakseg.progress import Progress
from weakseg.weak_labels import load_scribbles

BENCH_METHODS = ("growcut", "weakseg", "cohort", "cohort+scribbles")


def run_scribble_bench(arguments: argparse.Namespace, progress: Progress) -> list[dict]:
    """Run the benchmark described by the parsed ``weakseg bench scribbles`` arguments."""
    from weakseg.engine import pick_device
    from weakseg.methods.cohort import list_cases

    methods = [name.strip() for name in (arguments.methods or "growcut,weakseg").split(",") if name.strip()]
    unknown = [name for name in methods if name not in BENCH_METHODS]
    if unknown:
        raise WeakSegInputError(f"--methods: unknown {unknown}; choose from {', '.join(BENCH_METHODS)}")
    out = Path(arguments.out)
    cases = [case for case in list_cases(arguments.data_dir, arguments.test_split) if case.label_path]
    if not cases:
        raise WeakSegInputError(f"{arguments.data_dir}: no test case has a <case>_label file to score against")
    device = pick_device(arguments.device)
    model = None
    if any(name.startswith("cohort") for name in methods):
        training_share = 0.0 if arguments.model else 0.5
        model = _cohort_model(arguments, out, device, progress.part(0.0, training_share))
        progress = progress.part(training_share, 1.0)
    class_names = class_list(arguments.classes) or (list(model.class_names) if model else None)
    rows = []
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        scribbles = load_scribbles(case.scribble_path, image, class_names)
        truth = read_labelmap(case.label_path, image.reference)
        class_names = scribbles.class_names
        for method_index, method in enumerate(methods):
            step = (index * len(methods) + method_index) / (len(cases) * len(methods))
            progress.report(step, f"{case.name}: {method}")
            started = time.perf_counter()
            labels = _run_method(method, image, scribbles, model, arguments)
            seconds = time.perf_counter() - started
            dice = dice_per_class(labels, truth, len(class_names))
            rows.append({"case": case.name, "method": method, "seconds": seconds,
                         **{name: float(dice[code]) for code, name in enumerate(class_names) if code}})
            if index < arguments.overlays:
                picture = overlay_picture(image.array, truth, labels, scribbles.labels)
                write_png(out / f"overlay_{case.name}_{method.replace('+', '_')}.png", picture)
    progress.report(1.0, "done")
    summary = summarise(rows, methods, class_names[1:])
    _write_csv(out / "cases.csv", rows)
    _write_csv(out / "summary.csv", summary)
    print(format_summary(summary, class_names[1:], len(cases)))
    return summary


def _cohort_model(arguments: argparse.Namespace, out: Path, device, progress: Progress):
    from weakseg.methods.cohort import CohortConfig, list_cases, load_cohort_model, train_cohort

    if arguments.model:
        return load_cohort_model(arguments.model, device)
    if not arguments.train_split:
        raise WeakSegInputError("cohort methods need --train-split (cases to train on) or --model")
    config = CohortConfig(seed=arguments.seed)
    if arguments.cohort_steps:
        config.steps = arguments.cohort_steps
    model_path = out / "cohort.pt"
    train_cases = list_cases(arguments.data_dir, arguments.train_split)
    train_cohort(train_cases, model_path, config, class_list(arguments.classes), progress,
                 resume=model_path.exists(), device=device)
    return load_cohort_model(model_path, device)


def _run_method(method: str, image, scribbles, model, arguments: argparse.Namespace) -> np.ndarray:
    from weakseg.methods import segment_image
    from weakseg.methods.cohort import predict_volume

    if method == "cohort":
        labels, _ = predict_volume(model, image)
        return labels
    return segment_image(
        image,
        scribbles,
        method="growcut" if method == "growcut" else "weakseg",
        model=model if method == "cohort+scribbles" else None,
        device_name=arguments.device,
        seed=arguments.seed,
    )


def summarise(rows: list[dict], methods: list[str], foreground: list[str]) -> list[dict]:
    """Per method: mean Dice per class, mean over classes, mean seconds per volume."""
    summary = []
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        entry = {"method": method, "cases": len(mine)}
        for name in foreground:
            entry[name] = float(np.mean([row[name] for row in mine]))
        entry["mean"] = float(np.mean([entry[name] for name in foreground]))
        entry["seconds"] = float(np.mean([row["seconds"] for row in mine]))
        summary.append(entry)
    return summary


def format_summary(summary: list[dict], foreground: list[str], case_count: int) -> str:
    """A Markdown table: one row per method, per-class mean Dice, mean, seconds/volume."""
    header = ["method"] + [f"Dice {name}" for name in foreground] + ["mean Dice", "s/volume"]
    lines = [
        f"{case_count} test volumes",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for entry in summary:
        values = [f"{entry[name]:.3f}" for name in foreground] + [f"{entry['mean']:.3f}", f"{entry['seconds']:.1f}"]
        lines.append("| " + " | ".join([entry["method"]] + values) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict]) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)
