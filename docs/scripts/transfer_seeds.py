"""Several transfer trainings from one training-array file side by side, one process each.

Each run is ``SEED:CRITIC_WIDTH`` and trains ``weakseg.methods.transfer_training.
train_transfer_arrays`` at the defaults of ``TransferConfig`` but for those two settings, in
its own process with one torch thread, writing ``OUT/w<WIDTH>-s<SEED>.pt``. The arrays come
from ``save_arrays`` (the benchmarks document shows how to make them), so the machine that
trains needs torch, numpy and scikit-image but no SimpleITK. Prints each run's wall time.

    python docs/scripts/transfer_seeds.py transfer128.npz seeds-out 1:32 2:32 3:32 2:16 3:16
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import torch

from weakseg.methods.transfer import TransferConfig
from weakseg.methods.transfer_training import load_arrays, train_transfer_arrays


def train_one(arrays_path: str, out_folder: str, seed: int, critic_width: int, steps: int | None) -> str:
    """Train one model; returns a line with its settings and wall seconds."""
    torch.set_num_threads(1)
    arrays, class_names = load_arrays(arrays_path)
    config = TransferConfig(seed=seed, critic_width=critic_width)
    if steps is not None:
        config.steps = steps
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_path = Path(out_folder) / f"w{critic_width}-s{seed}.pt"
    start = time.time()
    train_transfer_arrays(arrays, class_names, out_path, config, device)
    return f"{out_path.name}: seed {seed}, critic width {critic_width}, {config.steps} steps on {device}, " \
           f"{time.time() - start:.1f} s"


def parse_run(text: str) -> tuple[int, int]:
    """``SEED:CRITIC_WIDTH`` as two integers."""
    seed, _, width = text.partition(":")
    try:
        return int(seed), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"run {text!r} is not SEED:CRITIC_WIDTH (e.g. 2:16)") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arrays", help="training-array file (.npz from save_arrays)")
    parser.add_argument("out", help="folder for the model files")
    parser.add_argument("runs", nargs="+", type=parse_run, help="SEED:CRITIC_WIDTH, one per training")
    parser.add_argument("--steps", type=int, default=None, help="override the default step count (a quick check)")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(args.runs)) as pool:
        jobs = [pool.apply_async(train_one, (args.arrays, args.out, seed, width, args.steps)) for seed, width in args.runs]
        for job in jobs:
            print(job.get(), flush=True)


if __name__ == "__main__":
    main()
