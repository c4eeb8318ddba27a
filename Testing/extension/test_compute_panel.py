"""The panel's Compute section: the choice survives in the settings and reaches the logic as plain settings.

Qt widgets are replaced by small stand-ins with PythonQt's property style (``combo.currentIndex``,
``lineEdit.text``, ``widget.visible``), which is how the module drives them in Slicer.
"""

from __future__ import annotations

from types import SimpleNamespace

from WeakSegExtensionLib.compute_panel import ComputePanel
from WeakSegExtensionLib.remote import ComputeSettings


class Signal:
    def __init__(self) -> None:
        self.slots = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def emit(self, *values) -> None:
        for slot in self.slots:
            slot(*values)


class ComboBox:
    def __init__(self) -> None:
        self.currentIndex = 0
        self.changed = Signal()

    def connect(self, signature: str, slot) -> None:
        assert signature == "currentIndexChanged(int)"
        self.changed.connect(slot)


class LineEdit:
    def __init__(self) -> None:
        self.text, self.visible, self.editingFinished = "", True, Signal()


class Settings(dict):
    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value) -> None:
        self[key] = value


def _ui():
    return SimpleNamespace(computeOnComboBox=ComboBox(), serverUrlLineEdit=LineEdit(), serverTokenLineEdit=LineEdit(),
                           serverUrlLabel=LineEdit(), serverTokenLabel=LineEdit())


def test_the_choice_is_kept_in_the_settings_and_handed_to_the_logic():
    settings, logic, ui = Settings(), SimpleNamespace(compute=None), _ui()
    ComputePanel(ui, logic, settings)
    assert logic.compute == ComputeSettings("local", "", "") and not ui.serverUrlLineEdit.visible
    ui.computeOnComboBox.currentIndex = 1
    ui.computeOnComboBox.changed.emit(1)
    ui.serverUrlLineEdit.text = " http://gpu:8760 "
    ui.serverUrlLineEdit.editingFinished.emit()
    ui.serverTokenLineEdit.text = "secret-token-123456"
    ui.serverTokenLineEdit.editingFinished.emit()
    assert logic.compute == ComputeSettings("server", "http://gpu:8760", "secret-token-123456")
    assert ui.serverUrlLineEdit.visible and ui.serverTokenLabel.visible

    reopened, laterLogic = _ui(), SimpleNamespace(compute=None)
    ComputePanel(reopened, laterLogic, settings)  # the next Slicer session
    assert reopened.computeOnComboBox.currentIndex == 1 and reopened.serverUrlLineEdit.text == "http://gpu:8760"
    assert laterLogic.compute == logic.compute
