"""Fixtures for the Slicer-side tests.

The extension's helper package (``WeakSegExtension/WeakSegExtensionLib``) is put on
``sys.path`` the way Slicer does it for a scripted module. Tests that need MRML ask for the
``scene`` fixture, which skips cleanly when slicer-core is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
EXTENSION_DIRECTORY = REPOSITORY / "WeakSegExtension"
sys.path.insert(0, str(EXTENSION_DIRECTORY))


@pytest.fixture
def slicerModule():
    return pytest.importorskip("slicer", reason="slicer-core is not installed")


@pytest.fixture
def scene(slicerModule):
    from WeakSegExtensionLib import mrml_bridge

    mrml_bridge.registerSegmentationConverterRules()
    return slicerModule.vtkMRMLScene()
