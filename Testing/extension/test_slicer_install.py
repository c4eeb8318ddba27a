"""First-use installation (WeakSegExtensionLib.install) with recording stand-ins for pip and PyTorchUtils."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from WeakSegExtensionLib import install
from WeakSegExtensionLib.errors import WeakSegDependencyError

EXTENSION = Path(__file__).resolve().parents[2] / "WeakSegExtension"


def test_missing_packages_lists_what_cannot_be_imported_with_the_library_last():
    present = {"numpy", "SimpleITK"}
    missing = install.missingPackages(lambda name: object() if name in present else None)
    assert missing == ["torch", "skimage", "tqdm", "weakseg"]
    assert install.missingPackages(lambda name: object()) == []


def test_torch_goes_through_pytorchutils_and_the_library_without_dependencies():
    calls = []
    source = Path("/opt/Slicer/WeakSegLib")
    install.installPackages(
        ["torch", "skimage", "weakseg"],
        pipInstall=lambda arguments: calls.append(("pip", arguments)),
        installTorch=lambda requirement: calls.append(("torch", requirement)) or True,
        librarySource=source,
    )
    assert calls == [
        ("torch", install.TORCH_REQUIREMENT),
        ("pip", [install.REQUIRED_PACKAGES["skimage"]]),
        ("pip", ["--no-deps", str(source)]),
    ]


def test_without_pytorchutils_torch_comes_from_pip_and_the_library_from_the_index():
    calls = []
    install.installPackages(["torch", "weakseg"], pipInstall=calls.append)
    assert calls == [[install.REQUIRED_PACKAGES["torch"]], ["--no-deps", install.LIBRARY_REQUIREMENT]]


def test_refused_torch_install_is_an_error():
    with pytest.raises(WeakSegDependencyError, match="PyTorch was not installed"):
        install.installPackages(["torch"], pipInstall=lambda arguments: None, installTorch=lambda requirement: False)


def test_bundled_library_is_found_beside_the_module_in_the_source_tree_and_inside_it_when_installed(tmp_path):
    assert install.bundledLibrarySource(EXTENSION) == EXTENSION.parent / "WeakSegLib"
    (tmp_path / "WeakSegLib").mkdir()
    (tmp_path / "WeakSegLib" / "pyproject.toml").write_text("[project]\nname = 'weakseg'\n")
    assert install.bundledLibrarySource(tmp_path) == tmp_path / "WeakSegLib"
    assert install.bundledLibrarySource(tmp_path / "elsewhere" / "module") is None


def test_importing_the_install_module_runs_nothing():
    tree = ast.parse((EXTENSION / "WeakSegExtensionLib" / "install.py").read_text())
    for statement in tree.body:
        assert isinstance(statement, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.Expr)), ast.dump(statement)
        if isinstance(statement, ast.Expr):
            assert isinstance(statement.value, ast.Constant)  # the module docstring only


def test_library_sources_are_staged_without_build_leftovers(tmp_path):
    source = tmp_path / "source"
    (source / "weakseg" / "__pycache__").mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\nname = 'weakseg'\n")
    (source / "weakseg" / "__init__.py").write_text("")
    (source / "weakseg.egg-info").mkdir()
    staged = install.stageLibrarySource(source, tmp_path / "scratch")
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*")) == ["pyproject.toml", "weakseg", "weakseg/__init__.py"]
