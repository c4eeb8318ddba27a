"""The extension reads the library's contract: one unlabelled code, one set of exit codes and names,
one label CSV dialect, one palette and terminology, whichever side writes a result."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from WeakSegExtensionLib import library_contract, runner
from weakseg import contract

REPOSITORY = Path(__file__).resolve().parents[2]
STUB_CLI = Path(__file__).resolve().parent / "contract_cli.py"


def test_the_extension_reads_the_file_the_library_ships():
    assert library_contract.contractPath().read_bytes() == contract.CONTRACT_PATH.read_bytes()
    assert (library_contract.UNLABELLED, library_contract.BACKGROUND, library_contract.HEALTHY) == (
        contract.UNLABELLED, contract.BACKGROUND, contract.HEALTHY)
    assert library_contract.LABEL_CSV_COLUMNS == contract.LABEL_CSV_COLUMNS


def test_the_runner_speaks_the_contracts_exit_codes_and_error_prefix():
    # the runner keeps no import beyond the standard library, so it states them; they must agree
    assert (runner.EXIT_OK, runner.EXIT_BAD_INPUT, runner.EXIT_CANCELLED) == (
        contract.EXIT_OK, contract.EXIT_BAD_INPUT, contract.EXIT_CANCELLED)
    assert runner.ERROR_PREFIX == contract.ERROR_PREFIX


@pytest.mark.parametrize("name, code", [("LV", 1), ("Myo", 2), ("RV", 3), ("tumour", 1), ("liver", 4), ("lesion", 9)])
def test_a_class_gets_the_same_colour_and_terminology_on_both_sides(name, code):
    assert library_contract.classColor(name, code) == contract.class_color(name, code)
    library_side = contract.class_terminology(name)
    extension_side = library_contract.classTerminology(name)
    if library_side is None:
        assert extension_side is None
    else:
        assert extension_side[1:] == (library_side.category_scheme, library_side.category_code,
                                      library_side.category_meaning, library_side.type_scheme, library_side.type_code,
                                      library_side.type_meaning)


def test_the_command_line_writes_the_colours_slicer_shows(tmp_path):
    from weakseg.results import write_result

    reference = sitk.GetImageFromArray(np.zeros((2, 4, 5), dtype=np.float32))
    labels = np.zeros((2, 4, 5), dtype=np.uint8)
    labels[0, :2] = 1
    labels[1, :2] = 2
    write_result(tmp_path / "r.seg.nrrd", labels, reference, ["background", "LV", "scar"])
    header = sitk.ReadImage(str(tmp_path / "r.seg.nrrd"))
    for index, (name, code) in enumerate((("LV", 1), ("scar", 2))):
        written = tuple(float(value) for value in header.GetMetaData(f"Segment{index}_Color").split())
        assert np.allclose(written, library_contract.classColor(name, code), atol=1e-5)


def _tiny_cohort(folder: Path) -> None:
    from synthetic_data import write_case

    folder.mkdir()
    for index in range(2):
        write_case(folder, f"case{index + 1:02d}", seed=index)
    with open(folder / "image_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(contract.LABEL_CSV_COLUMNS)
        writer.writerows([["case01", "bright", "0", "2"], ["case01", "healthy", "3", "3"], ["case02", "healthy", "", ""]])


def _run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("arguments, outputs", [
    (["segment", "{data}/case01_image.nii.gz", "--scribbles", "{data}/case01_scribble.nii.gz", "--out", "{out}/result.nrrd",
      "--classes", "background,bright,dim", "--method", "growcut"], ["result.nrrd"]),
    (["train", "{data}", "--out", "{out}/model.pt", "--classes", "background,bright,dim", "--method", "cohort"],
     ["model.pt"]),
    (["train", "{data}", "--out", "{out}/model.pt", "--classes", "background,bright,dim", "--method", "imagelabel",
      "--image-labels", "{data}/image_labels.csv"], ["model.pt"]),
])
def test_the_stand_in_and_the_real_command_line_accept_the_same_arguments_and_write_the_same_files(
        tmp_path, arguments, outputs):
    if arguments[-1] == "growcut":
        pytest.importorskip("slicer", reason="growcut needs slicer-core")
    data = tmp_path / "data"
    _tiny_cohort(data)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPOSITORY / "WeakSegLib"))
    # the real command line gets tiny settings so that it trains in seconds; the stand-in must accept them too
    quick = ["--steps", "2", "--image-size", "32", "--channels", "4,8", "--batch-size", "2"] if arguments[0] == "train" else []
    written = {}
    for side, command in (("stand-in", [sys.executable, str(STUB_CLI)]), ("real", [sys.executable, "-m", "weakseg"])):
        out = tmp_path / side
        out.mkdir()
        argv = [value.format(data=data, out=out) for value in arguments] + ["--progress", "lines", *quick]
        result = _run(command + argv, env)
        assert result.returncode == 0, (side, result.stderr[-2000:])
        written[side] = sorted(path.name for path in out.iterdir())
    assert written["stand-in"] == written["real"] == outputs


def test_the_panels_built_in_method_lists_are_methods_of_the_library():
    from WeakSegExtensionLib.method_menus import FALLBACK_CATALOG
    from weakseg.methods.registry import method_names

    for usage in ("per-image", "trained"):
        assert {entry["name"] for entry in FALLBACK_CATALOG if entry["usage"] == usage} <= set(method_names(usage))


def test_the_logic_asks_the_command_line_which_methods_exist(slicerModule, tmp_path):
    from WeakSegExtensionLib.errors import WeakSegInputError
    from WeakSegExtensionLib.logic import WeakSegLogic
    from weakseg.methods.registry import method_names

    logic = WeakSegLogic(scene=slicerModule.vtkMRMLScene(), cliCommand=[sys.executable, str(STUB_CLI)],
                         temporaryDirectory=str(tmp_path))
    assert [entry["name"] for entry in logic.methodCatalog()] == list(method_names())
    assert logic.method("weakseg", "per-image")["name"] == "interactive"
    with pytest.raises(WeakSegInputError, match="unknown training method 'nothing'"):
        logic.method("nothing", "trained")


def test_the_extension_names_a_kept_former_file_as_the_library_does(tmp_path):
    from WeakSegExtensionLib.remote import keepFormerFile
    from weakseg.atomic import keep_former_file

    for folder in ("library", "extension"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scan.seg.nrrd").write_bytes(b"current")
        (tmp_path / folder / "scan.previous.seg.nrrd").write_bytes(b"kept before")
    kept = [keep_former_file(tmp_path / "library" / "scan.seg.nrrd"),
            keepFormerFile(tmp_path / "extension" / "scan.seg.nrrd")]
    assert [path.name for path in kept] == ["scan.previous-2.seg.nrrd"] * 2
    assert all(path.read_bytes() == b"current" for path in kept)
    assert keepFormerFile(tmp_path / "extension" / "absent.pt") is None
