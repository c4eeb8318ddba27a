"""``weakseg bench transfer``: a fully segmented source cohort, a weakly labelled target, one table.

The target's image-level labels are derived from its training cases' scribbles: a slice
shows class ``c`` when it carries a scribble of class ``c`` (a stand-in for a reader
ticking the structures of each slice; the scribbles' pixels are not used for them). They
are written as an image-label CSV (:func:`weakseg.image_labels.write_image_labels`) into
the output folder, unless ``image_labels`` names one.

Rows (each trained on the target's ``train_split`` unless ``models`` gives a model file):

* ``source-only``: the source masks alone (method ``transfer`` with every part off);
* ``imagelabel``: the target's image labels alone (method ``imagelabel``);
* ``transfer``: source masks + target image labels, the three parts on;
* ``transfer-no-pseudo``, ``transfer-no-centroid``, ``transfer-no-adversarial``: one part off each;
* ``cohort``: the target's scribbles alone (method ``cohort``);
* ``source+scribbles``: source masks + target scribbles, no transfer part;
* ``transfer+scribbles``: source masks + target image labels and scribbles, the three parts on.

Every row is scored on the target's ``test_split`` cases with a ``<case>_label`` file:
per-class Dice and HD95 (mm, on the image's own oblique grid) and the seconds the
prediction took; ``cases.csv``, ``summary.csv`` and overlay PNGs go to the output folder.
Each row is scored with its model's post-processing and, as ``NAME (raw)``, without it
(``post_processing``; see :mod:`weakseg.bench.scribbles`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weakseg.bench.reports import transfer_table, write_csv, write_overlay
from weakseg.bench.scribbles import RAW
from weakseg.cases import list_cases
from weakseg.errors import WeakSegInputError
from weakseg.io import labels_to_image, read_image, read_labelmap
from weakseg.methods.registry import method_named
from weakseg.methods.spec import TRAINED, TrainingRequest
from weakseg.metrics import evaluate_labelmaps
from weakseg.progress import SILENT, Progress

PARTS_OFF = {"pseudo_label_weight": 0.0, "centroid_weight": 0.0, "adversarial_weight": 0.0}
# Row name -> (method, settings changes, uses the target's scribbles).
ROWS = {
    "source-only": ("transfer", PARTS_OFF, False),
    "imagelabel": ("imagelabel", {}, False),
    "transfer": ("transfer", {}, False),
    "transfer-no-pseudo": ("transfer", {"pseudo_label_weight": 0.0}, False),
    "transfer-no-centroid": ("transfer", {"centroid_weight": 0.0}, False),
    "transfer-no-adversarial": ("transfer", {"adversarial_weight": 0.0}, False),
    "cohort": ("cohort", {}, True),
    "source+scribbles": ("transfer", PARTS_OFF, True),
    "transfer+scribbles": ("transfer", {}, True),
}
DEFAULT_ROWS = tuple(ROWS)


@dataclass
class TransferBenchOptions:
    """What to benchmark; ``models`` maps row names to model files trained beforehand."""

    source_dir: str
    target_dir: str
    class_names: list[str]
    out: str = "bench-out"
    methods: tuple[str, ...] = DEFAULT_ROWS
    source_split: str | None = None
    train_split: str | None = None
    test_split: str | None = None
    image_labels: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    steps: int | None = None
    overlays: int = 3
    device: str = "auto"
    seed: int = 0
    post_processing: tuple[bool, ...] = (True, False)


@dataclass
class TransferBenchResult:
    """Per-case rows, per-row summary, and the table printed for people."""

    rows: list[dict]
    summary: list[dict]
    table: str


def check_options(options: TransferBenchOptions) -> None:
    """Refuse unknown rows, unused models and missing splits before any work."""
    known = tuple(ROWS) + tuple(options.models)
    unknown = [name for name in options.methods if name not in known]
    if unknown:
        raise WeakSegInputError(f"--methods: unknown {unknown}; choose from {', '.join(known)}")
    unused = sorted(set(options.models) - set(options.methods))
    if unused:
        raise WeakSegInputError(f"--model given for {unused}, which --methods does not run")
    if any(name not in options.models for name in options.methods) and not options.train_split:
        raise WeakSegInputError("rows trained by the benchmark need --train-split (the target's training cases)")
    if len(options.class_names or []) < 2:
        raise WeakSegInputError("--classes: give the class names, background first (e.g. background,RV,Myo,LV)")


def scribble_image_labels(target_dir: str, split: str | None, class_names: list[str], path: Path) -> Path:
    """Write the image-label CSV of the target's training cases: a slice shows the classes it has scribbles of."""
    from weakseg.image_labels import slice_labels_from_mask, write_image_labels
    from weakseg.weak_labels import load_scribbles

    labels = {}
    for case in list_cases(target_dir, split):
        image = read_image(case.image_path)
        codes = load_scribbles(case.scribble_path, image, class_names).labels
        labels[case.name] = slice_labels_from_mask(codes, class_names)
    write_image_labels(path, labels)
    return path


def run_transfer_bench(options: TransferBenchOptions, progress: Progress = SILENT) -> TransferBenchResult:
    """Train (or load) every row of ``options.methods`` and score it on the target's test cases."""
    from weakseg.apply import load_model, predict_image
    from weakseg.engine import pick_device

    check_options(options)
    out = Path(options.out)
    cases = [case for case in list_cases(options.target_dir, options.test_split, require_scribbles=False)
             if case.label_path]
    if not cases:
        raise WeakSegInputError(f"{options.target_dir}: no test case has a <case>_label file to score against")
    device = pick_device(options.device)
    image_labels = options.image_labels
    if image_labels is None and any(name not in options.models for name in options.methods):
        image_labels = str(scribble_image_labels(options.target_dir, options.train_split, options.class_names,
                                                 out / "target_image_labels.csv"))
    models = {}
    for index, name in enumerate(options.methods):
        share = progress.part(0.8 * index / len(options.methods), 0.8 * (index + 1) / len(options.methods))
        path = options.models.get(name) or _train_row(name, options, image_labels, out, device, share)
        models[name] = load_model(path, device)
    progress = progress.part(0.8, 1.0)
    class_names = options.class_names
    rows = []
    runs = [(name, mode) for name in options.methods for mode in options.post_processing]
    for index, case in enumerate(cases):
        image = read_image(case.image_path)
        truth = read_labelmap(case.label_path, image.reference)
        for method_index, (method, post_processing) in enumerate(runs):
            name = method if post_processing else method + RAW
            progress.report((index * len(runs) + method_index) / (len(cases) * len(runs)), f"{case.name}: {name}")
            started = time.perf_counter()
            labels, _ = predict_image(models[method], image, post_processing=post_processing)
            seconds = time.perf_counter() - started
            scores = evaluate_labelmaps(labels_to_image(labels, image.reference),
                                        labels_to_image(truth, image.reference), class_names)
            row = {"case": case.name, "method": name, "seconds": seconds}
            for class_name in class_names[1:]:
                row[f"dice_{class_name}"] = scores[class_name].dice
                row[f"hd95_{class_name}"] = scores[class_name].hd95_mm
            rows.append(row)
            if index < options.overlays:
                write_overlay(out, case.name, name.replace(RAW, "-raw"), image.array, truth, labels)
    progress.report(1.0, "done")
    summary = summarise(rows, [name if mode else name + RAW for name, mode in runs], class_names[1:])
    write_csv(out / "cases.csv", rows)
    write_csv(out / "summary.csv", summary)
    return TransferBenchResult(rows, summary, transfer_table(summary, class_names[1:], len(cases)))


def _train_row(name: str, options: TransferBenchOptions, image_labels: str, out: Path, device, progress: Progress) -> str:
    """Train row ``name`` on the target's training cases into ``out/NAME.pt`` (resumed when it is there)."""
    method, changes, scribbles = ROWS[name]
    spec = method_named(method, TRAINED)
    if method == "transfer":
        changes = {**changes, "ignore_scribbles": not scribbles}
    if options.steps:
        changes = {**changes, **({"classifier_steps": options.steps, "round_steps": options.steps}
                                 if method == "imagelabel" else {"steps": options.steps})}
    settings = spec.make_settings(seed=options.seed, **changes)
    model_path = out / f"{name.replace('+', '_')}.pt"
    if model_path.exists():
        from weakseg.engine import load_checkpoint

        if method == "imagelabel" or int(load_checkpoint(model_path).get("step", 0)) >= settings.steps:
            return str(model_path)
    spec.function("train")(TrainingRequest(
        data_dir=options.target_dir, out_path=str(model_path), settings=settings, class_names=options.class_names,
        device=device, progress=progress, split=options.train_split, image_labels=image_labels,
        resume=model_path.exists(), source_dir=options.source_dir, source_split=options.source_split,
    ))
    return str(model_path)


def summarise(rows: list[dict], methods: list[str], foreground: list[str]) -> list[dict]:
    """Per row: mean Dice and HD95 per class (HD95 over the cases where both structures exist), means, s/volume."""
    summary = []
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        entry = {"method": method, "cases": len(mine)}
        for name in foreground:
            entry[f"dice_{name}"] = float(np.mean([row[f"dice_{name}"] for row in mine]))
            distances = [row[f"hd95_{name}"] for row in mine if np.isfinite(row[f"hd95_{name}"])]
            entry[f"hd95_{name}"] = float(np.mean(distances)) if distances else float("nan")
        entry["mean_dice"] = float(np.mean([entry[f"dice_{name}"] for name in foreground]))
        finite = [entry[f"hd95_{name}"] for name in foreground if np.isfinite(entry[f"hd95_{name}"])]
        entry["mean_hd95"] = float(np.mean(finite)) if finite else float("nan")
        entry["seconds"] = float(np.mean([row["seconds"] for row in mine]))
        summary.append(entry)
    return summary
