"""The panel's method menus come from the library's catalogue and stay in step with the parameter node.

``WeakSegExtensionLib.method_menus`` is driven here with a stand-in combo box that behaves as
Qt's does for the calls the helper makes (an item list, a current index, ``currentIndexChanged``
emitted on every index change unless signals are blocked) and a plain object as the parameter
node. The real ``QComboBox`` of the module's ``.ui`` is driven in ``test_slicer_ui_pyside.py``.
"""

from __future__ import annotations

import argparse
import json
import types
from pathlib import Path

import pytest

from WeakSegExtensionLib import method_menus
from WeakSegExtensionLib.errors import WeakSegDependencyError
from WeakSegExtensionLib.method_menus import FALLBACK_TOOLTIP, UNKNOWN_TOOLTIP, MethodMenu, MethodMenus

EXTENSION = Path(__file__).resolve().parents[2] / "WeakSegExtension"
TOOLTIP_ROLE = 3  # Qt::ToolTipRole; any value works for the stand-in


class StandInComboBox:
    """A combo box with Qt's rules for the calls :class:`MethodMenu` makes, plus ``userPicks``."""

    def __init__(self):
        self.items: list[str] = []
        self.toolTips: dict[int, str] = {}
        self.currentIndex = -1
        self.listeners = []
        self._blocked = False

    def blockSignals(self, block: bool) -> bool:
        previous, self._blocked = self._blocked, block
        return previous

    def clear(self) -> None:
        self.items, self.toolTips = [], {}
        self._setIndex(-1)

    def addItem(self, text: str) -> None:
        self.items.append(text)
        if self.currentIndex == -1:  # Qt selects the first item added to an empty combo box
            self._setIndex(0)

    def setItemData(self, index: int, value, role) -> None:
        assert role == TOOLTIP_ROLE and 0 <= index < len(self.items)
        self.toolTips[index] = value

    def setCurrentIndex(self, index: int) -> None:
        self._setIndex(index)

    def userPicks(self, text: str) -> None:
        self._setIndex(self.items.index(text))

    @property
    def currentText(self) -> str:
        return self.items[self.currentIndex] if self.currentIndex >= 0 else ""

    def _setIndex(self, index: int) -> None:
        changed = index != self.currentIndex
        self.currentIndex = index
        if changed and not self._blocked:
            for listener in self.listeners:
                listener(index)


def library_catalog() -> list[dict]:
    """What ``weakseg methods --json`` prints, produced in this process by the command's own code."""
    from weakseg.commands import methods_command

    return json.loads(methods_command(argparse.Namespace(json=True)))["methods"]


class Panel:
    """The two menus wired as the widget wires them, to a parameter object."""

    def __init__(self, method: str = "interactive", trainingMethod: str = "cohort"):
        self.parameters = types.SimpleNamespace(method=method, trainingMethod=trainingMethod)
        self.methodBox, self.trainingBox = StandInComboBox(), StandInComboBox()
        self.menus = MethodMenus(self.methodBox, self.trainingBox, TOOLTIP_ROLE)
        for menu in self.menus.menus:
            menu.comboBox.listeners.append(lambda index, menu=menu: menu.choose(index, self.parameters))


def test_the_menus_list_the_librarys_methods_by_usage_with_their_summaries_as_tooltips():
    catalog = library_catalog()
    panel = Panel()
    panel.menus.refresh(lambda: catalog, panel.parameters)
    perImage = [entry for entry in catalog if entry["usage"] == "per-image"]
    trained = [entry for entry in catalog if entry["usage"] == "trained"]
    assert panel.methodBox.items == [entry["name"] for entry in perImage] and "interactive" in panel.methodBox.items
    assert panel.trainingBox.items == [entry["name"] for entry in trained] and "maag" in panel.trainingBox.items
    assert panel.methodBox.toolTips == {index: entry["summary"] for index, entry in enumerate(perImage)}
    assert panel.trainingBox.toolTips == {index: entry["summary"] for index, entry in enumerate(trained)}
    assert all(menu.fromLibrary for menu in panel.menus.menus)
    assert (panel.methodBox.currentText, panel.trainingBox.currentText) == ("interactive", "cohort")


def test_a_users_choice_sets_the_parameter_and_a_parameter_change_selects_the_item():
    panel = Panel()
    panel.menus.refresh(library_catalog, panel.parameters)
    panel.methodBox.userPicks("growcut")
    panel.trainingBox.userPicks("imagelabel")
    assert (panel.parameters.method, panel.parameters.trainingMethod) == ("growcut", "imagelabel")
    panel.parameters.method, panel.parameters.trainingMethod = "interactive", "maag"  # e.g. a scene was loaded
    panel.menus.show(panel.parameters)
    assert (panel.methodBox.currentText, panel.trainingBox.currentText) == ("interactive", "maag")
    assert (panel.parameters.method, panel.parameters.trainingMethod) == ("interactive", "maag")  # not written back


def test_filling_and_showing_do_not_count_as_a_users_choice():
    panel = Panel(method="growcut", trainingMethod="pce")
    written = []
    panel.methodBox.listeners.append(written.append)
    panel.menus.refresh(library_catalog, panel.parameters)  # clears and refills: index -1, 0, then growcut's
    panel.menus.show(panel.parameters)
    assert written == [] and panel.parameters.method == "growcut" and panel.methodBox.currentText == "growcut"


def test_an_old_scenes_weakseg_shows_as_interactive_and_still_runs_as_written():
    for catalog in (library_catalog(), None):  # with the library and with the built-in list
        panel = Panel(method="weakseg")
        panel.menus.refresh(lambda: catalog, panel.parameters)
        assert panel.methodBox.currentText == "interactive"
        assert "weakseg" not in panel.methodBox.items
        assert panel.parameters.method == "weakseg"  # the library accepts the old spelling
        panel.methodBox.userPicks("growcut")
        panel.methodBox.userPicks("interactive")
        assert panel.parameters.method == "interactive"


def test_without_the_library_the_menus_show_the_built_in_list_and_the_library_replaces_it_once_installed():
    panel = Panel(trainingMethod="maag")

    def notInstalled():
        raise WeakSegDependencyError("WeakSeg needs these Python packages: WeakSegLib")

    panel.menus.refresh(notInstalled, panel.parameters)
    assert panel.methodBox.items == ["interactive", "growcut"]
    assert panel.trainingBox.items == ["cohort", "pce", "maag", "imagelabel"]
    assert set(panel.methodBox.toolTips.values()) == {FALLBACK_TOOLTIP}
    assert not any(menu.fromLibrary for menu in panel.menus.menus)
    assert panel.trainingBox.currentText == "maag"
    panel.menus.refresh(library_catalog, panel.parameters)  # after the install
    assert all(menu.fromLibrary for menu in panel.menus.menus)
    assert panel.trainingBox.currentText == "maag" and FALLBACK_TOOLTIP not in panel.trainingBox.toolTips.values()


@pytest.mark.parametrize("failure", [OSError("PythonSlicer: not found"), ValueError("Expecting value: line 1"),
                                     WeakSegDependencyError("the WeakSeg command line cannot list its methods")])
def test_a_command_line_that_cannot_answer_leaves_the_built_in_list(failure):
    def failing():
        raise failure

    assert method_menus.askCatalog(failing) is None


def test_the_built_in_list_names_only_methods_and_old_spellings_of_the_library():
    from weakseg.methods.registry import METHODS

    library = {spec.name: (spec.usage, set(spec.aliases)) for spec in METHODS}
    for entry in method_menus.FALLBACK_CATALOG:
        usage, aliases = library[entry["name"]]
        assert entry["usage"] == usage and set(entry["aliases"]) <= aliases


def test_a_parameter_naming_a_method_the_menu_lacks_is_shown_as_an_extra_item():
    panel = Panel(method="newermethod")
    panel.menus.refresh(library_catalog, panel.parameters)
    assert panel.methodBox.currentText == "newermethod"
    assert panel.methodBox.toolTips[panel.methodBox.currentIndex] == UNKNOWN_TOOLTIP
    panel.methodBox.userPicks("growcut")
    assert panel.parameters.method == "growcut"


def test_an_empty_parameter_takes_the_first_method():
    panel = Panel(method="")
    panel.menus.refresh(library_catalog, panel.parameters)
    assert panel.parameters.method == "interactive" == panel.methodBox.currentText


def test_a_menu_without_parameters_lists_methods_and_ignores_choices():
    box = StandInComboBox()
    menu = MethodMenu(box, method_menus.TRAINED_USAGE, "trainingMethod", TOOLTIP_ROLE)
    menu.fill(library_catalog(), None)
    menu.choose(1, None)
    menu.show(None)
    assert box.items == menu.names and box.currentIndex == 0


def test_a_method_registered_in_the_library_appears_in_the_menu_without_any_extension_change(monkeypatch):
    """What README's *Adding a method* promises: a module and a registry line, and the panel lists it."""
    from weakseg.methods import registry
    from weakseg.methods.spec import PER_IMAGE, SCRIBBLES, MethodSpec

    name = "nearestmeanprobe"
    for path in EXTENSION.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".ui", ".txt", ".json"):
            assert name not in path.read_text(encoding="utf-8"), f"{path} names the probe method"
    probe = MethodSpec(name=name, summary="each voxel takes the class of the nearest scribble mean (a test probe)",
                       learns_from=(SCRIBBLES,), usage=PER_IMAGE, segment="weakseg.methods.probe:segment")
    monkeypatch.setattr(registry, "METHODS", registry.METHODS + (probe,))
    panel = Panel()
    panel.menus.refresh(library_catalog, panel.parameters)
    assert panel.methodBox.items[-1] == name
    assert panel.methodBox.toolTips[len(panel.methodBox.items) - 1] == probe.summary
    assert name not in panel.trainingBox.items
    panel.methodBox.userPicks(name)
    assert panel.parameters.method == name


def widgetMethodCalls(functionName: str) -> set[str]:
    """``receiver.method`` texts of the calls in ``WeakSegWidget.<functionName>`` of WeakSeg.py."""
    import ast

    tree = ast.parse((EXTENSION / "WeakSeg.py").read_text(encoding="utf-8"))
    widget = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "WeakSegWidget")
    function = next(node for node in widget.body if isinstance(node, ast.FunctionDef) and node.name == functionName)
    return {ast.unparse(call.func) for call in ast.walk(function) if isinstance(call, ast.Call)}


def test_the_widget_wires_the_menus_both_ways_and_refreshes_them_on_entering_and_after_installing():
    """The panel itself needs the Slicer application (its self-test ``test_Widget`` drives it there);
    here: the widget makes the menus, routes each combo box's index changes to ``choose``, shows the
    parameters after every parameter-node change, and asks the library on entering and after an install."""
    setup = widgetMethodCalls("setup")
    assert "method_menus.MethodMenus" in setup and "menu.comboBox.connect" in setup and "menu.choose" in setup
    assert 'menu.comboBox.connect("currentIndexChanged(int)"' in (EXTENSION / "WeakSeg.py").read_text(encoding="utf-8")
    assert "self._methodMenus.show" in widgetMethodCalls("_onParameterNodeModified")
    assert "self._methodMenus.refresh" in widgetMethodCalls("enter")
    assert "self._methodMenus.refresh" in widgetMethodCalls("_ensureDependencies")


def test_the_logic_brings_a_newly_registered_method_from_the_command_line_into_the_menu(slicerModule, tmp_path,
                                                                                       monkeypatch):
    """The same, end to end: the logic runs ``weakseg methods --json`` in a process whose registry holds one
    more method (registered before the command line starts), and the menu lists it."""
    import os
    import sys

    from WeakSegExtensionLib.logic import WeakSegLogic

    register = (
        "import sys\n"
        "from weakseg.methods import registry\n"
        "from weakseg.methods.spec import TRAINED, SCRIBBLES, MethodSpec\n"
        "registry.METHODS += (MethodSpec(name='probetrained', summary='a trained probe', learns_from=(SCRIBBLES,),"
        " usage=TRAINED),)\n"
        "from weakseg.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    library = str(EXTENSION.parent / "WeakSegLib")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [library, os.environ.get("PYTHONPATH")])))
    logic = WeakSegLogic(scene=slicerModule.vtkMRMLScene(), cliCommand=[sys.executable, "-c", register],
                         temporaryDirectory=str(tmp_path))
    panel = Panel()
    panel.menus.refresh(logic.methodCatalog, panel.parameters)
    assert panel.trainingBox.items[-1] == "probetrained"
    assert panel.trainingBox.toolTips[len(panel.trainingBox.items) - 1] == "a trained probe"
    assert "probetrained" not in panel.methodBox.items
