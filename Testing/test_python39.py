"""WeakSegLib and the Slicer extension run on Python 3.9, the Python of Slicer 5.6 and 5.8.

``vermin`` (installed by the ``test`` extra) computes the minimum Python version each file
needs from its syntax and from the standard-library names it uses; the suite fails on any
file that needs more than 3.9. vermin does not see ``X | Y`` written where Python
evaluates it at run time, so a second check covers that: annotations are only left
unevaluated under ``from __future__ import annotations``.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
CHECKED_FOLDERS = (REPOSITORY / "WeakSegLib" / "weakseg", REPOSITORY / "WeakSegExtension")
MINIMUM_PYTHON = "3.9"


def verminCommand() -> list[str]:
    """vermin from this Python when installed in it, else from PATH."""
    if importlib.util.find_spec("vermin") is not None:
        return [sys.executable, "-c", "import vermin; vermin.main()"]
    found = shutil.which("vermin")
    if found is None:
        pytest.fail("vermin is not installed; install the test extra: pip install -e 'WeakSegLib[test]'")
    return [found]


def runVermin(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*verminCommand(), f"-t={MINIMUM_PYTHON}-", "--violations", "--no-tips", *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )


def test_vermin_finds_nothing_that_needs_more_than_python_3_9():
    result = runVermin(*CHECKED_FOLDERS)
    assert result.returncode == 0, f"vermin found code that needs Python > {MINIMUM_PYTHON}:\n{result.stdout}{result.stderr}"
    assert "Minimum required versions: 3.9" in result.stdout or "Minimum required versions: 3.0" in result.stdout


def test_vermin_check_fails_on_code_that_needs_python_3_10(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("def pairs(a, b):\n    return list(zip(a, b, strict=True))\n")
    result = runVermin(newer)
    assert result.returncode != 0
    assert "3.10" in result.stdout


def pythonFiles() -> list[Path]:
    return sorted(path for folder in CHECKED_FOLDERS for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def hasPostponedAnnotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__" and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )


def annotations(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
                if argument is not None and argument.annotation is not None:
                    yield argument.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


BUILTIN_TYPES = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)}


def isTypeExpression(node: ast.AST) -> bool:
    """``None``, a builtin type name or a subscripted generic: operands that make ``|`` a type union."""
    return (
        (isinstance(node, ast.Constant) and node.value is None)
        or (isinstance(node, ast.Name) and node.id in BUILTIN_TYPES)
        or isinstance(node, ast.Subscript)
    )


def runtimeUnions(path: Path) -> list[str]:
    """Lines where ``X | Y`` of types is evaluated when the module runs (needs Python 3.10)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    if not hasPostponedAnnotations(tree):
        for annotation in annotations(tree):
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                found.append(f"{path.name}:{annotation.lineno} annotation with '|' and no 'from __future__ import annotations'")
    annotationNodes = {id(n) for annotation in annotations(tree) for n in ast.walk(annotation)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotationNodes
                and (isTypeExpression(node.left) or isTypeExpression(node.right))):
            found.append(f"{path.name}:{node.lineno} type union '|' evaluated at run time")
    return found


def test_no_type_union_is_evaluated_at_run_time():
    assert [line for path in pythonFiles() for line in runtimeUnions(path)] == []


def test_the_union_check_finds_both_kinds(tmp_path):
    module = tmp_path / "unions.py"
    module.write_text("Alias = int | None\n\ndef f(x: str | None) -> None:\n    return None\n")
    assert len(runtimeUnions(module)) == 2
    module.write_text("from __future__ import annotations\n\ndef f(x: str | None, mask=1 | 2) -> None:\n    return None\n")
    assert runtimeUnions(module) == []


def python39() -> str | None:
    """A working Python 3.9 interpreter on this machine (PATH or pyenv), or None."""
    candidates = [shutil.which("python3.9"), *map(str, sorted(Path.home().glob(".pyenv/versions/3.9*/bin/python3.9")))]
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 9)":
            return candidate
    return None


def test_python_3_9_compiles_every_file_and_imports_the_extension_helpers_that_need_no_slicer():
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    script = (
        "import sys\n"
        f"for path in {[str(p) for p in pythonFiles()]!r}:\n"
        "    compile(open(path, encoding='utf-8').read(), path, 'exec')\n"
        f"sys.path.insert(0, {str(REPOSITORY / 'WeakSegExtension')!r})\n"
        "import WeakSegExtensionLib.runner, WeakSegExtensionLib.jobs, WeakSegExtensionLib.install, WeakSegExtensionLib.segment_editor\n"
        "import WeakSegExtensionLib.method_menus\n"
    )
    result = subprocess.run([interpreter, "-B", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_library_declares_python_3_9_in_its_metadata():
    text = (REPOSITORY / "WeakSegLib" / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.9"$', text, re.M), "requires-python must admit Python 3.9"
    testExtra = re.search(r"^test = \[(.*)\]$", text, re.M).group(1)
    assert '"vermin' in testExtra, "the test extra must install vermin"
