"""What flip averaging buys: a model's Dice and prediction time with 4, 2 and 1 flips, on scored cases.

Runs ``weakseg.apply.predict_image`` on every case of ``--split`` that has a label file,
once per set of flips (``weakseg.inference.FLIPS`` set for the run), and prints per set
the mean Dice per class, the mean over classes and the median seconds per volume (the
method alone). Ground truth only scores.

    OMP_NUM_THREADS=1 python docs/scripts/flip_averaging_check.py MODEL.pt ../shared/data/acdc --split 061-070
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from weakseg import inference
from weakseg.apply import load_model, predict_image
from weakseg.cases import list_cases
from weakseg.io import read_image, read_labelmap
from weakseg.metrics import dice_per_class

FLIP_SETS = {
    "4 flips (identity, left-right, up-down, both)": ((), (-1,), (-2,), (-2, -1)),
    "2 flips (identity, left-right)": ((), (-1,)),
    "no flip": ((),),
}


def main(model_path: str, data_dir: str, split: str | None) -> None:
    model = load_model(model_path, "cpu")
    cases = [case for case in list_cases(data_dir, split) if case.label_path]
    loaded = [(read_image(case.image_path), case) for case in cases]
    loaded = [(image, read_labelmap(case.label_path, image.reference)) for image, case in loaded]
    foreground = model.class_names[1:]
    print(f"{model_path}: {len(loaded)} cases")
    print("| flips | " + " | ".join(f"Dice {name}" for name in foreground) + " | mean Dice | median s/volume |")
    print("|---|" + "---|" * (len(foreground) + 2))
    kept = inference.FLIPS
    try:
        for name, flips in FLIP_SETS.items():
            inference.FLIPS = flips
            scores, seconds = [], []
            for image, truth in loaded:
                started = time.perf_counter()
                labels, _ = predict_image(model, image)
                seconds.append(time.perf_counter() - started)
                scores.append(dice_per_class(labels, truth, len(model.class_names))[1:])
            per_class = np.mean(scores, axis=0)
            print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in per_class)
                  + f" | {per_class.mean():.3f} | {statistics.median(seconds):.2f} |", flush=True)
    finally:
        inference.FLIPS = kept


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data_dir")
    parser.add_argument("--split", default=None)
    arguments = parser.parse_args()
    main(arguments.model, arguments.data_dir, arguments.split)
