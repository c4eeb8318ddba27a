"""Re-segmentation after an edit on real data: the first run lacks the scribbles of 3 slices, the second has them.

For each case: run 1 segments with the scribbles of 3 scribbled slices removed (cold start,
filling the warm-start cache); run 2 segments with all scribbles and the cache (warm start);
run 3 segments with all scribbles from scratch (what a user without the cache gets). Prints
seconds (the method alone) and mean foreground Dice of each run. Ground truth only scores.

    python docs/scripts/warm_start_check.py [--warm-start-fraction F] ../shared/data/acdc patient063_frame01 ...
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from weakseg.apply import segment_image
from weakseg.io import read_image, read_labelmap
from weakseg.methods.interactive_settings import InteractiveConfig
from weakseg.metrics import dice_per_class
from weakseg.weak_labels import UNLABELLED, load_scribbles


def timed(image, scribbles, cache_dir, settings):
    started = time.perf_counter()
    labels = segment_image(image, scribbles, device_name="cpu", cache_dir=cache_dir, settings=settings)
    return labels, time.perf_counter() - started


def main(data_dir: str, cases: list[str], settings: InteractiveConfig) -> None:
    print("| case | run 1 (3 slices fewer) s | Dice | run 2 warm s | Dice | all scribbles cold s | Dice |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for case in cases:
        base = Path(data_dir) / case
        image = read_image(f"{base}_image.nii.gz")
        full = load_scribbles(f"{base}_scribble.nii.gz", image, None)
        truth = read_labelmap(f"{base}_label.nii.gz", image.reference)
        scribbled = [z for z in range(full.labels.shape[0]) if (full.labels[z] != UNLABELLED).any()]
        removed = [scribbled[len(scribbled) * k // 4] for k in (1, 2, 3)]
        fewer = load_scribbles(f"{base}_scribble.nii.gz", image, None)
        fewer.labels = full.labels.copy()
        fewer.labels[removed] = UNLABELLED
        classes = len(full.class_names)
        runs = []
        with tempfile.TemporaryDirectory() as cache:
            for scribbles, cache_dir in ((fewer, cache), (full, cache), (full, None)):
                labels, seconds = timed(image, scribbles, cache_dir, settings)
                runs.append((seconds, float(np.mean(dice_per_class(labels, truth, classes)[1:]))))
        results.append(runs)
        print("| " + " | ".join([case] + [f"{seconds:.1f} | {dice:.3f}" for seconds, dice in runs]) + " |", flush=True)
    print(summary(results))


def summary(results: list[list[tuple[float, float]]]) -> str:
    """Median time ratios (warm / run 1, warm / cold with all scribbles) and the mean Dice of each run."""
    seconds = np.array([[run[0] for run in runs] for runs in results])
    dice = np.array([[run[1] for run in runs] for runs in results])
    return (f"{len(results)} cases: median seconds run 1 / warm / cold {np.median(seconds[:, 0]):.1f} / "
            f"{np.median(seconds[:, 1]):.1f} / {np.median(seconds[:, 2]):.1f}; median ratio warm / run 1 "
            f"{np.median(seconds[:, 1] / seconds[:, 0]):.2f}, warm / cold {np.median(seconds[:, 1] / seconds[:, 2]):.2f} "
            f"(max {np.max(seconds[:, 1] / seconds[:, 0]):.2f} / {np.max(seconds[:, 1] / seconds[:, 2]):.2f}); "
            f"mean Dice run 1 / warm / cold {dice[:, 0].mean():.3f} / {dice[:, 1].mean():.3f} / {dice[:, 2].mean():.3f}; "
            f"warm below cold by more than 0.01 in {int(np.sum(dice[:, 1] < dice[:, 2] - 0.01))} cases")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--warm-start-fraction", type=float, default=InteractiveConfig().warm_start_fraction)
    arguments = parser.parse_args()
    main(arguments.data_dir, arguments.cases, InteractiveConfig(warm_start_fraction=arguments.warm_start_fraction))
