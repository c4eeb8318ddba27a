"""The module's own Slicer self-test (``WeakSegTest`` in ``WeakSeg.py``), run here outside the application.

``WeakSeg.py`` imports Qt and Slicer's module framework, which slicer-core does not have. For
the few names it takes from them (``qt``, ``slicer.parameterNodeWrapper``,
``slicer.ScriptedLoadableModule``) stand-ins are put in ``sys.modules`` while the file is
imported; ``slicer.mrmlScene`` is a real ``vtkMRMLScene`` and ``slicer.app`` a stand-in with a
temporary folder. The self-test's logic tests then run unchanged against the real command
line: what a person with Slicer runs with *Reload and Test*, less the panel test, which needs
the application (its steps are checked statically in ``test_slicer_compat.py``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
import unittest
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="slicer-core is not installed")

import WeakSegExtensionLib.logic  # noqa: E402,F401  (imported before the stand-ins, as the other tests see it)

MODULE_FILE = Path(__file__).resolve().parents[2] / "WeakSegExtension" / "WeakSeg.py"


def standInModules() -> dict[str, types.ModuleType]:
    """Modules with the names WeakSeg.py imports from Qt and Slicer's scripted-module framework."""
    qt = types.ModuleType("qt")
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Default = lambda value: ("default", value)
    framework = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            print(message)

    framework.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {})
    framework.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    framework.ScriptedLoadableModuleLogic = type("ScriptedLoadableModuleLogic", (), {})
    framework.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    return {"qt": qt, "slicer.parameterNodeWrapper": wrapper, "slicer.ScriptedLoadableModule": framework}


@pytest.fixture
def selfTest(monkeypatch, scene, tmp_path):
    """A WeakSegTest instance whose Slicer is slicer-core with a real scene."""
    import slicer

    completed = subprocess.run([sys.executable, "-m", "weakseg", "segment", "--help"], capture_output=True, timeout=120)
    if completed.returncode != 0:
        pytest.skip("`python -m weakseg segment` is not available")
    for name, module in standInModules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(temporaryPath=str(tmp_path), processEvents=lambda: None),
                        raising=False)
    spec = importlib.util.spec_from_file_location("WeakSegSelfTestModule", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    test = module.WeakSegTest()
    test.setUp()
    return test


def test_self_test_scribbles_growcut_weakseg_preview_apply_undo_reapply(selfTest):
    selfTest.test_SegmentPreviewApplyUndo()


def test_self_test_cancel(selfTest):
    selfTest.test_Cancel()


def test_self_test_image_labels_csv(selfTest):
    selfTest.test_ImageLabelsCsv()


def test_self_test_runs_every_test_it_defines(selfTest):
    defined = {name for name in type(selfTest).__dict__ if name.startswith("test_")}
    assert defined == {"test_SegmentPreviewApplyUndo", "test_Cancel", "test_Widget", "test_ImageLabelsCsv"}
    runTest = Path(MODULE_FILE).read_text(encoding="utf-8").split("def runTest(self):", 1)[1].split("def ", 1)[0]
    assert all(f"self.{name}" in runTest for name in defined)
