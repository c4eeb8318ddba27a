"""Where a transfer training step spends its time: CPU seconds per step with each part on or off.

Trains ``--steps`` steps of ``weakseg.methods.transfer_training.train_transfer_arrays`` from
a training-array file (``save_arrays``; the benchmarks document shows how to make one) once
per variant and prints the process CPU seconds and wall seconds per step. The warm-up share
is set so that no pseudo-label round starts: the rounds are a few seconds each, three times
per run, and would blur a per-step figure. Every variant keeps the defaults otherwise (the
weight average included).

    OMP_NUM_THREADS=1 python docs/scripts/transfer_step_time.py transfer128.npz --steps 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from weakseg.methods.transfer import TransferConfig
from weakseg.methods.transfer_training import load_arrays, train_transfer_arrays

VARIANTS = {
    "all parts + scribbles, critic width 32": {"critic_width": 32},
    "all parts + scribbles, critic width 16 (default)": {},
    "all parts + scribbles, critic width 8": {"critic_width": 8},
    "all parts + scribbles, no critic": {"adversarial_weight": 0.0},
    "all parts + scribbles, no centroids (critic 32)": {"centroid_weight": 0.0, "critic_width": 32},
    "source masks only": {"pseudo_label_weight": 0.0, "centroid_weight": 0.0, "adversarial_weight": 0.0},
}


def main(arrays_path: str, steps: int) -> None:
    print(f"torch threads {torch.get_num_threads()}, {steps} steps per variant")
    print("| variant | CPU s/step | wall s/step |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, changes in VARIANTS.items():
            arrays, class_names = load_arrays(arrays_path, with_scribbles=name != "source masks only")
            config = TransferConfig(steps=steps, warmup=0.99, checkpoint_every=10 * steps, **changes)
            cpu, wall = time.process_time(), time.perf_counter()
            train_transfer_arrays(arrays, class_names, Path(folder) / "model.pt", config)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"| {name} | {cpu / steps:.3f} | {wall / steps:.3f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arrays", help="a .npz written by weakseg.methods.transfer_training.save_arrays")
    parser.add_argument("--steps", type=int, default=60)
    arguments = parser.parse_args()
    main(arguments.arrays, arguments.steps)
