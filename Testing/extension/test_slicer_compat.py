"""The module works in every Slicer it supports: 5.6 (Python 3.9.10) to current.

What each test guards was checked against Slicer's and CTK's own source (read through the
code index, files named below) and against slicer-core 5.13 installed here:

* ``vtkSegment::SetTerminology`` / ``GetTerminology`` / ``HasTerminology``: only from Slicer
  5.10 (added March 2025). ``Libs/vtkSegmentationCore/vtkSegment.h`` of earlier versions has
  ``GetTerminologyEntryTagName()`` and ``SetTag`` but no ``SetTerminology``; the tag is how every
  version stores the terminology entry, so WeakSeg writes the tag.
* ``qMRMLSegmentEditorWidget::setSourceVolumeNode`` (Slicer 5.2+, renamed from
  ``setMasterVolumeNode`` in 2022, so present in 5.6) logs "failed: need to set segment editor
  and segmentation nodes first" when given a volume while no segmentation is selected
  (``Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.cxx``).
* ``setActiveEffect`` is in ``qMRMLSegmentEditorWidget.h`` of every version (Q_INVOKABLE);
  Slicer's Segment Editor module calls ``setActiveEffect(None)`` in ``exit()``.
* ``ctkPathLineEdit::browse`` (``Libs/Widgets/ctkPathLineEdit.cpp``) opens a *save* dialog only
  when the filters hold both ``Files`` and ``Writable``; the filter values are ``QDir::Filter``'s.
* ``vtkSegmentationConverterFactory::GetConverterRules`` returns a ``std::vector`` of smart
  pointers, which VTK 9.2's Python wrapping (Slicer 5.6) may not wrap: WeakSeg guards it.
"""

from __future__ import annotations

import ast
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from WeakSegExtensionLib import segment_editor

REPOSITORY = Path(__file__).resolve().parents[2]
EXTENSION = REPOSITORY / "WeakSegExtension"
MODULE_FILE = EXTENSION / "WeakSeg.py"
UI_FILE = EXTENSION / "Resources" / "UI" / "WeakSeg.ui"
EXTENSION_PYTHON_FILES = sorted([MODULE_FILE, *(EXTENSION / "WeakSegExtensionLib").glob("*.py")])

# Slicer APIs the module must not call unguarded, because Slicer 5.6 lacks them (or may not wrap them):
# name -> (class, first Slicer version that has it, where it was checked).
POST_56_APIS = {
    "SetTerminology": ("vtkSegment", "5.10", "Libs/vtkSegmentationCore/vtkSegment.h"),
    "GetTerminology": ("vtkSegment", "5.10", "Libs/vtkSegmentationCore/vtkSegment.h"),
    "HasTerminology": ("vtkSegment", "5.10", "Libs/vtkSegmentationCore/vtkSegment.h"),
    "GetConverterRules": ("vtkSegmentationConverterFactory", "Python wrapping not certain before VTK 9.3 (Slicer 5.8)",
                          "Libs/vtkSegmentationCore/vtkSegmentationConverterFactory.h"),
}


# ---------------------------------------------------------------------------------------------
# The embedded Segment Editor


class RecordingSegmentEditor:
    """Stands in for qMRMLSegmentEditorWidget with the rules of its C++ source that matter here."""

    def __init__(self):
        self._segmentation = None
        self._source = None
        self.activeEffect = "Paint"
        self.observingViews = True
        self.calls: list[str] = []
        self.criticalMessages: list[str] = []

    def segmentationNode(self):
        return self._segmentation

    def sourceVolumeNode(self):
        return self._source

    def setSegmentationNode(self, node) -> None:
        self.calls.append("setSegmentationNode")
        self._segmentation = node

    def setSourceVolumeNode(self, node) -> None:
        self.calls.append("setSourceVolumeNode")
        if self._segmentation is None:
            if node is not None:
                self.criticalMessages.append("setSourceVolumeNode failed: need to set segment editor and segmentation nodes first")
            return
        self._source = node

    def setActiveEffect(self, effect) -> None:
        self.activeEffect = effect

    def removeViewObservations(self) -> None:
        self.observingViews = False


@pytest.fixture
def volumeAndScribbles(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Volume")
    scribbles = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Volume scribbles")
    return volume, scribbles


def test_without_scribbles_the_source_volume_is_not_set_and_nothing_is_logged(volumeAndScribbles):
    volume, _ = volumeAndScribbles
    editor = RecordingSegmentEditor()
    for _keystroke in range(5):  # typing in Classes modifies the parameter node on every keystroke
        segment_editor.showInEditor(editor, None, volume)
    assert editor.criticalMessages == []
    assert "setSourceVolumeNode" not in editor.calls


def test_with_scribbles_the_segmentation_is_set_before_the_volume_and_each_only_once(volumeAndScribbles):
    volume, scribbles = volumeAndScribbles
    editor = RecordingSegmentEditor()
    for _change in range(3):
        segment_editor.showInEditor(editor, scribbles, volume)
    assert editor.calls == ["setSegmentationNode", "setSourceVolumeNode"]
    assert editor.segmentationNode() is scribbles and editor.sourceVolumeNode() is volume
    assert editor.criticalMessages == []


def test_the_stand_in_editor_reports_the_call_order_slicer_rejects(volumeAndScribbles):
    volume, _ = volumeAndScribbles
    editor = RecordingSegmentEditor()
    editor.setSourceVolumeNode(volume)  # what the module did before: a volume while no segmentation is selected
    assert len(editor.criticalMessages) == 1


def test_leaving_the_module_deactivates_the_effect_and_stops_observing_the_views():
    editor = RecordingSegmentEditor()
    segment_editor.leaveEditor(editor)
    assert editor.activeEffect is None
    assert not editor.observingViews


def functionNamed(tree: ast.AST, className: str, functionName: str) -> ast.FunctionDef:
    classNode = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == className)
    return next(n for n in classNode.body if isinstance(n, ast.FunctionDef) and n.name == functionName)


def calledNames(node: ast.AST) -> set[str]:
    return {
        call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        for call in ast.walk(node) if isinstance(call, ast.Call)
    }


def test_the_widget_goes_through_these_helpers_and_calls_no_editor_setter_itself():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    assert "leaveEditor" in calledNames(functionNamed(tree, "WeakSegWidget", "exit"))
    assert "showInEditor" in calledNames(functionNamed(tree, "WeakSegWidget", "_onParameterNodeModified"))
    widgetCalls = calledNames(next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "WeakSegWidget"))
    assert not widgetCalls & {"setSourceVolumeNode", "setMasterVolumeNode", "removeViewObservations"}


def test_a_failed_install_is_shown_and_does_not_escape_the_button():
    """``slicer.util.tryWithErrorDisplay`` shows the error and then re-raises it (``slicer/util.py``), so the
    widget catches it around the install and returns "not installed" instead of raising out of the click."""
    function = functionNamed(ast.parse(MODULE_FILE.read_text(encoding="utf-8")), "WeakSegWidget", "_ensureDependencies")
    guarded = [
        node for node in ast.walk(function) if isinstance(node, ast.Try)
        and any(isinstance(s, ast.With) and "tryWithErrorDisplay" in ast.unparse(s.items[0].context_expr) for s in node.body)
        and any(h.type is not None and ast.unparse(h.type) == "Exception" and isinstance(h.body[-1], ast.Return)
                for h in node.handlers)
    ]
    assert guarded, "the install in _ensureDependencies must be inside try/except Exception that returns"
    assert "installDependencies" in calledNames(guarded[0])


# ---------------------------------------------------------------------------------------------
# The model file chooser


def test_model_path_chooser_opens_a_save_dialog_so_train_can_name_a_new_file():
    QtCore = pytest.importorskip("PySide6.QtCore", reason="PySide6 is not installed")
    widget = next(w for w in ElementTree.parse(UI_FILE).getroot().iter("widget") if w.get("name") == "modelPathLineEdit")
    assert widget.get("class") == "ctkPathLineEdit"
    filterSet = next(p for p in widget.iter("property") if p.get("name") == "filters").findtext("set")
    names = [part.strip().split("::")[-1] for part in filterSet.split("|")]
    value = 0
    for name in names:
        value |= int(getattr(QtCore.QDir.Filter, name).value)  # ctkPathLineEdit::Filter takes QDir::Filter's values
    files, writable = int(QtCore.QDir.Filter.Files.value), int(QtCore.QDir.Filter.Writable.value)
    assert value & files and value & writable, f"filters {filterSet} make ctkPathLineEdit open an 'open file' dialog"
    assert "*.pt" in "".join(s.text for s in widget.iter("string"))


# ---------------------------------------------------------------------------------------------
# Terminology on segments


def test_result_segment_terminology_is_stored_in_the_tag_every_slicer_version_reads(scene):
    from slicer_test_helpers import addVolume, phantom

    import slicer
    from WeakSegExtensionLib import mrml_bridge

    volume = addVolume(scene, phantom()[0])
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Result")
    geometry = mrml_bridge.volumeGeometry(volume)
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[2:4, 5:9, 5:9] = True
    entry = "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^53085002^Right ventricle~^^~Anatomic codes - DICOM master list~^^~^^"
    segmentId = mrml_bridge.addSegmentFromMask(output, mask, geometry, "RV", (0.7, 0.3, 0.3), terminology=entry)
    emptyId = mrml_bridge.addSegmentFromMask(output, np.zeros_like(mask), geometry, "LV", (0.9, 0.5, 0.4), terminology=entry)

    tag = slicer.vtkSegment.GetTerminologyEntryTagName()
    for segmentIdToCheck in (segmentId, emptyId):
        assert mrml_bridge.segmentTag(output, segmentIdToCheck, tag) == entry
        segment = output.GetSegmentation().GetSegment(segmentIdToCheck)
        if hasattr(segment, "GetTerminology"):  # Slicer 5.10+ reads the same entry back through its own API
            assert segment.GetTerminology() == entry


def test_converter_rules_registration_skips_when_the_factory_method_is_not_wrapped(monkeypatch, scene):
    import slicer
    from WeakSegExtensionLib import mrml_bridge

    class UnwrappedFactory:
        registered: list = []

        def RegisterConverterRule(self, rule):
            self.registered.append(rule)

    class FactoryClass:
        @staticmethod
        def GetInstance():
            return UnwrappedFactory()

    monkeypatch.setattr(slicer, "vtkSegmentationConverterFactory", FactoryClass)
    mrml_bridge.registerSegmentationConverterRules()
    assert UnwrappedFactory.registered == []


# ---------------------------------------------------------------------------------------------
# No API newer than Slicer 5.6 is called unguarded


def guardedNames(test: ast.AST) -> set[str]:
    """Attribute names a condition checks with ``hasattr(obj, "Name")``."""
    return {
        call.args[1].value
        for call in ast.walk(test)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "hasattr"
        and len(call.args) == 2 and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str)
    }


def exitsEarly(statement: ast.stmt) -> bool:
    """``if not hasattr(...): return/raise`` (the rest of the block runs only when the API exists)."""
    return (
        isinstance(statement, ast.If) and isinstance(statement.test, ast.UnaryOp) and isinstance(statement.test.op, ast.Not)
        and bool(statement.body) and isinstance(statement.body[-1], (ast.Return, ast.Raise))
    )


def unguardedCalls(source: str, names) -> list[tuple[str, int]]:
    """(name, line) of every ``something.Name(...)`` call of a listed name that no hasattr check protects.

    A call is protected inside the body of ``if hasattr(x, "Name")`` (or a condition holding
    it), or after ``if not hasattr(x, "Name"): return`` earlier in the same block.
    """
    found = []

    def visit(node: ast.AST, guarded: frozenset) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names:
            if node.func.attr not in guarded:
                found.append((node.func.attr, node.lineno))
        if isinstance(node, ast.If):
            checked = guardedNames(node.test)
            visit(node.test, guarded)
            inverted = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
            visitBlock(node.body, guarded if inverted else guarded | checked)
            visitBlock(node.orelse, guarded | checked if inverted else guarded)
            return
        for field, value in ast.iter_fields(node):
            if isinstance(value, list) and value and all(isinstance(item, ast.stmt) for item in value):
                visitBlock(value, guarded)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        visit(item, guarded)
            elif isinstance(value, ast.AST):
                visit(value, guarded)

    def visitBlock(statements, guarded: frozenset) -> None:
        for statement in statements:
            visit(statement, guarded)
            if exitsEarly(statement):
                guarded = guarded | guardedNames(statement.test)

    visit(ast.parse(source), frozenset())
    return found


def test_the_checker_finds_an_unguarded_call_and_accepts_the_guarded_forms():
    unguarded = "def write(segment, entry):\n    segment.SetTerminology(entry)\n"
    assert unguardedCalls(unguarded, POST_56_APIS) == [("SetTerminology", 2)]
    guarded = textwrap.dedent("""
        def write(segment, entry):
            if hasattr(segment, "SetTerminology"):
                segment.SetTerminology(entry)
            else:
                segment.SetTag("TerminologyEntry", entry)

        def rules(factory):
            if not hasattr(factory, "GetConverterRules"):
                return set()
            return {rule.GetName() for rule in factory.GetConverterRules()}

        def wrongBranch(segment, entry):
            if not hasattr(segment, "SetTerminology"):
                segment.SetTerminology(entry)
    """)
    assert unguardedCalls(guarded, POST_56_APIS) == [("SetTerminology", 15)]


@pytest.mark.parametrize("path", EXTENSION_PYTHON_FILES, ids=lambda p: p.name)
def test_no_api_added_after_slicer_5_6_is_called_unguarded(path):
    found = unguardedCalls(path.read_text(encoding="utf-8"), POST_56_APIS)
    described = [f"{path.name}:{line} calls {name} ({POST_56_APIS[name][0]}, {POST_56_APIS[name][1]}) without a hasattr guard"
                 for name, line in found]
    assert described == []


# ---------------------------------------------------------------------------------------------
# Catalog entries: JSON for the Extensions Index 5.8 branch and later, .s4ext for 5.6


def s4extValues(path: Path) -> dict[str, str]:
    """keyword -> value of an .s4ext file (first token of each non-comment line is the keyword)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, value = line.strip().partition(" ")
            values[keyword] = value.strip()
    return values


def test_the_slicer_5_6_catalog_entry_matches_the_json_entry_and_the_cmake_description():
    import json
    import re

    index = REPOSITORY / "ExtensionsIndex"
    entry, legacy = json.loads((index / "WeakSeg.json").read_text(encoding="utf-8")), s4extValues(index / "WeakSeg.s4ext")
    assert legacy["scm"] == entry["scm_type"] and legacy["scmurl"] == entry["scm_url"]
    assert legacy["scmrevision"] == entry["scm_revision"]
    assert legacy["depends"].split() == entry["build_dependencies"]
    assert legacy["build_subdirectory"] == entry["build_subdirectory"] and legacy["category"] == entry["category"]
    cmake = (REPOSITORY / "CMakeLists.txt").read_text(encoding="utf-8")
    for name in re.findall(r'set\((WEAKSEG_\w+) ', cmake):  # in order: later ones use earlier ones
        value = re.search(rf'set\({name} "([^"]*)"\)', cmake).group(1)
        cmake = cmake.replace("${" + name + "}", value)
    for keyword, variable in (("homepage", "HOMEPAGE"), ("contributors", "CONTRIBUTORS"), ("description", "DESCRIPTION"),
                              ("iconurl", "ICONURL"), ("screenshoturls", "SCREENSHOTURLS"), ("depends", "DEPENDS")):
        assert legacy[keyword] == re.search(rf'set\(EXTENSION_{variable} "([^"]*)"\)', cmake).group(1), keyword


def test_the_embedded_editor_uses_its_own_parameter_node_shows_no_selectors_and_offers_paint_and_erase():
    class SceneWithEditorNode:
        editorNode = object()

        def GetSingletonNode(self, tag, className):
            assert (tag, className) == (segment_editor.EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
            return self.editorNode

    class ConfigurableEditor:
        def setMRMLSegmentEditorNode(self, node) -> None:
            self.editorNode = node

        def setMRMLScene(self, scene) -> None:
            self.scene = scene

        def setEffectNameOrder(self, names) -> None:
            self.effects = list(names)

    scene, editor = SceneWithEditorNode(), ConfigurableEditor()
    segment_editor.embedEditor(editor, scene)
    assert editor.editorNode is SceneWithEditorNode.editorNode and editor.scene is scene
    assert not (editor.segmentationNodeSelectorVisible or editor.sourceVolumeNodeSelectorVisible
                or editor.switchToSegmentationsButtonVisible or editor.unorderedEffectsVisible)
    assert editor.effects == ["Paint", "Erase"]
