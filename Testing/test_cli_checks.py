"""Every argument is checked before any work: one ``weakseg: error:`` line, exit 2, nothing written.

Also: ``train`` without ``--classes`` derives them from the scribbles, image-level training is
``--method imagelabel`` (the old ``--image-labels`` spelling still works), every option is
either used by the chosen method or refused, and ``bench`` has one sub-command per kind.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from synthetic_data import CLASSES, write_case
from weakseg.cli import EXIT_BAD_INPUT, main

TINY = ["--steps", "2", "--image-size", "32", "--channels", "4,8", "--batch-size", "2", "--progress", "none"]


def run(*argv) -> int:
    return main([str(value) for value in argv])


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for index in range(2):
        write_case(folder, f"case{index + 1:02d}", seed=index)
    return folder


def refused(capsys, *argv) -> str:
    """Run a command that must be refused; return its one-line message."""
    assert run(*argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weakseg: error: "), captured.err
    assert "Traceback" not in captured.err and "%|" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("option, value, words", [
    ("--steps", "0", "--steps 0: must be between 1"),
    ("--steps", "many", "--steps 'many': expected an integer"),
    ("--learning-rate", "-1", "--learning-rate -1: must be between"),
    ("--batch-size", "0", "--batch-size 0: must be between 1"),
    ("--channels", "4,0", "--channels 4,0: must be between 1"),
    ("--channels", "a,b", "--channels 'a,b': expected a comma list"),
    ("--image-size", "31", "--image-size 31 must be a multiple of 2"),
    ("--outside-weight", "nan", "--outside-weight 'nan': expected a number"),
])
def test_train_ranges_come_from_the_settings(capsys, data, tmp_path, option, value, words):
    model = tmp_path / "m.pt"
    message = refused(capsys, "train", data, "--out", model, "--classes", CLASSES, *TINY, option, value)
    assert words in message
    assert not model.exists()


def test_an_option_of_another_method_is_refused_naming_who_takes_it(capsys, data, tmp_path):
    message = refused(capsys, "train", data, "--out", tmp_path / "m.pt", "--adversarial-weight", "0.5", *TINY)
    assert "--adversarial-weight: method cohort does not take it (taken by: maag, transfer, collaborative, cycle)" in message
    message = refused(capsys, "train", data, "--out", tmp_path / "m.pt", "--mirror-excess", *TINY)
    assert "method cohort does not take it (taken by: imagelabel, cycle)" in message
    message = refused(capsys, "train", data, "--out", tmp_path / "m.pt", "--unpaired-split", "2", *TINY)
    assert "does not take unpaired masks (taken by: maag, shape-gan)" in message


@pytest.mark.parametrize("make_out, words", [
    (lambda tmp: tmp / "model.txt", "must end in .pt"),
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "m.pt", "is a file, not a folder"),
])
def test_bad_output_paths_are_refused_before_any_work(capsys, data, tmp_path, make_out, words):
    message = refused(capsys, "train", data, "--out", make_out(tmp_path), *TINY)
    assert words in message


@pytest.mark.parametrize("method", ["interactive", "growcut"])
@pytest.mark.parametrize("make_out, words", [
    (lambda tmp: tmp / "result.txt", "--out"),
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "r.nii.gz", "is a file, not a folder"),
])
def test_segment_refuses_a_bad_output_path_before_reading_or_segmenting(capsys, data, tmp_path, monkeypatch,
                                                                        method, make_out, words):
    import weakseg.apply
    import weakseg.io

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(weakseg.io, "read_image", must_not_run)
    monkeypatch.setattr(weakseg.apply, "segment_image", must_not_run)
    message = refused(capsys, "segment", data / "case01_image.nii.gz", "--scribbles", data / "case01_scribble.nii.gz",
                      "--method", method, "--out", make_out(tmp_path), "--progress", "none")
    assert words in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_output_folder_is_refused(capsys, data, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "permission denied" in refused(capsys, "train", data, "--out", locked / "m.pt", *TINY)
    finally:
        locked.chmod(0o700)


def test_train_without_classes_derives_them_from_the_scribbles(data, tmp_path):
    import torch

    model = tmp_path / "m.pt"
    assert run("train", data, "--out", model, *TINY) == 0
    assert torch.load(model, weights_only=True)["metadata"]["class_names"] == ["background", "class_1", "class_2"]


def test_a_model_of_the_wrong_kind_is_refused(capsys, data, tmp_path):
    not_a_model = tmp_path / "m.pt"
    not_a_model.write_bytes(b"not a model")
    message = refused(capsys, "predict", not_a_model, data / "case01_image.nii.gz", "--out", tmp_path / "p")
    assert "m.pt" in message and not (tmp_path / "p").exists()
    message = refused(capsys, "segment", data / "case01_image.nii.gz", "--scribbles", data / "case01_scribble.nii.gz",
                      "--method", "growcut", "--model", not_a_model, "--out", tmp_path / "r.nii.gz")
    assert "does not use a model" in message


def test_image_level_training_is_method_imagelabel_and_the_old_spelling_works(capsys, tmp_path):
    folder = tmp_path / "labelled"
    folder.mkdir()
    rows = ["image,slices,label"]
    for seed, name in enumerate(["a", "b"]):
        rng = np.random.default_rng(seed)
        volume = rng.normal(0.0, 0.3, (4, 32, 32)).astype(np.float32)
        volume[1:3, 10:16, 4:10] += 2.0
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(folder / f"{name}.nii.gz"))
        rows += [f"{name},0-0,healthy", f"{name},1-2,lesion", f"{name},3-3,healthy"]
    labels = folder / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    quick = ["--steps", "2", "--rounds", "1", "--image-size", "32", "--channels", "4,8", "--batch-size", "2",
             "--progress", "none"]
    assert run("train", folder, "--method", "imagelabel", "--image-labels", labels, "--out", tmp_path / "new.pt", *quick) == 0
    assert run("train", folder, "--image-labels", labels, "--out", tmp_path / "old.pt", *quick) == 0
    import torch

    stored = torch.load(tmp_path / "new.pt", weights_only=True)["metadata"]["config"]
    assert (stored["image_size"], stored["segmenter_channels"], stored["batch_size"], stored["rounds"]) == (32, [4, 8], 2, 1)
    assert "needs --image-labels" in refused(capsys, "train", folder, "--method", "imagelabel", "--out", tmp_path / "x.pt")
    assert "use --method imagelabel" in refused(capsys, "train", folder, "--method", "pce", "--image-labels", labels,
                                                "--out", tmp_path / "x.pt")
    assert "selects none" in refused(capsys, "train", folder, "--image-labels", labels, "--split", "zzz",
                                     "--out", tmp_path / "x.pt", *quick)


def test_no_progress_bar_is_drawn_before_an_error(capsys, data, tmp_path):
    message = refused(capsys, "segment", data / "case01_image.nii.gz", "--scribbles", tmp_path / "absent.nii.gz",
                      "--out", tmp_path / "r.nii.gz", "--progress", "bar")
    assert "absent.nii.gz" in message


def test_bench_has_one_sub_command_per_kind_with_its_own_options(capsys, data, tmp_path):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "scribbles" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "scribbles", "--help"])
    scribble_help = capsys.readouterr().out
    assert "--model" in scribble_help and "--layout" not in scribble_help and "--rounds" not in scribble_help
    with pytest.raises(SystemExit):
        main(["bench", "imagelabel", "--help"])
    imagelabel_help = capsys.readouterr().out
    assert "--layout" in imagelabel_help and "--model" not in imagelabel_help
    assert "unknown ['nothing']" in refused(capsys, "bench", "scribbles", data, "--methods", "nothing",
                                            "--out", tmp_path / "b")
    assert "needs --train-split" in refused(capsys, "bench", "scribbles", data, "--methods", "cohort",
                                            "--out", tmp_path / "b")
    assert not (tmp_path / "b").exists()
