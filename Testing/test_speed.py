"""Profiling per stage, the warm-start cache of re-segmentation, and torch's thread count."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from synthetic_data import CLASSES, dice, write_case
from weakseg import warm_start
from weakseg.bench.scribbles import ScribbleBenchOptions, run_scribble_bench
from weakseg.cli import main
from weakseg.errors import WeakSegInputError
from weakseg.io import read_image
from weakseg.methods.interactive import InteractiveConfig
from weakseg.methods.interactive_unet import segment_interactive
from weakseg.profiling import StageProfile
from weakseg.progress import Progress
from weakseg.threads import configure_torch_threads, free_cores, thread_count
from weakseg.weak_labels import load_scribbles

FAST = InteractiveConfig(steps=20, channels=(8, 16), max_size=48)


def load(case):
    image = read_image(case.image)
    return image, load_scribbles(case.scribbles, image, CLASSES.split(","))


# ----------------------------------------------------------------------------- profile


def test_stages_add_up_their_seconds_and_an_inner_stage_counts_in_the_outer_one_only():
    profile = StageProfile()
    for _ in range(2):
        with profile.stage("training"):
            time.sleep(0.02)
            with profile.stage("inference"):
                time.sleep(0.01)
    assert list(profile.records) == ["training"]
    record = profile.records["training"]
    assert record.runs == 2 and record.seconds >= 0.06
    if sys.platform.startswith("linux"):
        assert record.process_mib > 1
    assert "| training |" in profile.table() and "torch threads" in profile.table()


def test_a_stage_measures_the_memory_it_allocates():
    profile = StageProfile()
    with profile.stage("small"):
        np.ones(1)
    with profile.stage("large"):
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        del block
    assert profile.records["large"].process_mib >= profile.records["small"].process_mib + 32


def test_segment_profile_prints_every_stage_after_the_result(synthetic_case, tmp_path, capsys):
    out = tmp_path / "result.nii.gz"
    status = main(["segment", str(synthetic_case.image), "--scribbles", str(synthetic_case.scribbles), "--out", str(out),
                   "--classes", CLASSES, "--steps", "3", "--progress", "none", "--profile"])
    printed = capsys.readouterr().out
    assert status == 0 and out.is_file()
    stages = [line.split("|")[1].strip() for line in printed.splitlines() if line.startswith("| ")][1:]
    assert stages == ["reading", "pseudo labels", "region of interest", "training", "inference", "crf", "writing",
                      "total"]


def test_segment_without_profile_prints_nothing(synthetic_case, tmp_path, capsys):
    status = main(["segment", str(synthetic_case.image), "--scribbles", str(synthetic_case.scribbles), "--out",
                   str(tmp_path / "r.nii.gz"), "--classes", CLASSES, "--method", "growcut", "--progress", "none"])
    assert status == 0 and capsys.readouterr().out == ""


def test_bench_profile_adds_stage_columns(tmp_path):
    pytest.importorskip("slicer", reason="growcut needs slicer-core")
    data = tmp_path / "data"
    data.mkdir()
    write_case(data, "case00", seed=0)
    options = ScribbleBenchOptions(data_dir=str(data), out=str(tmp_path / "out"), methods=("growcut",),
                                   class_names=CLASSES.split(","), overlays=0, profile=True)
    result = run_scribble_bench(options)
    row = result.rows[0]
    assert row["pseudo labels s"] > 0 and row["training s"] == 0.0 and row["peak MiB"] > 0
    assert "| growcut |" in result.stage_table and "median s/volume" in result.stage_table
    assert "pseudo labels s" in (tmp_path / "out" / "cases.csv").read_text().splitlines()[0]


# ----------------------------------------------------------------------------- warm start


def training_steps(image, scribbles, cache) -> tuple[np.ndarray, list[str]]:
    messages = []
    labels = segment_interactive(image, scribbles, FAST, Progress(lambda _f, message: messages.append(message)),
                                 cache=cache)
    return labels, [message for message in messages if message.startswith("training step")]


def test_a_second_run_on_the_same_image_starts_from_the_cached_network(synthetic_case, tmp_path):
    image, scribbles = load(synthetic_case)
    cache = warm_start.WarmStartCache(tmp_path / "cache")
    _, cold = training_steps(image, scribbles, cache)
    assert len(cold) == FAST.steps and len(list((tmp_path / "cache").glob("*.pt"))) == 1
    more = scribbles.labels.copy()
    more[-1] = scribbles.labels[0]  # the user scribbles the last slice too
    scribbles.labels = more
    labels, warm = training_steps(image, scribbles, cache)
    assert len(warm) == round(FAST.steps * FAST.warm_start_fraction)
    for code in (1, 2):
        assert dice(labels, synthetic_case.truth, code) > 0.85


def test_another_image_or_other_classes_miss_the_cache(synthetic_case, tmp_path):
    image, scribbles = load(synthetic_case)
    cache = warm_start.WarmStartCache(tmp_path / "cache")
    training_steps(image, scribbles, cache)
    other = load(write_case(tmp_path, "other", seed=5))
    assert len(training_steps(*other, cache)[1]) == FAST.steps
    key = warm_start.cache_key(image, CLASSES.split(","), FAST)
    assert key != warm_start.cache_key(image, ["background", "a", "b"], FAST)
    assert key != warm_start.cache_key(image, CLASSES.split(","), InteractiveConfig(channels=(4, 8)))


def test_a_damaged_entry_is_a_miss_and_gets_rewritten(synthetic_case, tmp_path):
    image, scribbles = load(synthetic_case)
    cache = warm_start.WarmStartCache(tmp_path / "cache")
    entry = cache.path(warm_start.cache_key(image, scribbles.class_names, FAST))
    entry.parent.mkdir()
    entry.write_bytes(b"not a model")
    assert len(training_steps(image, scribbles, cache)[1]) == FAST.steps
    assert cache.load(entry.stem) is not None


def test_the_cache_keeps_only_the_newest_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(warm_start, "MAX_ENTRIES", 2)
    cache = warm_start.WarmStartCache(tmp_path)
    for index in range(3):
        cache.save(f"key{index}", {"weight": torch.zeros(1)})
        time.sleep(0.01)
    assert sorted(path.stem for path in tmp_path.glob("*.pt")) == ["key1", "key2"]


def test_cache_option_is_refused_where_nothing_is_trained_or_it_is_a_file(synthetic_case, tmp_path, capsys):
    common = ["segment", str(synthetic_case.image), "--scribbles", str(synthetic_case.scribbles), "--out",
              str(tmp_path / "r.nii.gz"), "--classes", CLASSES, "--progress", "none"]
    assert main(common + ["--method", "growcut", "--cache", str(tmp_path / "c")]) == 2
    assert "--cache" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(common + ["--cache", str(a_file)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp_path / "r.nii.gz").exists()


# ----------------------------------------------------------------------------- threads


def test_threads_follow_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_torch_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "two")
        with pytest.raises(WeakSegInputError, match="OMP_NUM_THREADS"):
            thread_count()
    finally:
        torch.set_num_threads(before)


def test_without_omp_num_threads_busy_cores_are_left_out(monkeypatch):
    assert free_cores(8, 0.2) == 8
    assert free_cores(8, 3.4) == 5
    assert free_cores(2, 6.6) == 1
    assert free_cores(4, None) == 4
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= thread_count()
