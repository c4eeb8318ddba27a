"""The panel's method menus: filled from the library's method catalogue, kept in step with the parameter node.

Which methods exist is the library's business (``weakseg methods --json``, read by
``WeakSegLogic.methodCatalog``), so a method added to WeakSegLib appears in the panel without
any change to the extension. Slicer's parameter-node connector for combo boxes fills them from
a ``Choice`` annotation fixed when the parameter class is defined, before the library can be
asked; the two method combo boxes are therefore not bound by it, and :class:`MethodMenu` keeps
each in step with its parameter both ways instead.

No Qt import: the combo box is passed in (PythonQt's ``QComboBox`` in Slicer, a stand-in in
tests) and only its methods ``clear``, ``addItem``, ``setItemData``, ``setCurrentIndex`` and
``blockSignals`` are called. Until WeakSegLib is installed (the first Segment or Train installs
it) the menus show :data:`FALLBACK_CATALOG`.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any, Callable, Sequence

from WeakSegExtensionLib.errors import WeakSegError

PER_IMAGE_USAGE = "per-image"
TRAINED_USAGE = "trained"

# What the menus offer before the library can be asked: the names of its methods and their old
# spellings, nothing more; the catalogue replaces it as soon as WeakSegLib answers.
FALLBACK_CATALOG: tuple[dict, ...] = (
    {"name": "interactive", "aliases": ["weakseg"], "usage": PER_IMAGE_USAGE},
    {"name": "growcut", "aliases": [], "usage": PER_IMAGE_USAGE},
    {"name": "cohort", "aliases": [], "usage": TRAINED_USAGE},
    {"name": "pce", "aliases": [], "usage": TRAINED_USAGE},
    {"name": "maag", "aliases": [], "usage": TRAINED_USAGE},
    {"name": "imagelabel", "aliases": [], "usage": TRAINED_USAGE},
)
FALLBACK_TOOLTIP = "WeakSegLib is not installed yet; once it is (on first use), it describes its methods here."
UNKNOWN_TOOLTIP = "Not a method of the installed WeakSegLib (kept from the scene); choose another one."


def askCatalog(methodCatalog: Callable[[], Sequence[dict]]) -> Sequence[dict] | None:
    """The library's method catalogue, or None when it cannot be asked yet (the reason is logged).

    ``methodCatalog`` is ``WeakSegLogic.methodCatalog``: it raises ``WeakSegDependencyError``
    while WeakSegLib or a package it needs is not installed, and may fail to start or parse the
    command line; the menus then keep their built-in list.
    """
    try:
        return methodCatalog()
    except (WeakSegError, OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
        logging.info("WeakSeg: the method menus keep their built-in list: %s", error)
        return None


class MethodMenu:
    """One combo box listing the methods of one usage, in step with one string parameter.

    Items are method names (current names, never old spellings), each with the method's
    one-line summary as tooltip. ``parameters`` is any object with the attribute
    ``parameterName`` (the module's parameter node), or None while there is none.

    Args:
        comboBox: the combo box to fill.
        usage: :data:`PER_IMAGE_USAGE` or :data:`TRAINED_USAGE`: which catalogue entries it lists.
        parameterName: the parameter holding the chosen method.
        toolTipRole: Qt's ``ToolTipRole`` (passed in, as this module imports no Qt).
    """

    def __init__(self, comboBox, usage: str, parameterName: str, toolTipRole: Any):
        self.comboBox = comboBox
        self.usage = usage
        self.parameterName = parameterName
        self.toolTipRole = toolTipRole
        self.names: list[str] = []
        self.fromLibrary = False
        self._currentNames: dict[str, str] = {}
        self.fill(None, None)

    def fill(self, catalog: Sequence[dict] | None, parameters) -> None:
        """List the methods of ``catalog`` (:data:`FALLBACK_CATALOG` when None), then select the parameter's."""
        entries = [entry for entry in (FALLBACK_CATALOG if catalog is None else catalog) if entry["usage"] == self.usage]
        self.fromLibrary = catalog is not None
        self._currentNames = {alias: entry["name"] for entry in entries for alias in entry.get("aliases", ())}
        self.names = []
        wasBlocked = self.comboBox.blockSignals(True)
        try:
            self.comboBox.clear()
            for entry in entries:
                self._addItem(entry["name"], entry.get("summary") or FALLBACK_TOOLTIP)
        finally:
            self.comboBox.blockSignals(wasBlocked)
        self.show(parameters)

    def methodName(self, value: str) -> str:
        """The current name of the method ``value`` names (``weakseg`` -> ``interactive``)."""
        return self._currentNames.get(value, value)

    def show(self, parameters) -> None:
        """Select the parameter's method, without signalling a user choice.

        An old spelling selects the method's current name (the parameter keeps its value, which
        the library accepts). A method the menu does not list, e.g. from a scene saved with
        another WeakSegLib, is added as an item so that the menu shows what will run; an empty
        parameter takes the first method.
        """
        if parameters is None:
            return
        value = getattr(parameters, self.parameterName)
        if not value and self.names:
            value = self.names[0]
            setattr(parameters, self.parameterName, value)
        if not value:
            return
        name = self.methodName(value)
        wasBlocked = self.comboBox.blockSignals(True)
        try:
            if name not in self.names:
                self._addItem(name, UNKNOWN_TOOLTIP)
            self.comboBox.setCurrentIndex(self.names.index(name))
        finally:
            self.comboBox.blockSignals(wasBlocked)

    def choose(self, index: int, parameters) -> None:
        """The user picked item ``index`` (the combo box's ``currentIndexChanged``): store its method in the parameter."""
        if parameters is None or not 0 <= index < len(self.names):
            return
        if getattr(parameters, self.parameterName) != self.names[index]:
            setattr(parameters, self.parameterName, self.names[index])

    def _addItem(self, name: str, toolTip: str) -> None:
        self.comboBox.addItem(name)
        self.comboBox.setItemData(len(self.names), toolTip, self.toolTipRole)
        self.names.append(name)


class MethodMenus:
    """The panel's two menus: per-image methods in *Method*, trained methods in *Training method*."""

    def __init__(self, methodComboBox, trainingMethodComboBox, toolTipRole: Any):
        self.menus = (
            MethodMenu(methodComboBox, PER_IMAGE_USAGE, "method", toolTipRole),
            MethodMenu(trainingMethodComboBox, TRAINED_USAGE, "trainingMethod", toolTipRole),
        )

    def refresh(self, methodCatalog: Callable[[], Sequence[dict]], parameters) -> None:
        """Ask the library for its methods (see :func:`askCatalog`) and fill both menus."""
        catalog = askCatalog(methodCatalog)
        for menu in self.menus:
            menu.fill(catalog, parameters)

    def show(self, parameters) -> None:
        """Select each parameter's method (after the parameter node changed, e.g. a scene was loaded)."""
        for menu in self.menus:
            menu.show(parameters)
