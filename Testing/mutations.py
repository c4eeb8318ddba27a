"""Break the learning on purpose, one line at a time, and check that the tests notice.

For every breakage below, the tracked (and untracked, not ignored) files of the
repository's working tree are copied to a scratch folder, one exact text substitution is
made there, and the tests that should notice it run there (with that copy of WeakSegLib
first on the import path). A breakage is KILLED when those tests fail, SURVIVED when they
pass. Before any breakage, the same tests run once on the unbroken copy and must pass.

The substitution's old text must occur exactly once in its file: when the code has moved
on (a refactor renamed or moved the line), the script stops with an error naming the
breakage, instead of reporting a kill or a survival it did not test. Update the table then.

Usage (from anywhere; run with the project's Python)::

    OMP_NUM_THREADS=1 .venv/bin/python Testing/mutations.py [NAME ...]

Exit status 0 when every breakage run was killed, 1 otherwise (survived, or a test run
that errored instead of failing), 2 when a substitution no longer applies. The file name
does not match pytest's ``test_*.py``, so the suite does not collect this script.
``Testing/mutations.md`` lists the breakages with the tests that kill them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Breakage:
    """One deliberate bug: in ``path``, ``old`` (exactly once) becomes ``new``; ``tests`` must fail."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


LIB = "WeakSegLib/weakseg/"
REGRESSIONS = "Testing/test_learning_regressions.py::"
RESUME = "Testing/test_resume.py::"
DISTRIBUTED = "Testing/test_distributed.py::test_two_processes_train_the_model_of_one_process_with_the_same_global_batch"

BREAKAGES = (
    Breakage(
        "resume-skips-weights",
        "a resumed cohort run does not load the checkpoint's network weights",
        LIB + "methods/scribble_training.py",
        'network.load_state_dict(stored["model"])',
        "pass",
        (RESUME + "test_cohort_resume_equals_an_uninterrupted_run",),
    ),
    Breakage(
        "maag-sign-flipped",
        "the segmenter's adversarial term of MAAG has its sign flipped",
        LIB + "methods/adversarial.py",
        "        return scale * loss",
        "        return -scale * loss",
        (REGRESSIONS + "test_maag_shape_prior_stops_the_leak_of_pce_into_far_background",),
    ),
    Breakage(
        "adapt-ignores-names",
        "adaptation to a volume's scribbles takes scribble codes as model codes, ignoring the class names",
        LIB + "methods/scribble_unet.py",
        "table[code] = model_code[name.lower()]",
        "table[code] = code",
        (REGRESSIONS + "test_adaptation_matches_scribble_classes_by_name",),
    ),
    Breakage(
        "imagelabel-swapped",
        "image-label inference swaps lesion and background",
        LIB + "methods/imagelabel_pipeline.py",
        "probabilities = _to_image_grid(probabilities, array.shape[-2:])",
        "probabilities = _to_image_grid(probabilities.flip(1), array.shape[-2:])",
        (REGRESSIONS + "test_image_labels_segment_the_lesion_not_its_background",),
    ),
    Breakage(
        "crf-removed",
        "the interactive method skips its dense-CRF step",
        LIB + "methods/interactive_unet.py",
        "    if config.use_crf:",
        "    if False:",
        (REGRESSIONS + "test_interactive_learns_past_its_scribbles_and_the_crf_helps",),
    ),
    Breakage(
        "direction-not-copied",
        "written labelmaps do not copy the image's direction",
        LIB + "io.py",
        "    image.SetDirection(reference.GetDirection())\n",
        "",
        ("Testing/test_io.py::test_written_labels_keep_the_image_geometry",),
    ),
    Breakage(
        "pce-counts-unlabelled",
        "partial cross-entropy counts unlabelled voxels as background",
        LIB + "losses.py",
        "F.cross_entropy(logits, labels, weight=class_weights, ignore_index=ignore_index, reduction=reduction)",
        "F.cross_entropy(logits, labels.masked_fill(labels == ignore_index, 0), weight=class_weights, reduction=reduction)",
        (REGRESSIONS + "test_pce_segments_held_out_volumes_without_scribbles",),
    ),
    Breakage(
        "flip-tta-misaligned",
        "the 2D networks' prediction averages flipped predictions without flipping them back",
        LIB + "inference.py",
        "total = total + (probabilities.flip(dims) if dims else probabilities)",
        "total = total + probabilities",
        (REGRESSIONS + "test_cohort_segments_held_out_volumes_without_scribbles",),
    ),
    Breakage(
        "resume-skips-critic",
        "a resumed MAAG run does not load the discriminator and its optimiser",
        LIB + "methods/scribble_training.py",
        'prior.load_state(stored["extra"]["shape_prior"])',
        "pass",
        (RESUME + "test_maag_resume_equals_an_uninterrupted_run_including_the_critic",),
    ),
    Breakage(
        "resume-skips-random-state",
        "a resumed run does not restore the stored random state",
        LIB + "engine.py",
        'torch.set_rng_state(state["torch"].cpu())',
        "pass",
        (RESUME + "test_cohort_resume_equals_an_uninterrupted_run",),
    ),
    Breakage(
        "stand-in-predict-names",
        "the stand-in command line names predict outputs by the name up to its first dot",
        "Testing/extension/contract_cli.py",
        "stem = name[: len(name) - len(suffix_of(name))]",
        'stem = name.split(".")[0]',
        ("Testing/extension/test_contract_cli.py::test_stand_in_names_predict_outputs_as_the_real_command",),
    ),
    Breakage(
        "stand-in-growcut-fake",
        "the stand-in command line answers segment --method growcut with its nearest-class-mean rule",
        "Testing/extension/contract_cli.py",
        '    if arguments.method == "growcut":',
        "    if False:",
        ("Testing/extension/test_contract_cli.py::test_growcut_exit_code_and_result_match_the_real_command",),
    ),
    Breakage(
        "stand-in-ignores-resume",
        "the stand-in command line accepts train --resume without a model file",
        "Testing/extension/contract_cli.py",
        "    if arguments.resume and not Path(arguments.out).is_file():",
        "    if False:",
        ("Testing/extension/test_contract_cli.py::test_bad_input_exits_2_in_both",),
    ),
    Breakage(
        "stand-in-sigterm-default",
        "the stand-in command line leaves SIGTERM to its default action (no exit status 130)",
        "Testing/extension/contract_cli.py",
        "    signal.signal(signal.SIGTERM, cancel)\n",
        "",
        ("Testing/extension/test_contract_cli.py::test_sigterm_exits_130_in_both_and_writes_nothing",),
    ),
    Breakage(
        "imagelabel-resume-skips-segmenter",
        "a resumed image-label run does not load the segmentation network",
        LIB + "methods/imagelabel_pipeline.py",
        "model.segmenter.load_state_dict(stored.segmenter.state_dict())",
        "pass",
        (RESUME + "test_image_label_resume_equals_an_uninterrupted_run",),
    ),
    Breakage(
        "torchrun-no-gradient-all-reduce",
        "under torchrun each process trains on its own share without averaging gradients",
        LIB + "distributed.py",
        "        return DistributedDataParallel(module, device_ids=device_ids)",
        "        return module",
        (DISTRIBUTED,),
    ),
    Breakage(
        "torchrun-per-process-batch-norm",
        "under torchrun on the CPU BatchNorm normalises with each process's share only",
        LIB + "distributed.py",
        "        if type(child) is torch.nn.BatchNorm2d:",
        "        if False:",
        (DISTRIBUTED,),
    ),
    Breakage(
        "torchrun-per-process-dropout",
        "under torchrun every process draws the dropout masks of its own share",
        LIB + "distributed.py",
        "        return batch * noise[self.rank * share:(self.rank + 1) * share]",
        "        return batch * noise[:share]",
        (DISTRIBUTED,),
    ),
    Breakage(
        "ema-saves-last-weights",
        "with --ema-decay the model file holds the last step's weights instead of their average",
        LIB + "methods/scribble_training.py",
        '            saved, extra = average.network, {**(extra or {}), "latest_model": network.state_dict()}',
        '            saved, extra = network, {**(extra or {}), "latest_model": network.state_dict()}',
        ("Testing/test_weight_average.py::test_saved_cohort_model_is_the_average_of_every_step",),
    ),
    Breakage(
        "ema-resume-restarts-average",
        "a resumed run starts a fresh weight average instead of the stored one",
        LIB + "weight_average.py",
        '        average.load(stored["model"], int(record["updates"]))',
        "        pass",
        (RESUME + "test_cohort_resume_with_a_weight_average_restores_the_average",),
    ),
    Breakage(
        "adapt-forgets-the-cohort-model",
        "adaptation to a volume's scribbles drops its distillation towards the cohort model's output",
        LIB + "methods/scribble_unet.py",
        "        if distillation_weight:",
        "        if False:",
        (REGRESSIONS + "test_adaptation_keeps_the_cohort_output_on_slices_without_scribbles",),
    ),
    Breakage(
        "one-piece-clean-up-ignored",
        "prediction keeps each class's largest component even when the model file chose the one-piece clean-up",
        LIB + "methods/scribble_unet.py",
        "        labels = keep_largest_components(labels, model.num_classes, model.foreground_one_piece)",
        "        labels = keep_largest_components(labels, model.num_classes)",
        ("Testing/test_post_processing.py::test_prediction_applies_the_clean_up_the_model_file_records",),
    ),
    Breakage(
        "one-piece-for-separate-structures",
        "the training-end choice adopts the one-piece clean-up even when it loses a structure's scribbles",
        LIB + "components.py",
        "    adopt = num_classes > 2 and per_class > 0 and one_piece >= (1.0 - tolerance) * per_class",
        "    adopt = num_classes > 2 and per_class > 0",
        ("Testing/test_cohort.py::test_checkpoint_is_weights_only_with_metadata",),
    ),
)


class StaleBreakage(Exception):
    """The old text of a breakage is not found exactly once: the code moved on."""


def copy_working_tree(destination: Path) -> None:
    """Copy the tracked and untracked-but-not-ignored files of the repository to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = ROOT / relative
        if not source.is_file():
            continue  # deleted in the working tree, or a submodule
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def substituted(breakage: Breakage, tree: Path) -> str:
    """The text of the breakage's file in ``tree`` with the substitution made.

    Raises:
        StaleBreakage: the file is missing or ``old`` does not occur in it exactly once.
    """
    path = tree / breakage.path
    if not path.is_file():
        raise StaleBreakage(f"{breakage.name}: {breakage.path} does not exist")
    text = path.read_text()
    count = text.count(breakage.old)
    if count != 1:
        raise StaleBreakage(f"{breakage.name}: {breakage.path} holds the old text {count} times, expected once: "
                            f"{breakage.old!r}")
    return text.replace(breakage.old, breakage.new)


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """Run ``tests`` with pytest in ``tree``; returns pytest's exit status and its last output line."""
    environment = dict(os.environ, PYTHONPATH=str(tree / "WeakSegLib"), OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"],
        cwd=tree, env=environment, capture_output=True, text=True,
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return completed.returncode, lines[-1] if lines else completed.stderr.strip()[-200:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="breakages to run (default: all)")
    arguments = parser.parse_args(argv)
    known = {breakage.name: breakage for breakage in BREAKAGES}
    unknown = [name for name in arguments.names if name not in known]
    if unknown:
        parser.error(f"unknown breakage(s) {unknown}; known: {', '.join(known)}")
    chosen = [known[name] for name in arguments.names] or list(BREAKAGES)

    with tempfile.TemporaryDirectory(prefix="weakseg-mutations-") as scratch:
        pristine = Path(scratch) / "pristine"
        copy_working_tree(pristine)
        try:
            for breakage in chosen:  # every substitution must apply before anything runs
                substituted(breakage, pristine)
        except StaleBreakage as error:
            print(f"mutations.py: {error}", file=sys.stderr)
            return 2
        all_tests = tuple(dict.fromkeys(test for breakage in chosen for test in breakage.tests))
        status, summary = run_tests(pristine, all_tests)
        if status != 0:
            print(f"mutations.py: the unbroken code fails its tests ({summary}); fix that first", file=sys.stderr)
            return 1
        print(f"{'breakage':36} {'result':9} {'seconds':>7}  tests")
        failed = False
        for breakage in chosen:
            tree = Path(scratch) / breakage.name
            shutil.copytree(pristine, tree)
            (tree / breakage.path).write_text(substituted(breakage, tree))
            started = time.monotonic()
            status, summary = run_tests(tree, breakage.tests)
            result = {0: "SURVIVED", 1: "KILLED"}.get(status, f"ERROR({status})")
            failed = failed or result != "KILLED"
            names = ", ".join(test.split("::")[-1] for test in breakage.tests)
            print(f"{breakage.name:36} {result:9} {time.monotonic() - started:7.1f}  {names}  [{summary}]", flush=True)
            shutil.rmtree(tree)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
