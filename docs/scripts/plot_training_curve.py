"""Dice against training time: the table and a small PNG from a training_curve.py run and its bench scores.

Reads ``CURVE_DIR/curve.csv`` (written by ``training_curve.py``) and the ``summary.csv`` of
one ``weakseg bench scribbles`` run per scored checkpoint, in ``SCORES_DIR/sNNNNN/`` (the
row named ``sNNNNN``, the checkpoint of step NNNNN), prints a Markdown table (step, wall
and CPU minutes, load average, Dice per class, mean) and plots mean Dice against CPU
minutes (matplotlib, only needed here).

    python docs/scripts/plot_training_curve.py curve-out scores-out --png docs/cpu-training-curve.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_rows(curve_dir: str, scores_dir: str) -> list[dict]:
    """One row per scored checkpoint: step, minutes, load and the bench's summary columns."""
    with open(Path(curve_dir) / "curve.csv", newline="") as handle:
        times = {int(row["step"]): row for row in csv.DictReader(handle)}
    rows = []
    for summary in sorted(Path(scores_dir).glob("s*/summary.csv")):
        step = int(summary.parent.name[1:])
        with open(summary, newline="") as handle:
            scores = next(csv.DictReader(handle))
        timing = times[step]
        rows.append({"step": step, "wall min": float(timing["wall_s"]) / 60, "CPU min": float(timing["cpu_s"]) / 60,
                     "load": float(timing["load1"]), **{key: float(value) for key, value in scores.items()
                                                       if key not in ("method", "cases")}})
    return sorted(rows, key=lambda row: row["step"])


def table(rows: list[dict], classes: list[str]) -> str:
    lines = ["| step | wall min | CPU min | load average | " + " | ".join(f"Dice {name}" for name in classes)
             + " | mean Dice |", "|" + "---|" * (len(classes) + 5)]
    for row in rows:
        lines.append(f"| {row['step']} | {row['wall min']:.1f} | {row['CPU min']:.1f} | {row['load']:.1f} | "
                     + " | ".join(f"{row[name]:.3f}" for name in classes) + f" | {row['mean']:.3f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5, 3.2), dpi=120)
    axes.plot([row["CPU min"] for row in rows], [row["mean"] for row in rows], marker="o", markersize=3)
    for row in rows[-1:]:
        axes.annotate(f"step {row['step']}: {row['mean']:.3f}", (row["CPU min"], row["mean"]),
                      textcoords="offset points", xytext=(-90, -14), fontsize=8)
    axes.set_xlabel("CPU minutes of training (one thread)")
    axes.set_ylabel("ACDC val mean Dice (no scribbles)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curve_dir")
    parser.add_argument("scores_dir")
    parser.add_argument("--classes", default="RV,Myo,LV")
    parser.add_argument("--png")
    arguments = parser.parse_args()
    rows = read_rows(arguments.curve_dir, arguments.scores_dir)
    print(table(rows, arguments.classes.split(",")))
    if arguments.png:
        plot(rows, arguments.png)
