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


def seed_spread(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method, over the seeds of ``rows`` (summary rows with a ``seed``): mean, lowest, highest and spread
    (highest - lowest) of the 3D Dice and of the lesion-slice Dice."""
    spread = []
    for method in methods:
        entries = [row for row in rows if row["method"] == method]
        dice, slice_dice = (np.array([row[key] for row in entries]) for key in ("dice_3d", "slice_dice"))
        spread.append({"method": method, "seeds": len(entries), "dice_3d_mean": float(dice.mean()),
                       "dice_3d_min": float(dice.min()), "dice_3d_max": float(dice.max()),
                       "dice_3d_spread": float(dice.max() - dice.min()), "slice_dice_mean": float(slice_dice.mean()),
                       "slice_dice_spread": float(slice_dice.max() - slice_dice.min())})
    return spread


def spread_table(spread: list[dict]) -> str:
    """A Markdown table of :func:`seed_spread`."""
    header = ["method", "3D Dice mean", "min", "max", "spread", "Dice (lesion slices) mean", "spread"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in spread:
        values = [entry[key] for key in ("dice_3d_mean", "dice_3d_min", "dice_3d_max", "dice_3d_spread",
                                         "slice_dice_mean", "slice_dice_spread")]
        lines.append("| " + " | ".join([entry["method"]] + [f"{value:.3f}" for value in values]) + " |")
    return "\n".join(lines)
