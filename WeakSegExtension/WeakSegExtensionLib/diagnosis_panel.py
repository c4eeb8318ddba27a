"""The panel's diagnosis controls: give the volumes selected in the cohort table a diagnosis, or clear it.

Kept out of the module file (which holds Module, Widget and Test only); no Qt import: the
widget is passed in and only its ``ui``, ``logic`` and cohort-table methods are used.
"""

from __future__ import annotations

from WeakSegExtensionLib.errors import WeakSegError


def setSelectedDiagnosis(widget, clear: bool) -> None:
    """Set the diagnosis typed in ``diagnosisLineEdit`` (or none, with ``clear``) on the selected volumes."""
    diagnosis = None if clear else widget.ui.diagnosisLineEdit.text
    try:
        for volumeNode in widget._selectedVolumesOrWarn():
            widget.logic.setDiagnosisLabel(volumeNode, diagnosis)
    except WeakSegError as error:
        widget._showError(error)
    widget.refreshCohortTable()
