"""``weakseg bench semisup``: a few full masks + every image's diagnosis, against masks alone.

Protocol (fixed, from the case ids alone): the cases with a mask file, sorted by id; the
first two thirds (rounded) train, the last third is the test set (PH2: 105 images, the
70 first ids train, the 35 last test). Of the training cases, the masks of ``N`` are used,
chosen evenly through the sorted training ids (ids number ``round(i * T / N)``,
``i = 0..N-1``; PH2, N = 10: every 7th id from the first); the diagnoses of all training
cases are used; the other masks serve only for scoring. ``validation=True`` applies the same
rule inside the training cases (their first two thirds train, the last third scores), for
tuning without looking at the test set.

Rows, per seed (the same network widths and steps in every row):

* segmentation: ``masks-only`` (the segmenter on the N masks), ``self-training`` (that
  segmenter fine-tuned on masks + its own confidence-weighted pseudo masks, no classifier),
  ``collaborative`` (the method, from the same masks-only segmenter), ``all-masks``
  (the segmenter on every training mask: the reference); Dice and HD95 of the lesion on the
  test images at their own resolution;
* diagnosis: ``image-only`` (the classifier without lesion maps) and ``lesion-attentive``
  (the collaborative run's classifier), trained for the same number of steps; accuracy and
  balanced accuracy (mean recall over the diagnoses).

Writes ``cases.csv`` (every seed, row and image), ``summary.csv`` (mean and standard
deviation over seeds of each seed's mean) and overlays of the first seed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from weakseg.bench.reports import write_csv, write_overlay
from weakseg.cases import CohortCase, list_cases
from weakseg.contract import UNLABELLED
from weakseg.engine import pick_device
from weakseg.errors import WeakSegInputError
from weakseg.image_labels import read_diagnoses
from weakseg.io import labels_to_image, read_image
from weakseg.methods.collaborative import CollaborativeConfig, CollaborativeModel, diagnose_image, predict_image
from weakseg.methods.collaborative_data import DEFAULT_CLASSES, build_arrays, mask_codes
from weakseg.methods.collaborative_training import CollaborativeArrays, CollaborativeTrainer
from weakseg.metrics import evaluate_labelmaps
from weakseg.progress import SILENT, Progress

SEGMENTATION_ROWS = ("masks-only", "self-training", "collaborative", "all-masks")
DIAGNOSIS_ROWS = ("image-only", "lesion-attentive")


@dataclass
class SemisupBenchOptions:
    """What to run; ``settings`` overrides fields of :class:`CollaborativeConfig` in every row."""

    data_dir: str
    image_labels: str
    masks: int = 10
    seeds: tuple[int, ...] = (0,)
    validation: bool = False
    settings: dict = field(default_factory=dict)
    out: str = "bench-out"
    overlays: int = 3
    device: str = "auto"


def split_cases(cases: list[CohortCase], masks: int) -> tuple[list[CohortCase], list[CohortCase], set[str]]:
    """Training cases, test cases and the names of the N masked training cases (the module docstring's rule).

    Raises:
        WeakSegInputError: fewer training cases than masks, or no mask asked for.
    """
    ordered = sorted(cases, key=lambda case: case.name)
    train_count = int(round(2 * len(ordered) / 3))
    train, test = ordered[:train_count], ordered[train_count:]
    if not 1 <= masks <= len(train) or not test:
        raise WeakSegInputError(f"--masks {masks}: must lie in 1..{len(train)} (the training cases of "
                                f"{len(ordered)} cases with masks)")
    chosen = {train[int(round(index * len(train) / masks))].name for index in range(masks)}
    return train, test, chosen


def _only_masks_of(arrays: CollaborativeArrays, keep: torch.Tensor) -> CollaborativeArrays:
    """The same slices with the masks of every slice outside ``keep`` hidden."""
    masks = torch.where(keep[:, None, None], arrays.masks, torch.full_like(arrays.masks, UNLABELLED))
    return dataclasses.replace(arrays, masks=masks, masked=keep.clone())


def _scores(model: CollaborativeModel, tests: list, class_names: list[str]) -> list[dict]:
    """Per test image: lesion Dice and HD95 of ``model``'s segmenter, and its labels."""
    rows = []
    for name, image, truth in tests:
        labels, _ = predict_image(model, image)
        scores = evaluate_labelmaps(labels_to_image(labels, image.reference), labels_to_image(truth, image.reference),
                                    class_names)
        foreground = [scores[item] for item in class_names[1:]]
        rows.append({"case": name, "dice": float(np.mean([item.dice for item in foreground])),
                     "hd95": float(np.nanmean([item.hd95_mm for item in foreground])), "labels": labels})
    return rows


def _diagnosis_scores(model: CollaborativeModel, tests: list, truth: dict[str, str]) -> tuple[float, float, list]:
    """Accuracy, balanced accuracy (mean recall over the true diagnoses present) and the predictions."""
    predicted = [(name, diagnose_image(model, image)[0]) for name, image, _ in tests]
    correct = [truth[name] == guess for name, guess in predicted]
    recalls = [np.mean([ok for (name, _), ok in zip(predicted, correct) if truth[name] == diagnosis])
               for diagnosis in sorted({truth[name] for name, _ in predicted})]
    return float(np.mean(correct)), float(np.mean(recalls)), predicted


def _model(trainer: CollaborativeTrainer, config: CollaborativeConfig, diagnoses: list[str], device) -> CollaborativeModel:
    trainer.segmenter.eval()
    if trainer.classifier is not None:
        trainer.classifier.eval()
    return CollaborativeModel(trainer.segmenter, trainer.classifier, list(DEFAULT_CLASSES), diagnoses, config, device)


def run_semisup_bench(options: SemisupBenchOptions, progress: Progress = SILENT) -> str:
    """Run every row for every seed; write the CSVs and overlays; return the Markdown table."""
    device = pick_device(options.device)
    diagnoses = read_diagnoses(options.image_labels)
    cases = [case for case in list_cases(options.data_dir, require_scribbles=False)
             if case.label_path is not None and case.name in diagnoses.per_image]
    train, test, masked = split_cases(cases, options.masks)
    if options.validation:
        train, test, masked = split_cases(train, options.masks)
    base = CollaborativeConfig(**options.settings)
    base.check()
    everything = build_arrays(train, diagnoses, {case.name for case in train}, DEFAULT_CLASSES, base.image_size,
                              progress.part(0.0, 0.03))
    few = _only_masks_of(everything, torch.tensor([train[int(v)].name in masked for v in everything.volume]))
    tests = []
    for case in test:
        image = read_image(case.image_path)
        tests.append((case.name, image, mask_codes(case.label_path, image.reference, DEFAULT_CLASSES)))
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    case_rows, seed_rows = [], []
    for number, seed in enumerate(options.seeds):
        part = progress.part(0.03 + 0.97 * number / len(options.seeds), 0.03 + 0.97 * (number + 1) / len(options.seeds))
        results = _one_seed(few, everything, dataclasses.replace(base, seed=seed), diagnoses.names, tests,
                            diagnoses.per_image, device, part)
        for row, (seconds, segmentation, diagnosis) in results.items():
            if segmentation is not None:
                for item in segmentation:
                    case_rows.append({"seed": seed, "row": row, "case": item["case"], "dice": item["dice"],
                                      "hd95_mm": item["hd95"], "diagnosis": "", "truth": diagnoses.per_image[item["case"]]})
                    if number == 0 and len([r for r in case_rows if r["row"] == row and r["seed"] == seed]) <= options.overlays:
                        image = next(entry for entry in tests if entry[0] == item["case"])
                        write_overlay(out, item["case"], row, image[1].array, image[2], item["labels"])
                seed_rows.append({"seed": seed, "row": row, "dice": np.mean([item["dice"] for item in segmentation]),
                                  "hd95_mm": np.nanmean([item["hd95"] for item in segmentation]),
                                  "accuracy": np.nan, "balanced_accuracy": np.nan, "seconds": seconds})
            if diagnosis is not None:
                accuracy, balanced, predicted = diagnosis
                for name, guess in predicted:
                    case_rows.append({"seed": seed, "row": row, "case": name, "dice": np.nan, "hd95_mm": np.nan,
                                      "diagnosis": guess, "truth": diagnoses.per_image[name]})
                seed_rows.append({"seed": seed, "row": row, "dice": np.nan, "hd95_mm": np.nan, "accuracy": accuracy,
                                  "balanced_accuracy": balanced, "seconds": seconds})
    write_csv(out / "cases.csv", case_rows)
    summary = summarise(seed_rows)
    write_csv(out / "summary.csv", summary)
    return semisup_table(summary, len(train), len(masked), len(test), options)


def _one_seed(few: CollaborativeArrays, everything: CollaborativeArrays, config: CollaborativeConfig,
              diagnosis_names: list[str], tests: list, truth: dict[str, str], device, progress: Progress) -> dict:
    """Every row of one seed: ``{row: (seconds, segmentation scores or None, diagnosis scores or None)}``.

    The self-training and collaborative rows start from the masks-only segmenter (the first stage
    of both); their seconds include its training.
    """
    results = {}
    begin = time.perf_counter()
    base = CollaborativeTrainer(few, dataclasses.replace(config, classifier_steps=0, rounds=0), 2, 0, device)
    base.train_segmenter(progress.part(0.0, 0.2))
    start_state = {key: value.clone() for key, value in base.segmenter.state_dict().items()}
    results["masks-only"] = (time.perf_counter() - begin, _scores(_model(base, config, diagnosis_names, device), tests,
                                                                   DEFAULT_CLASSES), None)
    _announce(progress, 0.2, "masks-only", results)
    variants = {
        "self-training": dataclasses.replace(config, classifier_steps=0, adversarial_weight=0.0, refinement_weight=0.0),
        "collaborative": config,
    }
    for index, (row, settings) in enumerate(variants.items()):
        begin = time.perf_counter()
        trainer = CollaborativeTrainer(few, settings, 2, len(diagnosis_names), device)
        trainer.segmenter.load_state_dict(start_state)
        stages = trainer.stages()
        for number, (_, stage) in enumerate(stages):
            start = 0.2 + 0.25 * index
            stage(progress.part(start + 0.25 * number / len(stages), start + 0.25 * (number + 1) / len(stages)))
        model = _model(trainer, settings, diagnosis_names, device)
        results[row] = (results["masks-only"][0] + time.perf_counter() - begin, _scores(model, tests, DEFAULT_CLASSES), None)
        _announce(progress, 0.45 + 0.25 * index, row, results)
        if trainer.classifier is not None:
            results["lesion-attentive"] = (results[row][0], None, _diagnosis_scores(model, tests, truth))
            _announce(progress, 0.45 + 0.25 * index, "lesion-attentive", results)
    begin = time.perf_counter()
    image_only = dataclasses.replace(config, image_only_classifier=True, rounds=0)
    trainer = CollaborativeTrainer(few, image_only, 2, len(diagnosis_names), device)
    trainer.segmenter.load_state_dict(start_state)
    trainer.train_classifier(config.classifier_steps + config.rounds * config.classifier_round_steps,
                             progress.part(0.7, 0.8))
    results["image-only"] = (time.perf_counter() - begin, None,
                             _diagnosis_scores(_model(trainer, image_only, diagnosis_names, device), tests, truth))
    _announce(progress, 0.8, "image-only", results)
    begin = time.perf_counter()
    full = CollaborativeTrainer(everything, dataclasses.replace(config, classifier_steps=0, rounds=0), 2, 0, device)
    full.train_segmenter(progress.part(0.8, 1.0))
    results["all-masks"] = (time.perf_counter() - begin, _scores(_model(full, config, diagnosis_names, device), tests,
                                                                  DEFAULT_CLASSES), None)
    _announce(progress, 1.0, "all-masks", results)
    return {row: results[row] for row in SEGMENTATION_ROWS + DIAGNOSIS_ROWS if row in results}


def _announce(progress: Progress, fraction: float, row: str, results: dict) -> None:
    """Report a finished row's score through the progress messages (a long run shows its rows as they come)."""
    _, segmentation, diagnosis = results[row]
    if segmentation is not None:
        text = f"mean Dice {np.mean([item['dice'] for item in segmentation]):.3f}"
    else:
        text = f"accuracy {diagnosis[0]:.3f}, balanced accuracy {diagnosis[1]:.3f}"
    progress.report(fraction, f"{row} done: {text}")


def summarise(seed_rows: list[dict]) -> list[dict]:
    """Per row: mean and standard deviation over seeds of each seed's mean score, and mean seconds."""
    summary = []
    for row in SEGMENTATION_ROWS + DIAGNOSIS_ROWS:
        entries = [entry for entry in seed_rows if entry["row"] == row]
        if not entries:
            continue
        item = {"row": row, "seeds": len(entries)}
        for key in ("dice", "hd95_mm", "accuracy", "balanced_accuracy"):
            values = np.array([entry[key] for entry in entries], dtype=float)
            item[key] = float(np.mean(values))
            item[f"{key}_sd"] = float(np.std(values))
        item["seconds"] = float(np.mean([entry["seconds"] for entry in entries]))
        summary.append(item)
    return summary


def semisup_table(summary: list[dict], train_count: int, mask_count: int, test_count: int,
                  options: SemisupBenchOptions) -> str:
    """Markdown: segmentation rows (Dice, HD95), then diagnosis rows (accuracy, balanced accuracy); mean ± sd over seeds."""
    def shown(entry: dict, key: str, digits: int) -> str:
        return "" if np.isnan(entry[key]) else f"{entry[key]:.{digits}f} ± {entry[key + '_sd']:.{digits}f}"

    part = "validation part of the training cases" if options.validation else "test cases"
    lines = [f"{train_count} training cases ({mask_count} with masks, all with a diagnosis), {test_count} {part}, "
             f"seeds {','.join(str(seed) for seed in options.seeds)}",
             "| row | Dice | HD95 (mm) | accuracy | balanced accuracy | s/seed |", "|---|---|---|---|---|---|"]
    for entry in summary:
        lines.append(f"| {entry['row']} | {shown(entry, 'dice', 3)} | {shown(entry, 'hd95_mm', 1)} | "
                     f"{shown(entry, 'accuracy', 3)} | {shown(entry, 'balanced_accuracy', 3)} | {entry['seconds']:.0f} |")
    return "\n".join(lines)
