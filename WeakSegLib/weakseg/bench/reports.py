"""What the benchmarks write: Markdown tables, CSV files and overlay pictures, all atomically."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from weakseg.io import write_atomically
from weakseg.overlay import overlay_picture, write_png


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with the same keys) as a CSV file, atomically."""
    def write(temporary: str) -> None:
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)


def write_overlay(out: Path, case: str, method: str, image: np.ndarray, truth: np.ndarray | None,
                  prediction: np.ndarray, scribbles: np.ndarray | None = None,
                  more_images: tuple[np.ndarray, ...] = ()) -> None:
    """``overlay_<case>_<method>.png``: image | truth | prediction [| more images] (with the scribbles when given)."""
    picture = overlay_picture(image, truth, prediction, scribbles, more_images=more_images)
    write_png(out / f"overlay_{case}_{method.replace('+', '_')}.png", picture)


def scribble_table(summary: list[dict], foreground: list[str], case_count: int) -> str:
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


def imagelabel_table(summary: list[dict]) -> str:
    """A Markdown table of the image-label benchmark, one row per method."""
    header = ["method", "3D Dice", "Dice (lesion slices)", "JA", "DI", "AC", "SE", "SP", "slice acc.", "s/case"]
    lines = [
        f"{summary[0]['lesion_slices']} lesion slices of {summary[0]['slices']}",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for entry in summary:
        values = [entry["dice_3d"], entry["slice_dice"], entry["jaccard"], entry["slice_dice"], entry["accuracy"],
                  entry["sensitivity"], entry["specificity"], entry["slice_accuracy"]]
        lines.append("| " + " | ".join([entry["method"]] + [f"{value:.3f}" for value in values]
                                       + [f"{entry['seconds']:.1f}"]) + " |")
    return "\n".join(lines)


def transfer_table(summary: list[dict], foreground: list[str], case_count: int) -> str:
    """A Markdown table of the transfer benchmark: per-class Dice and HD95 (mm), means, seconds/volume."""
    header = (["method"] + [f"Dice {name}" for name in foreground] + ["mean Dice"]
              + [f"HD95 {name}" for name in foreground] + ["mean HD95", "s/volume"])
    lines = [
        f"{case_count} test volumes",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for entry in summary:
        values = ([f"{entry[f'dice_{name}']:.3f}" for name in foreground] + [f"{entry['mean_dice']:.3f}"]
                  + [f"{entry[f'hd95_{name}']:.1f}" for name in foreground]
                  + [f"{entry['mean_hd95']:.1f}", f"{entry['seconds']:.1f}"])
        lines.append("| " + " | ".join([entry["method"]] + values) + " |")
    return "\n".join(lines)


def seed_spread(rows: list[dict], key: str, names: list[str], scores: tuple[str, ...]) -> list[dict]:
    """Per name (the value of ``key``: a method or a row), over the seeds of ``rows`` (one summary row per
    seed and name): mean, lowest, highest and spread (highest - lowest) of each score.

    GANs and self-training vary from seed to seed; the spread says how far one run can be trusted.
    """
    spread = []
    for name in names:
        entries = [row for row in rows if row[key] == name]
        item = {key: name, "seeds": len(entries)}
        for score in scores:
            values = np.array([row[score] for row in entries], dtype=float)
            item.update({f"{score}_mean": float(values.mean()), f"{score}_min": float(values.min()),
                         f"{score}_max": float(values.max()), f"{score}_spread": float(values.max() - values.min())})
        spread.append(item)
    return spread


def spread_table(spread: list[dict], key: str, headings: dict[str, str]) -> str:
    """A Markdown table of :func:`seed_spread`: per score (``headings``: score -> its column name) the mean,
    lowest, highest and spread."""
    header = [key] + [f"{heading} {part}" if part == "mean" else part
                      for heading in headings.values() for part in ("mean", "min", "max", "spread")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in spread:
        values = [entry[f"{score}_{part}"] for score in headings for part in ("mean", "min", "max", "spread")]
        lines.append("| " + " | ".join([entry[key]] + [f"{value:.3f}" for value in values]) + " |")
    return "\n".join(lines)
