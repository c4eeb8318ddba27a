"""The README's quick start and Python console examples run as written.

Code blocks are taken from README.md by their ``<!-- readme-test: NAME -->`` marker, so the
documentation cannot drift from what works. Two things are not re-run: the install line
(checked instead against ``WeakSegLib/install.sh``: the script exists and makes the virtual
environment the README activates; reinstalling torch in a test would take minutes) and the
full-length demo training (the test adds ``--steps 15`` to ``weakseg demo``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
INSTALL_LINE = "bash WeakSegLib/install.sh"


def readme_block(name: str) -> str:
    """The fenced code block that follows ``<!-- readme-test: name -->`` in README.md."""
    found = re.search(rf"<!-- readme-test: {name} -->\s*```[a-z]*\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    assert found, f"README.md has no code block marked readme-test: {name}"
    return found.group(1)


def environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join(path for path in sys.path if path))


def test_quick_start_install_line_makes_the_environment_the_readme_activates():
    lines = [line.split("#")[0].strip() for line in readme_block("quick-start").splitlines()]
    assert lines[0] == INSTALL_LINE
    assert "source .venv/bin/activate" in lines[1:]
    script = (REPOSITORY / "WeakSegLib" / "install.sh").read_text(encoding="utf-8")
    assert 'venv="${WEAKSEG_VENV:-$root/.venv}"' in script  # .venv at the repository root by default
    assert '-m venv "$venv"' in script and "source $venv/bin/activate" in script


def test_quick_start_runs_as_written_and_the_demo_writes_its_outputs(tmp_path):
    pytest.importorskip("slicer", reason="the demo compares with Grow from seeds, which needs slicer-core")
    pytest.importorskip("nilearn", reason="the demo case ships in the nilearn wheel (weakseg[demo])")
    environment_folder = Path(sys.prefix)
    if not (environment_folder / "bin" / "activate").is_file() or not (environment_folder / "bin" / "weakseg").is_file():
        pytest.skip("the tests do not run in a virtual environment with the weakseg command")
    (tmp_path / ".venv").symlink_to(environment_folder)  # what install.sh made, as seen from the repository root
    commands = [line for line in readme_block("quick-start").splitlines() if not line.startswith(INSTALL_LINE)]
    script = "set -e\n" + "\n".join(re.sub(r"^weakseg demo\b", "weakseg demo --steps 15", line) for line in commands)
    finished = subprocess.run(["bash", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              encoding="utf-8", errors="replace", timeout=600, env=environment())
    assert finished.returncode == 0, finished.stdout
    lines = finished.stdout.split("\n")
    table = [index for index, line in enumerate(lines) if "| method |" in line]
    assert len(table) == 1 and lines[table[0]].startswith("| method |"), "the table shares a line with the progress bar"
    assert not any("%|" in line for line in lines[table[0]:]), "progress output after the table"
    assert lines[table[0] + 2].startswith("| WeakSeg (interactive) |")
    assert lines[table[0] + 3].startswith("| Grow from seeds |")
    out = tmp_path / "weakseg-demo"
    for name in ("weakseg.seg.nrrd", "growcut.seg.nrrd", "overlay.png", "image.nii.gz", "scribbles.nii.gz"):
        assert (out / name).is_file(), name
    segmentation = sitk.ReadImage(str(out / "weakseg.seg.nrrd"))
    assert {segmentation.GetMetaData(f"Segment{i}_Name") for i in range(2)} == {"grey matter", "white matter"}
    overlay = sitk.ReadImage(str(out / "overlay.png"))
    assert overlay.GetWidth() >= 800 and overlay.GetNumberOfComponentsPerPixel() == 3


def test_console_examples_run_as_written_on_slicer_core():
    pytest.importorskip("slicer", reason="the console examples need slicer-core")
    pytest.importorskip("nilearn", reason="the sample volume is the demo's template (weakseg[demo])")
    code = readme_block("console-setup") + "\n" + readme_block("console")
    finished = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, encoding="utf-8",
                              timeout=600, env=environment())
    assert finished.returncode == 0, finished.stderr
    printed = finished.stdout.splitlines()
    assert printed.count("['head']") == 2  # applied result, then the cohort model's result
    assert "healthy" in printed
    assert any("mix image labels of the classes ['tumor'] with scribbles or masks of the classes ['head']" in line
               for line in printed)
    assert any(line.strip().startswith("100% ") for line in printed)  # the progress callback was called
