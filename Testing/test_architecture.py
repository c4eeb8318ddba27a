"""The library's layering: every module imports, no import cycle, only the CLI reaches the command layer,
no module over 500 lines, and the method registry is the one source of method names."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import weakseg
from weakseg.bench.scribbles import bench_method_names
from weakseg.cli import build_parser, main
from weakseg.methods.registry import METHODS, accepted_names, method_names
from weakseg.methods.spec import PER_IMAGE, SCRIBBLES, TRAINED

PACKAGE = Path(weakseg.__file__).parent
COMMAND_LAYER = {"weakseg.cli", "weakseg.commands", "weakseg.cli_checks"}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
IMPORTABLE = sorted(name for name in MODULES if name != "weakseg.__main__")  # __main__ runs the command line


def _runtime_imports(path: Path) -> set[str]:
    """The weakseg modules a module imports at run time (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("weakseg"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("weakseg"))
    return {name for name in found if name in MODULES}


GRAPH = {name: _runtime_imports(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("name", IMPORTABLE)
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycle():
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [name, target])
            elif target not in state:
                visit(target, trail + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == [], cycles


def test_only_the_command_line_imports_the_command_layer():
    offenders = {name: sorted(GRAPH[name] & COMMAND_LAYER) for name in GRAPH
                 if name not in COMMAND_LAYER and name != "weakseg.__main__" and GRAPH[name] & COMMAND_LAYER}
    assert offenders == {}


def test_no_module_is_longer_than_500_lines():
    long = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {name: count for name, count in long.items() if count > MAX_LINES} == {}


def test_listing_methods_imports_no_torch():
    code = ("import sys, weakseg.cli as cli; cli.build_parser(); import weakseg.methods.registry as r; "
            "r.describe_methods(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _choices(parser, *path: str, option: str):
    for name in path:
        sub = next(action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return next(action for action in parser._actions if option in action.option_strings).choices


def test_the_registry_is_the_single_source_of_method_names(capsys):
    parser = build_parser()
    assert tuple(_choices(parser, "segment", option="--method")) == accepted_names(PER_IMAGE)
    assert tuple(_choices(parser, "train", option="--method")) == method_names(TRAINED)
    scribble_learners = [spec for spec in METHODS if SCRIBBLES in spec.learns_from]
    expected_rows = ([name for spec in scribble_learners if spec.usage == PER_IMAGE for name in (spec.name,) + spec.aliases]
                     + [spec.name for spec in scribble_learners if spec.usage == TRAINED]
                     + [spec.name + "+scribbles" for spec in scribble_learners if spec.usage == TRAINED and spec.adapt])
    assert list(bench_method_names()) == expected_rows
    assert main(["methods", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["methods"]
    assert [entry["name"] for entry in listed] == list(method_names())
    assert {entry["name"]: entry["learns_from"] for entry in listed} == {spec.name: list(spec.learns_from) for spec in METHODS}


def test_help_shows_each_methods_true_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse may wrap after a hyphen
    maag = next(spec for spec in METHODS if spec.name == "maag")
    assert maag.make_settings().adversarial_weight == 1.0
    assert ("image critics; maag: relative to the supervised term (default maag, cycle: 1; maag --variant paper: 0.2; "
            "transfer: 0.01; collaborative: 0.05)") in text
    assert ("(default cohort, imagelabel, transfer, collaborative, shape-gan, cycle: 0.002; pce, maag: 0.001; "
            "maag --variant paper: 0.0001)") in text


def test_every_trained_methods_predict_takes_the_post_processing_switch():
    from weakseg.methods.spec import TRAINED

    for spec in METHODS:
        if spec.usage == TRAINED:
            parameters = inspect.signature(spec.function("predict")).parameters
            assert "post_processing" in parameters, f"{spec.name}: predict takes no post_processing"
