"""``weakseg demo`` end to end on the embedded template (a shortened training run)."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from weakseg.cli import main

pytest.importorskip("slicer", reason="the demo compares with Grow from seeds, which needs slicer-core")


def test_demo_prints_both_methods_and_writes_segmentations_and_overlay(tmp_path, capsys):
    pytest.importorskip("nilearn", reason="the demo case ships in the nilearn wheel (weakseg[demo])")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "15", "--progress", "none"]) == 0
    printed = capsys.readouterr().out
    assert "| WeakSeg (interactive) |" in printed and "| Grow from seeds |" in printed
    for name in ("weakseg.seg.nrrd", "growcut.seg.nrrd", "overlay.png", "image.nii.gz", "scribbles.nii.gz"):
        assert (out / name).is_file(), name
    segmentation = sitk.ReadImage(str(out / "weakseg.seg.nrrd"))
    assert {segmentation.GetMetaData(f"Segment{i}_Name") for i in range(2)} == {"grey matter", "white matter"}
    overlay = sitk.ReadImage(str(out / "overlay.png"))
    image = sitk.ReadImage(str(out / "image.nii.gz"))
    assert overlay.GetWidth() == 4 * image.GetWidth() and overlay.GetNumberOfComponentsPerPixel() == 3
