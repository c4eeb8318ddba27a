"""``weakseg bench scribbles``: every method that learns from scribbles on every test case, one table.

All methods see the same images and the same scribbles in one run, so their rows are
directly comparable. Per case and method the benchmark records per-class Dice and the
wall-clock seconds of the method alone (reading files and scoring excluded), and writes
``cases.csv``, ``summary.csv`` and overlay PNGs (image | truth | prediction) for a few cases.

Rows come from the method registry: every per-image method (``interactive``, which users
call ``weakseg``, and ``growcut``), every trained method that learns from scribbles
(``cohort``, ``pce``, ``maag``: **no** scribbles of the test volume), and ``NAME+scribbles``
for those that adapt to the test volume's scribbles. A trained method uses the model given
as ``models[NAME]`` (any name: several models of one method, trained differently, can be
compared in one run) or, without one, is trained on ``train_split`` first (``maag`` with
the unpaired masks given), writing ``NAME.pt`` into the output folder; an interrupted
benchmark resumes those trainings.

Every trained row is scored with the model's post-processing (flip averaging, largest
connected component; row ``NAME``) and without it (row ``NAME (raw)``), unless
``post_processing`` asks for one of the two: a filter that keeps one component per class
can zero a class whose largest component is a false one, and the raw row shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weakseg.bench.reports import scribble_table, write_csv, write_overlay
from weakseg.cases import list_cases
from weakseg.errors import WeakSegInputError
from weakseg.io import read_image, read_labelmap
from weakseg.methods.registry import METHODS, method_named
from weakseg.methods.spec import PER_IMAGE, SCRIBBLES, TRAINED, TrainingRequest
from weakseg.metrics import dice_per_class
from weakseg.profiling import STAGES, StageProfile
from weakseg.progress import SILENT, Progress
from weakseg.weak_labels import load_scribbles

ADAPTED = "+scribbles"
DEFAULT_METHODS = ("growcut", "weakseg")
RAW = " (raw)"
POST_PROCESSING_MODES = {"on": True, "off": False}


def post_processing_modes(text: str) -> tuple[bool, ...]:
    """``"on,off"`` -> ``(True, False)`` (``--post-processing``).

    Raises:
        WeakSegInputError: an empty list, a word other than on/off, or one given twice.
    """
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if not words or any(word not in POST_PROCESSING_MODES for word in words) or len(set(words)) != len(words):
        raise WeakSegInputError(f"--post-processing {text!r}: expected on, off or on,off")
    return tuple(POST_PROCESSING_MODES[word] for word in words)


def bench_method_names() -> tuple[str, ...]:
    """Every row name the registry offers (old spellings included): per-image, trained, adapted."""
    per_image = [name for spec in METHODS if spec.usage == PER_IMAGE for name in (spec.name,) + spec.aliases]
    trained = [spec.name for spec in METHODS if spec.usage == TRAINED and SCRIBBLES in spec.learns_from]
    adapted = [spec.name + ADAPTED for spec in METHODS if spec.usage == TRAINED and spec.adapt
               and SCRIBBLES in spec.learns_from]
    return tuple(per_image + trained + adapted)


@dataclass
class ScribbleBenchOptions:
    """What to benchmark. ``models`` maps row names to model files (see :func:`model_paths`)."""

    data_dir: str
    out: str = "bench-out"
    methods: tuple[str, ...] = DEFAULT_METHODS
    test_split: str | None = None
    train_split: str | None = None
    class_names: list[str] | None = None
    models: dict[str, str] = field(default_factory=dict)
    training_steps: int | None = None
    unpaired_masks: list | None = None
    overlays: int = 3
    device: str = "auto"
    seed: int = 0
    profile: bool = False
    post_processing: tuple[bool, ...] = (True, False)


@dataclass
class ScribbleBenchResult:
    """Per-case rows, per-method summary, and the table printed for people."""

    rows: list[dict]
    summary: list[dict]
    table: str
    stage_table: str = ""


def model_paths(specs: list[str]) -> dict[str, str]:
    """``["a.pt", "maag=b.pt"]`` -> ``{"cohort": "a.pt", "maag": "b.pt"}`` (``--model`` values).

    Raises:
        WeakSegInputError: a per-image method's name, an adapted name, or a name given twice.
    """
    per_image = {name for spec in METHODS if spec.usage == PER_IMAGE for name in (spec.name,) + spec.aliases}
    paths: dict[str, str] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        name, path = (name.strip(), path.strip()) if separator else ("cohort", spec)
        if not name or name in per_image or ADAPTED in name or "," in name:
            raise WeakSegInputError(f"--model {spec!r}: {name!r} cannot name a model")
        if name in paths:
            raise WeakSegInputError(f"--model: two models given for {name!r}")
        paths[name] = path
    return paths


def check_options(options: ScribbleBenchOptions) -> list[str]:
    """The trained rows the options need (before any work); raises on unknown rows or unused models."""
    known = bench_method_names() + tuple(options.models) + tuple(name + ADAPTED for name in options.models)
    unknown = [name for name in options.methods if name not in known]
    if unknown:
        raise WeakSegInputError(f"--methods: unknown {unknown}; choose from {', '.join(known)}")
    trained = set(bench_method_names()) - {name for spec in METHODS if spec.usage == PER_IMAGE
                                           for name in (spec.name,) + spec.aliases}
    needed = list(dict.fromkeys(name.removesuffix(ADAPTED) for name in options.methods
                                if name.removesuffix(ADAPTED) in trained | set(options.models)))
    unused = sorted(set(options.models) - set(needed))
    if unused:
        raise WeakSegInputError(f"--model given for {unused}, which --methods does not run")
    missing = [name for name in needed if name not in options.models and not options.train_split]
    if missing:
        raise WeakSegInputError(f"method {missing[0]} needs --train-split (cases to train on) or --model {missing[0]}=PATH")
    return needed


def run_scribble_bench(options: ScribbleBenchOptions, progress: Progress = SILENT) -> ScribbleBenchResult:
    """Run every method of ``options.methods`` on every test case that has a label file."""
    from weakseg.apply import load_model
    from weakseg.engine import pick_device

    needed = check_options(options)
    out = Path(options.out)
    cases = [case for case in list_cases(options.data_dir, options.test_split) if case.label_path]
    if not cases:
        raise WeakSegInputError(f"{options.data_dir}: no test case has a <case>_label file to score against")
    device = pick_device(options.device)
    to_train = [name for name in needed if name not in options.models]
    training_share = 0.5 if to_train else 0.0
    models = {}
    for index, name in enumerate(needed):
        share = progress.part(training_share * index / len(needed), training_share * (index + 1) / len(needed))
        if name in options.models:
            models[name] = load_model(options.models[name], device)
        else:
            models[name] = _trained_now(name, options, out, device, share)
    progress = progress.part(training_share, 1.0)
    first_model = next(iter(models.values()), None)
    class_names = options.class_names or (first_model.class_names if first_model else None)
    rows = []
    runs = _runs(options.methods, models, options.post_processing)
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        scribbles = load_scribbles(case.scribble_path, image, class_names)
        truth = read_labelmap(case.label_path, image.reference)
        class_names = scribbles.class_names
        for method_index, (method, post_processing) in enumerate(runs):
            step = (index * len(runs) + method_index) / (len(cases) * len(runs))
            row_name = method if post_processing else method + RAW
            progress.report(step, f"{case.name}: {row_name}")
            profile = StageProfile() if options.profile else None
            started = time.perf_counter()
            labels = _run_method(method, image, scribbles, models, options, Progress(profile=profile), post_processing)
            seconds = time.perf_counter() - started
            dice = dice_per_class(labels, truth, len(class_names))
            rows.append({"case": case.name, "method": row_name, "seconds": seconds,
                         **{name: float(dice[code]) for code, name in enumerate(class_names) if code},
                         **(stage_columns(profile) if profile is not None else {})})
            if index < options.overlays:
                write_overlay(out, case.name, row_name.replace(RAW, "-raw"), image.array, truth, labels,
                              scribbles.labels)
    progress.report(1.0, "done")
    summary = summarise(rows, [method if post else method + RAW for method, post in runs], class_names[1:])
    write_csv(out / "cases.csv", rows)
    write_csv(out / "summary.csv", summary)
    return ScribbleBenchResult(rows, summary, scribble_table(summary, class_names[1:], len(cases)),
                               stage_table(summary) if options.profile else "")


def stage_columns(profile: StageProfile) -> dict[str, float]:
    """One case's profile as row columns: ``<stage> s`` per stage, ``peak MiB`` (the highest process peak)."""
    columns = {f"{stage} s": profile.records[stage].seconds if stage in profile.records else 0.0 for stage in STAGES
               if stage not in ("reading", "writing")}
    peaks = [record.process_mib for record in profile.records.values() if record.process_mib is not None]
    columns["peak MiB"] = max(peaks) if peaks else float("nan")
    return columns


def stage_table(summary: list[dict]) -> str:
    """A Markdown table: per method, median seconds per stage and per volume, and the highest peak memory."""
    stages = [key for key in summary[0] if key.endswith(" s")]
    header = ["method"] + stages + ["median s/volume", "peak MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary:
        values = [f"{entry[key]:.2f}" for key in stages] + [f"{entry['median seconds']:.1f}", f"{entry['peak MiB']:.0f}"]
        lines.append("| " + " | ".join([entry["method"]] + values) + " |")
    lines.append("stage columns: median seconds over the volumes; peak MiB: the highest resident-set peak of a stage "
                 "(see weakseg.profiling); reading and writing files are not part of a method's time")
    return "\n".join(lines)


def _trained_now(name: str, options: ScribbleBenchOptions, out: Path, device, progress: Progress):
    """The model of trained method ``name``, trained on ``options.train_split`` (resumed from ``out/NAME.pt``)."""
    from weakseg.apply import load_model

    spec = method_named(name, TRAINED)
    settings = spec.make_settings(seed=options.seed)
    if options.training_steps:
        settings.steps = options.training_steps
    model_path = out / f"{name}.pt"
    existing = load_model(model_path, device) if model_path.exists() else None
    if existing is not None and existing.model.step >= settings.steps:
        return existing
    spec.function("train")(TrainingRequest(
        data_dir=options.data_dir, out_path=str(model_path), settings=settings, class_names=options.class_names,
        device=device, progress=progress, split=options.train_split, resume=model_path.exists(),
        unpaired_masks=options.unpaired_masks if spec.needs_unpaired_masks else None,
    ))
    return load_model(model_path, device)


def _runs(methods: tuple[str, ...], models: dict, post_processing: tuple[bool, ...]) -> list[tuple[str, bool]]:
    """``(row, post_processing)`` pairs: each trained row once per mode, the other rows once (as they are)."""
    runs = []
    for method in methods:
        runs.extend((method, mode) for mode in (post_processing if method in models else (True,)))
    return runs


def _run_method(method: str, image, scribbles, models: dict, options: ScribbleBenchOptions,
                progress: Progress = SILENT, post_processing: bool = True) -> np.ndarray:
    from weakseg.apply import predict_image, segment_image

    if method in models:
        labels, _ = predict_image(models[method], image, progress, post_processing=post_processing)
        return labels
    adapted = models.get(method.removesuffix(ADAPTED))
    return segment_image(image, scribbles, method="interactive" if adapted is not None else method, model=adapted,
                         device_name=options.device, seed=options.seed, progress=progress)


def summarise(rows: list[dict], methods: list[str], foreground: list[str]) -> list[dict]:
    """Per method: mean Dice per class, mean over classes, mean and median seconds per volume.

    Rows with stage columns (``--profile``) add the median seconds of each stage and the highest peak memory.
    """
    summary = []
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        entry = {"method": method, "cases": len(mine)}
        for name in foreground:
            entry[name] = float(np.mean([row[name] for row in mine]))
        entry["mean"] = float(np.mean([entry[name] for name in foreground]))
        entry["seconds"] = float(np.mean([row["seconds"] for row in mine]))
        entry["median seconds"] = float(np.median([row["seconds"] for row in mine]))
        for key in [key for key in mine[0] if key.endswith(" s")]:
            entry[key] = float(np.median([row[key] for row in mine]))
        if "peak MiB" in mine[0]:
            entry["peak MiB"] = float(np.max([row["peak MiB"] for row in mine]))
        summary.append(entry)
    return summary
