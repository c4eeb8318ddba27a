"""``torchrun --nproc-per-node 2 -m weakseg train`` on the CPU (gloo): the model of one process, resume, refusals.

Two processes draw the same global batch, augmentation and dropout masks as one process,
normalise BatchNorm and every loss term over the global batch and average their gradients,
so they must end with one process's weights. Tolerance: a relative L2 distance of 1e-5 over
all weights, for float rounding only (sums run in another order across two processes); measured
7e-8 after 20 steps. Without the gradient all-reduce the distance is 7e-2; with per-process
BatchNorm statistics and loss normalisation (dropout off) 4e-2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learning_tasks import write_two_blob_cohort

COMMON = ["--classes", "background,disk,square", "--image-size", "32", "--channels", "4,8,16", "--progress", "none"]


def _train(folder: Path, out: str, *options: str, processes: int = 1) -> None:
    """``weakseg train`` in this process (one process), or under torchrun with ``processes`` processes."""
    arguments = ["train", str(folder / "data"), "--out", str(folder / out), *COMMON, *options]
    if processes == 1:
        from weakseg.cli import main

        assert main(arguments) == 0
        return
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run([*launcher, "-m", "weakseg", *arguments], env=environment, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]


def _relative_distance(first: Path, second: Path) -> float:
    a = torch.load(first, weights_only=True)["model"]
    b = torch.load(second, weights_only=True)["model"]
    keys = [key for key, value in a.items() if value.is_floating_point() and "running" not in key]
    difference = sum(float((a[key] - b[key]).pow(2).sum()) for key in keys)
    return (difference / sum(float(a[key].pow(2).sum()) for key in keys)) ** 0.5


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "data").mkdir()
    write_two_blob_cohort(folder / "data", 3)
    return folder


def test_two_processes_train_the_model_of_one_process_with_the_same_global_batch(cohort):
    steps = ["--steps", "20", "--batch-size", "8"]
    _train(cohort, "one.pt", *steps)
    _train(cohort, "two.pt", *steps, processes=2)
    checkpoint = torch.load(cohort / "two.pt", weights_only=True)
    assert checkpoint["step"] == 20 and not any(key.startswith("module.") for key in checkpoint["model"])
    assert _relative_distance(cohort / "one.pt", cohort / "two.pt") <= 1e-5
    assert not [path.name for path in cohort.iterdir() if path.name.startswith(".two.pt")], "a temporary file stayed"


def test_maag_under_torchrun_resumes_and_ends_with_the_single_process_model(cohort):
    maag = ["--method", "maag", "--split", "001-002", "--unpaired-split", "003", "--batch-size", "4"]
    _train(cohort, "maag-one.pt", *maag, "--steps", "3")  # a run of 3 steps continued to 5 (the learning
    _train(cohort, "maag-one.pt", *maag, "--steps", "5", "--resume")  # rate decays over 3 steps, then over 5)
    _train(cohort, "maag-two.pt", *maag, "--steps", "3", processes=2)
    _train(cohort, "maag-two.pt", *maag, "--steps", "5", "--resume", processes=2)
    checkpoint = torch.load(cohort / "maag-two.pt", weights_only=True)
    assert checkpoint["step"] == 5 and checkpoint["extra"]["shape_prior"]["discriminator"]
    assert _relative_distance(cohort / "maag-one.pt", cohort / "maag-two.pt") <= 1e-5


def test_methods_without_a_data_parallel_loop_refuse_torchrun(cohort, monkeypatch, capsys):
    from weakseg.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    labels = cohort / "labels.csv"
    labels.write_text("image,slices,label\ncase001_image.nii.gz,,disk\n")
    status = main(["train", str(cohort / "data"), "--method", "imagelabel", "--image-labels", str(labels),
                   "--out", str(cohort / "il.pt")])
    assert status == 2
    assert "method imagelabel does not train under torchrun" in capsys.readouterr().err
    status = main(["train", str(cohort / "data"), "--out", str(cohort / "odd.pt"), "--batch-size", "3", *COMMON])
    assert status == 2 and "--batch-size 3: does not split evenly over 2 processes" in capsys.readouterr().err
