"""Fixtures shared by the library tests (helpers live in synthetic_data.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from synthetic_data import SyntheticCase, write_case

# The weakseg command sets torch's thread count from OMP_NUM_THREADS (else from the free cores);
# tests run it in this process and in subprocesses, all with the one thread the suite uses.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """CI has two cores: one thread per test process keeps timings steady."""
    torch.set_num_threads(1)


@pytest.fixture
def synthetic_case(tmp_path: Path) -> SyntheticCase:
    """One blob volume written as ``case_image/_scribble/_label.nii.gz`` in ``tmp_path``."""
    return write_case(tmp_path, "case01", seed=0)
