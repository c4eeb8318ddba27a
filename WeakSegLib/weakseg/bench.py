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
    pce, maag         the other cohort-level methods (attention U-Net with partial CE only,
                      and with the adversarial shape prior of unpaired masks), also with
                      ``+scribbles``; see :data:`weakseg.methods.cohort.METHOD_SETTINGS`

A cohort-level method uses the model given with ``--model NAME=PATH`` (any name: several
models of one method, trained differently, can be compared in one run) or, without one,
trains it on ``--train-split`` first (``maag`` with the masks of ``--unpaired-split`` /
``--unpaired-masks``), writing ``NAME.pt`` into the output folder; an interrupted
benchmark resumes those trainings.
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

COHORT_LEVEL_METHODS = ("cohort", "pce", "maag")
ADAPTED = "+scribbles"
BENCH_METHODS = ("growcut", "weakseg") + COHORT_LEVEL_METHODS + tuple(name + ADAPTED for name in COHORT_LEVEL_METHODS)


def run_scribble_bench(arguments: argparse.Namespace, progress: Progress) -> list[dict]:
    """Run the benchmark described by the parsed ``weakseg bench scribbles`` arguments."""
    from weakseg.engine import pick_device
    from weakseg.methods.cohort import list_cases

    methods = [name.strip() for name in (arguments.methods or "growcut,weakseg").split(",") if name.strip()]
    given = model_paths(arguments.model)
    known = BENCH_METHODS + tuple(given) + tuple(name + ADAPTED for name in given)
    unknown = [name for name in methods if name not in known]
    if unknown:
        raise WeakSegInputError(f"--methods: unknown {unknown}; choose from {', '.join(known)}")
    out = Path(arguments.out)
    cases = [case for case in list_cases(arguments.data_dir, arguments.test_split) if case.label_path]
    if not cases:
        raise WeakSegInputError(f"{arguments.data_dir}: no test case has a <case>_label file to score against")
    device = pick_device(arguments.device)
    needed = list(dict.fromkeys(name.removesuffix(ADAPTED) for name in methods if name.removesuffix(ADAPTED)
                                in COHORT_LEVEL_METHODS + tuple(given)))
    unused = sorted(set(given) - set(needed))
    if unused:
        raise WeakSegInputError(f"--model given for {unused}, which --methods does not run")
    to_train = [name for name in needed if name not in given]
    training_share = 0.5 if to_train else 0.0
    models = {}
    for index, name in enumerate(needed):
        share = progress.part(training_share * index / len(needed), training_share * (index + 1) / len(needed))
        models[name] = _cohort_level_model(name, given.get(name), arguments, out, device, share)
    progress = progress.part(training_share, 1.0)
    first_model = next(iter(models.values()), None)
    class_names = class_list(arguments.classes) or (list(first_model.class_names) if first_model else None)
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
            labels = _run_method(method, image, scribbles, models, arguments)
            seconds = time.perf_counter() - started
            dice = dice_per_class(labels, truth, len(class_names))
            rows.append({"case": case.name, "method": method, "seconds": seconds,
                         **{name: float(dice[code]) for code, name in enumerate(class_names) if code}})
            if index < arguments.overlays:
                picture = overlay_picture(image.array, truth, labels, scribbles.labels)
                write_png(out / f"overlay_{case.name}_{method.replace('+', '_')}.png", picture)
    progress.report(1.0, "done")
    summary = summarise(rows, methods, class_names[1:])
    write_csv(out / "cases.csv", rows)
    write_csv(out / "summary.csv", summary)
    print(format_summary(summary, class_names[1:], len(cases)))
    return summary


def model_paths(specs: list[str]) -> dict[str, str]:
    """``["a.pt", "maag=b.pt"]`` -> ``{"cohort": "a.pt", "maag": "b.pt"}`` (``--model`` values)."""
    paths: dict[str, str] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        name, path = (name.strip(), path.strip()) if separator else ("cohort", spec)
        if not name or name in ("growcut", "weakseg") or ADAPTED in name or "," in name:
            raise WeakSegInputError(f"--model {spec!r}: {name!r} cannot name a model")
        if name in paths:
            raise WeakSegInputError(f"--model: two models given for {name!r}")
        paths[name] = path
    return paths


def _cohort_level_model(name: str, path: str | None, arguments: argparse.Namespace, out: Path, device,
                        progress: Progress):
    """The model of cohort-level method ``name``: loaded from ``path``, or trained now."""
    from weakseg.commands import unpaired_mask_files
    from weakseg.methods.cohort import config_for_method, list_cases, load_cohort_model, train_cohort

    if path:
        return load_cohort_model(path, device)
    if not arguments.train_split:
        raise WeakSegInputError(f"method {name} needs --train-split (cases to train on) or --model {name}=PATH")
    config = config_for_method(name, seed=arguments.seed)
    if arguments.cohort_steps:
        config.steps = arguments.cohort_steps
    model_path = out / f"{name}.pt"
    existing = load_cohort_model(model_path, device) if model_path.exists() else None
    if existing is not None and existing.step >= config.steps:
        return existing
    train_cases = list_cases(arguments.data_dir, arguments.train_split)
    train_cohort(train_cases, model_path, config, class_list(arguments.classes), progress,
                 resume=model_path.exists(), device=device,
                 unpaired_masks=unpaired_mask_files(arguments) if config.adversarial_weight else None)
    return load_cohort_model(model_path, device)


def _run_method(method: str, image, scribbles, models: dict, arguments: argparse.Namespace) -> np.ndarray:
    from weakseg.methods import segment_image
    from weakseg.methods.cohort import predict_volume

    if method in models:
        labels, _ = predict_volume(models[method], image)
        return labels
    return segment_image(
        image,
        scribbles,
        method="growcut" if method == "growcut" else "weakseg",
        model=models.get(method.removesuffix(ADAPTED)),
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


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with the same keys) as a CSV file, atomically."""
    def write(temporary: str) -> None:
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)
