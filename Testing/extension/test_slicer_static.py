"""Static checks of the extension: CMake listings, the catalog entry, the .ui file, the widget's use of it.

None of these needs Slicer; they read the files as text, XML, JSON or Python syntax trees.
"""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
EXTENSION = REPOSITORY / "WeakSegExtension"
MODULE_FILE = EXTENSION / "WeakSeg.py"
UI_FILE = EXTENSION / "Resources" / "UI" / "WeakSeg.ui"
LIBRARY = EXTENSION / "WeakSegExtensionLib"
CATALOG_ENTRY = REPOSITORY / "ExtensionsIndex" / "WeakSeg.json"
CATALOG_SCHEMA = REPOSITORY.parent / "shared" / "reference" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
MAXIMUM_LINES = 600


def cmakeList(text: str, variable: str) -> list[str]:
    """The items of ``set(VARIABLE item item ...)`` with ``${MODULE_NAME}`` substituted."""
    moduleName = re.search(r"set\(MODULE_NAME\s+(\S+)\)", text).group(1)
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [item.replace("${MODULE_NAME}", moduleName) for item in body.split()]


def uiTree() -> ElementTree.Element:
    return ElementTree.parse(UI_FILE).getroot()


def test_every_file_listed_in_the_module_cmake_exists_and_every_module_file_is_listed():
    text = (EXTENSION / "CMakeLists.txt").read_text()
    scripts, resources = cmakeList(text, "MODULE_PYTHON_SCRIPTS"), cmakeList(text, "MODULE_PYTHON_RESOURCES")
    for item in scripts + resources:
        assert (EXTENSION / item).is_file(), f"{item} is listed in CMakeLists.txt but missing"
    pythonFiles = {p.relative_to(EXTENSION).as_posix() for p in EXTENSION.rglob("*.py") if "__pycache__" not in p.parts}
    assert pythonFiles == set(scripts)
    resourceFiles = {p.relative_to(EXTENSION).as_posix() for p in (EXTENSION / "Resources").rglob("*") if p.is_file()}
    assert resourceFiles == set(resources)
    assert re.search(r"slicerMacroBuildScriptedModule\(.*WITH_GENERIC_TESTS", text, re.S)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_top_level_cmake_describes_the_extension():
    text = (REPOSITORY / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(WeakSeg\)", text, re.M)
    for variable in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf'set\(EXTENSION_{variable} "[^"]+"', text), f"EXTENSION_{variable} is not set"
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(WeakSegExtension)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text
    for variable in ("ICONURL", "SCREENSHOTURLS"):
        for url in cmakeValue(text, f"EXTENSION_{variable}").split():
            assert url.startswith(cmakeValue(text, "WEAKSEG_REPOSITORY_URL") + "/raw/main/"), url
            path = url.split("/raw/main/", 1)[1]
            assert (REPOSITORY / path).is_file(), f"EXTENSION_{variable} points at {path}, which is not in the repository"


def cmakeValue(text: str, variable: str) -> str:
    """The quoted value of ``set(VARIABLE "...")`` with the ``${...}`` variables set before it substituted."""
    value = re.search(rf'set\({variable} "([^"]+)"', text).group(1)
    return re.sub(r"\$\{(\w+)\}", lambda reference: cmakeValue(text, reference.group(1)), value)


def test_repository_url_is_one_value_shared_by_cmake_and_the_catalog_entry():
    text = (REPOSITORY / "CMakeLists.txt").read_text()
    repositoryUrl = cmakeValue(text, "WEAKSEG_REPOSITORY_URL")
    assert cmakeValue(text, "EXTENSION_HOMEPAGE").startswith(repositoryUrl)
    assert json.loads(CATALOG_ENTRY.read_text())["scm_url"] == repositoryUrl
    assert len(re.findall(r"https?://", text)) == 1, "another URL is written out in CMakeLists.txt"


def validate(value, schema: dict, where: str = "entry") -> list[str]:
    """The JSON-schema keywords the catalog schema uses: type, required, additionalProperties, enum, items, bounds."""
    problems = []
    types = {"object": dict, "string": str, "boolean": bool, "array": list, "integer": int}
    expected = schema.get("type")
    if expected and not (isinstance(value, types[expected]) and not (expected == "integer" and isinstance(value, bool))):
        return [f"{where}: {value!r} is not of type {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{where}: {value!r} is out of range")
    if expected == "object":
        properties = schema.get("properties", {})
        problems += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
        if schema.get("additionalProperties") is False:
            problems += [f"{where}: unknown property {key}" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                problems += validate(item, properties[key], f"{where}.{key}")
    if expected == "array" and "items" in schema:
        for index, item in enumerate(value):
            problems += validate(item, schema["items"], f"{where}[{index}]")
    return problems


@pytest.mark.skipif(not CATALOG_SCHEMA.is_file(), reason="../shared/reference is not beside the checkout")
def test_catalog_entry_follows_the_extensions_index_schema():
    entry, schema = json.loads(CATALOG_ENTRY.read_text()), json.loads(CATALOG_SCHEMA.read_text())
    assert validate(entry, schema) == []
    assert entry["category"] == "Segmentation"
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert validate({"category": "x", "scm_url": "y", "tier": 9}, schema) != []  # the hand check does reject


@pytest.mark.skipif(not CATALOG_SCHEMA.is_file(), reason="../shared/reference is not beside the checkout")
def test_catalog_entry_passes_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(CATALOG_ENTRY.read_text()), json.loads(CATALOG_SCHEMA.read_text()))


def test_ui_file_is_valid_qt_designer_xml():
    root = uiTree()
    assert root.tag == "ui" and root.get("version") == "4.0"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and root.findtext("class") == top.get("name")
    declared = {custom.findtext("class"): custom for custom in root.iter("customwidget")}
    for custom in declared.values():
        assert custom.findtext("extends") and custom.findtext("header")
    qtClasses = {"QLabel", "QLineEdit", "QPushButton", "QComboBox", "QCheckBox", "QSpinBox", "QTableWidget", "QFrame",
                 "QProgressBar", "QWidget"}
    names = []
    for widget in root.iter("widget"):
        assert widget.get("class") in qtClasses | set(declared), f"{widget.get('class')} is not declared"
        names.append(widget.get("name"))
    assert len(names) == len(set(names)), "widget names must be unique"
    for connection in root.iter("connection"):
        assert connection.findtext("sender") in names and connection.findtext("receiver") in names


def moduleTree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def test_every_ui_widget_the_widget_code_uses_exists_in_the_ui_file():
    used = {
        node.attr
        for node in ast.walk(moduleTree())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }
    names = {widget.get("name") for widget in uiTree().iter("widget")}
    assert used, "the widget should use self.ui"
    assert used - names == set()


def test_parameter_names_in_the_ui_file_are_fields_of_the_parameter_node():
    parameterClass = next(n for n in ast.walk(moduleTree()) if isinstance(n, ast.ClassDef) and n.name == "WeakSegParameterNode")
    fields = {statement.target.id for statement in parameterClass.body if isinstance(statement, ast.AnnAssign)}
    bound = {
        prop.findtext("string")
        for prop in uiTree().iter("property")
        if prop.get("name") == "SlicerParameterName"
    }
    assert bound and bound <= fields


def test_module_file_holds_module_widget_and_test_and_takes_the_logic_from_the_library():
    classes = {node.name for node in moduleTree().body if isinstance(node, ast.ClassDef)}
    assert {"WeakSeg", "WeakSegWidget", "WeakSegTest"} <= classes
    assert "WeakSegLogic" not in classes
    assert "from WeakSegExtensionLib.logic import WeakSegLogic" in MODULE_FILE.read_text()


def test_the_method_menus_are_not_bound_to_a_fixed_choice_list():
    """Slicer's combo-box connector fills a combo box from a ``Choice`` annotation fixed when the class is
    defined; the method menus come from the library instead (``method_menus``), so neither is bound by it."""
    menus = {"methodComboBox": "method", "trainingMethodComboBox": "trainingMethod"}
    for widget in uiTree().iter("widget"):
        if widget.get("name") in menus:
            assert widget.get("class") == "QComboBox"
            assert [p for p in widget.iter("property") if p.get("name") == "SlicerParameterName"] == [], widget.get("name")
    parameterClass = next(n for n in ast.walk(moduleTree()) if isinstance(n, ast.ClassDef) and n.name == "WeakSegParameterNode")
    annotations = {s.target.id: ast.unparse(s.annotation) for s in parameterClass.body if isinstance(s, ast.AnnAssign)}
    for name in menus.values():
        assert annotations[name].startswith("Annotated[str") and "Choice" not in annotations[name], annotations[name]
    imported = {alias.name for n in ast.walk(moduleTree()) if isinstance(n, ast.ImportFrom) for alias in n.names}
    assert "Choice" not in imported


def test_no_python_file_of_the_extension_is_longer_than_600_lines():
    for path in EXTENSION.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= MAXIMUM_LINES, f"{path.name} is too long"


def importedModules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_helper_package_has_no_qt_and_the_bridge_no_slicer_util_or_modules():
    for path in LIBRARY.glob("*.py"):
        assert not importedModules(path) & {"qt", "ctk", "PythonQt", "PySide6", "PyQt5"}, f"{path.name} imports Qt"
    bridge = (LIBRARY / "mrml_bridge.py").read_text()
    assert "slicer.util" not in bridge and "slicer.modules" not in bridge
    assert importedModules(LIBRARY / "runner.py") <= {"__future__", "ctypes", "os", "queue", "re", "signal", "subprocess", "sys",
                                                       "threading", "time", "collections", "dataclasses", "typing"}


def test_the_licence_file_at_the_root_is_the_one_the_library_declares():
    licence = (REPOSITORY / "LICENSE.txt").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert 'license = {text = "Apache-2.0"}' in (REPOSITORY / "WeakSegLib" / "pyproject.toml").read_text()
