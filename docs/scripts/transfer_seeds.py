"""Several transfer trainings from one training-array file side by side, one process each.

Each run is ``SEED:CRITIC_WIDTH`` and trains ``weakseg.methods.transfer_training.
train_transfer_arrays`` at the defaults of ``TransferConfig`` but for those two settings and
any ``--set NAME=VALUE``, in its own process with one torch thread, writing
``OUT/w<WIDTH>-s<SEED>.pt``. ``--ignore-scribbles`` leaves the target's scribbles out (the
image-label rows). The arrays come from ``save_arrays`` (the benchmarks document shows how to
make them), so the machine that trains needs torch, numpy and scikit-image but no SimpleITK.
Prints each run's wall time.

    python docs/scripts/transfer_seeds.py transfer128.npz seeds-out 1:32 2:32 3:32 2:16 3:16
    python docs/scripts/transfer_seeds.py transfer128.npz source-only 0:16 --ignore-scribbles \
        --set pseudo_label_weight=0 --set centroid_weight=0 --set adversarial_weight=0
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import torch

from weakseg.methods.transfer import TransferConfig
from weakseg.methods.transfer_training import load_arrays, train_transfer_arrays


def train_one(arrays_path: str, out_folder: str, seed: int, critic_width: int, steps: int | None,
              changes: dict[str, object]) -> str:
    """Train one model; returns a line with its settings and wall seconds."""
    torch.set_num_threads(1)
    config = TransferConfig(seed=seed, critic_width=critic_width, **changes)
    arrays, class_names = load_arrays(arrays_path, with_scribbles=not config.ignore_scribbles)
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


def parse_change(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` for a ``TransferConfig`` field, the value converted to the field's type."""
    name, _, value = text.partition("=")
    defaults = TransferConfig()
    if not hasattr(defaults, name) or not value:
        raise argparse.ArgumentTypeError(f"--set {text!r}: not NAME=VALUE with NAME a TransferConfig field")
    kind = type(getattr(defaults, name))
    if kind is bool:
        return name, value.lower() in ("1", "true", "yes", "on")
    if kind is tuple:
        return name, tuple(int(item) for item in value.split(","))
    return name, kind(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arrays", help="training-array file (.npz from save_arrays)")
    parser.add_argument("out", help="folder for the model files")
    parser.add_argument("runs", nargs="+", type=parse_run, help="SEED:CRITIC_WIDTH, one per training")
    parser.add_argument("--steps", type=int, default=None, help="override the default step count (a quick check)")
    parser.add_argument("--set", dest="changes", action="append", type=parse_change, default=[], metavar="NAME=VALUE",
                        help="another TransferConfig setting for every run; repeat")
    parser.add_argument("--ignore-scribbles", action="store_true",
                        help="train without the target's scribbles (the same as --set ignore_scribbles=true)")
    args = parser.parse_args()
    changes = dict(args.changes)
    if args.ignore_scribbles:
        changes["ignore_scribbles"] = True
    Path(args.out).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(args.runs)) as pool:
        jobs = [pool.apply_async(train_one, (args.arrays, args.out, seed, width, args.steps, changes))
                for seed, width in args.runs]
        for job in jobs:
            print(job.get(), flush=True)


if __name__ == "__main__":
    main()
