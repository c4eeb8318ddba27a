"""``weakseg demo`` end to end on the embedded template (a shortened training run), and its figure."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from weakseg.figure import titled_figure


def test_demo_prints_its_table_after_the_progress_bar_and_writes_a_readable_overlay(tmp_path):
    pytest.importorskip("slicer", reason="the demo compares with Grow from seeds, which needs slicer-core")
    pytest.importorskip("nilearn", reason="the demo case ships in the nilearn wheel (weakseg[demo])")
    out = tmp_path / "demo"
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                       PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    finished = subprocess.run([sys.executable, "-m", "weakseg", "demo", "--out", str(out), "--steps", "15"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                              env=environment)
    assert finished.returncode == 0, finished.stdout
    lines = finished.stdout.split("\n")
    table = [index for index, line in enumerate(lines) if "| method |" in line]
    assert len(table) == 1 and lines[table[0]].startswith("| method |"), "the table shares a line with the bar"
    assert not any("%|" in line for line in lines[table[0]:]), "progress output after the table"
    assert lines[table[0] + 2].startswith("| WeakSeg (interactive) |")
    assert lines[table[0] + 3].startswith("| Grow from seeds |")
    for name in ("weakseg.seg.nrrd", "growcut.seg.nrrd", "overlay.png", "image.nii.gz", "scribbles.nii.gz"):
        assert (out / name).is_file(), name
    segmentation = sitk.ReadImage(str(out / "weakseg.seg.nrrd"))
    assert {segmentation.GetMetaData(f"Segment{i}_Name") for i in range(2)} == {"grey matter", "white matter"}
    overlay = sitk.ReadImage(str(out / "overlay.png"))
    assert overlay.GetWidth() >= 800 and overlay.GetNumberOfComponentsPerPixel() == 3


def test_titled_figure_enlarges_panels_and_draws_titles_and_legend():
    panel = np.zeros((20, 30, 3), dtype=np.uint8)
    panel[:, :, 1] = 200
    figure = titled_figure([("first", panel), ("second", panel)], [("class A", (1.0, 0.0, 0.0))],
                           heading="heading", footnote="note", min_width=800)
    assert figure.dtype == np.uint8 and figure.shape[1] >= 800 and figure.shape[2] == 3
    green = np.all(figure == (0, 200, 0), axis=-1)
    rows, columns = np.nonzero(green)
    assert columns.max() - columns.min() + 1 > 2 * 30 * 10, "panels are not enlarged"
    dark_text = np.all(figure < 80, axis=-1) & ~green
    assert dark_text[: rows.min()].sum() > 100, "no title or heading above the panels"
    assert np.all(figure == (255, 0, 0), axis=-1)[rows.max():].sum() > 50, "no legend swatch below the panels"
