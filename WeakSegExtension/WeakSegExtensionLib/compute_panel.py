"""The panel's *Compute* section: this computer or a ``weakseg serve`` server, kept in Slicer's settings.

The widget owns the Qt controls; this class keeps them, ``qt.QSettings`` and the logic's
:class:`~WeakSegExtensionLib.remote.ComputeSettings` in step, so the logic itself only ever
sees a plain settings object.
"""

from __future__ import annotations

from WeakSegExtensionLib.remote import LOCAL, SERVER, ComputeSettings

MODE_KEY = "WeakSeg/ComputeOn"
URL_KEY = "WeakSeg/ServerURL"
TOKEN_KEY = "WeakSeg/ServerToken"
MODES = (LOCAL, SERVER)  # in the order of the combo box's items


class ComputePanel:
    """Binds ``ui.computeOnComboBox``, ``ui.serverUrlLineEdit`` and ``ui.serverTokenLineEdit`` to ``logic.compute``.

    Args:
        ui: the panel's widgets (``slicer.util.childWidgetVariables``).
        logic: a :class:`~WeakSegExtensionLib.logic.WeakSegLogic`.
        settings: where the choice is kept: the widget passes ``qt.QSettings()`` (this package imports no Qt).
    """

    def __init__(self, ui, logic, settings) -> None:
        self.ui = ui
        self.logic = logic
        self.settings = settings
        mode = str(self.settings.value(MODE_KEY, LOCAL) or LOCAL)
        ui.computeOnComboBox.currentIndex = MODES.index(mode) if mode in MODES else 0
        ui.serverUrlLineEdit.text = str(self.settings.value(URL_KEY, "") or "")
        ui.serverTokenLineEdit.text = str(self.settings.value(TOKEN_KEY, "") or "")
        ui.computeOnComboBox.connect("currentIndexChanged(int)", lambda _index: self.store())
        ui.serverUrlLineEdit.editingFinished.connect(self.store)
        ui.serverTokenLineEdit.editingFinished.connect(self.store)
        self.store()

    def current(self) -> ComputeSettings:
        """The settings the controls show now."""
        return ComputeSettings(MODES[max(0, self.ui.computeOnComboBox.currentIndex)],
                               self.ui.serverUrlLineEdit.text.strip(), self.ui.serverTokenLineEdit.text.strip())

    def store(self) -> None:
        """Save the controls to the settings and hand them to the logic; server fields show only for a server."""
        compute = self.current()
        self.settings.setValue(MODE_KEY, compute.mode)
        self.settings.setValue(URL_KEY, compute.url)
        self.settings.setValue(TOKEN_KEY, compute.token)
        for widget in (self.ui.serverUrlLabel, self.ui.serverUrlLineEdit, self.ui.serverTokenLabel,
                       self.ui.serverTokenLineEdit):
            widget.visible = compute.mode == SERVER
        self.logic.compute = compute
