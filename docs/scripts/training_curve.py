"""A cohort training run that keeps every checkpoint, for a Dice-against-training-time curve.

``weakseg train`` rewrites one model file every 100 steps (the resume checkpoint). This
script runs it as a child process, copies the file each time it changes into
``OUT/checkpoints/step-NNNNN.pt`` and appends the step, wall-clock seconds, the child's CPU
seconds and the load average to ``OUT/curve.csv``. Score the copies afterwards with one
``weakseg bench scribbles ... --model sNNNNN=OUT/checkpoints/step-NNNNN.pt ...`` run.

    OMP_NUM_THREADS=2 python docs/scripts/training_curve.py ../shared/data/acdc curve-out -- --split 001-060
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch


def child_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def finished_children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (the training, once it has ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(data_dir: str, out: str, train_arguments: list[str], poll_seconds: float) -> None:
    out_dir = Path(out)
    copies = out_dir / "checkpoints"
    copies.mkdir(parents=True, exist_ok=True)
    model = out_dir / "model.pt"
    command = [sys.executable, "-m", "weakseg", "train", data_dir, "--out", str(model), "--progress", "none",
               "--device", "cpu", *train_arguments]
    print(" ".join(command), f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command)
    seen = None
    with open(out_dir / "curve.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "wall_s", "cpu_s", "load1"])
        while True:
            finished = child.poll() is not None
            stamp = model.stat().st_mtime_ns if model.exists() else None
            if stamp is not None and stamp != seen:
                seen = stamp
                wall = time.perf_counter() - started
                cpu = finished_children_cpu_seconds() if finished else child_cpu_seconds(child.pid)
                temporary = copies / "latest.tmp"
                shutil.copyfile(model, temporary)
                step = int(torch.load(temporary, map_location="cpu", weights_only=True)["step"])
                os.replace(temporary, copies / f"step-{step:05d}.pt")
                writer.writerow([step, f"{wall:.1f}", f"{cpu:.1f}", f"{os.getloadavg()[0]:.2f}"])
                handle.flush()
                print(f"step {step}: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU", flush=True)
            if finished:
                break
            time.sleep(poll_seconds)
    sys.exit(child.returncode)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("out")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("train_arguments", nargs=argparse.REMAINDER, help="after --: passed to weakseg train")
    arguments = parser.parse_args()
    extra = arguments.train_arguments[1:] if arguments.train_arguments[:1] == ["--"] else arguments.train_arguments
    main(arguments.data_dir, arguments.out, extra, arguments.poll_seconds)
