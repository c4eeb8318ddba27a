"""The module's .ui loads in Qt (PySide6, offscreen) and every widget the module uses is created.

Slicer's own widgets (qMRMLNodeComboBox, ctkCollapsibleButton, ...) are not available
outside Slicer, so plain Qt stand-ins with the same class names are registered with the
loader. Skipped when PySide6 is not installed.

Run this file as a script to refresh the layout preview shown in the README and the extension
catalog (the ``.ui`` as Qt lays it out, with Slicer's widgets as plain stand-ins; not a
screenshot of Slicer)::

    .venv/bin/python Testing/extension/test_slicer_ui_pyside.py
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
UI_FILE = REPOSITORY / "WeakSegExtension" / "Resources" / "UI" / "WeakSeg.ui"
SCREENSHOT = REPOSITORY / "Resources" / "Screenshots" / "WeakSeg-layout-preview.png"


def loadPanel():
    """(QApplication, loaded top widget) with Slicer widgets replaced by Qt stand-ins."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    QtCore = pytest.importorskip("PySide6.QtCore", reason="PySide6 is not installed")
    from PySide6 import QtUiTools, QtWidgets

    class ctkCollapsibleButton(QtWidgets.QGroupBox):
        def getText(self):
            return self.title()

        def setText(self, text):
            self.setTitle(text)

        def getCollapsed(self):
            return False

        def setCollapsed(self, collapsed):
            pass

        text = QtCore.Property(str, getText, setText)
        collapsed = QtCore.Property(bool, getCollapsed, setCollapsed)

    class qMRMLNodeComboBox(QtWidgets.QComboBox):
        pass

    class ctkPathLineEdit(QtWidgets.QLineEdit):
        pass

    class qMRMLWidget(QtWidgets.QWidget):
        pass

    class qMRMLSegmentEditorWidget(QtWidgets.QLabel):
        def __init__(self, parent=None):
            super().__init__("Slicer's Segment Editor widget\n(a placeholder in this layout preview)", parent)
            self.setAlignment(QtCore.Qt.AlignCenter)
            self.setFrameShape(QtWidgets.QFrame.StyledPanel)
            self.setMinimumHeight(90)

    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    loader = QtUiTools.QUiLoader()
    for standIn in (ctkCollapsibleButton, qMRMLNodeComboBox, ctkPathLineEdit, qMRMLWidget, qMRMLSegmentEditorWidget):
        loader.registerCustomWidget(standIn)
    uiFile = QtCore.QFile(str(UI_FILE))
    assert uiFile.open(QtCore.QFile.ReadOnly)
    panel = loader.load(uiFile)
    uiFile.close()
    assert panel is not None, loader.errorString()
    return application, panel


def test_ui_loads_and_creates_every_named_widget():
    from_ui = [w.get("name") for w in ElementTree.parse(UI_FILE).getroot().iter("widget")]
    _, panel = loadPanel()
    from PySide6 import QtWidgets

    for name in from_ui[1:]:
        assert panel.findChild(QtWidgets.QWidget, name) is not None, f"{name} was not created"
    assert panel.findChild(QtWidgets.QPushButton, "segmentButton").text() == "Segment"
    assert panel.findChild(QtWidgets.QTableWidget, "cohortTable").columnCount() == 8  # ... Source, Diagnosis, Predicted diagnosis


def test_the_method_menus_of_the_ui_are_filled_from_the_library_and_follow_the_parameters():
    """The real QComboBox of the .ui, driven by the module's helper as the widget does it."""
    import argparse
    import json
    import types

    from PySide6 import QtCore, QtWidgets

    from WeakSegExtensionLib.method_menus import MethodMenus
    from weakseg.commands import methods_command

    catalog = json.loads(methods_command(argparse.Namespace(json=True)))["methods"]
    _, panel = loadPanel()
    boxes = [panel.findChild(QtWidgets.QComboBox, name) for name in ("methodComboBox", "trainingMethodComboBox")]
    for box in boxes:
        assert box.property("SlicerParameterName") is None  # not bound to a fixed Choice list
    parameters = types.SimpleNamespace(method="weakseg", trainingMethod="cohort")
    menus = MethodMenus(*boxes, QtCore.Qt.ToolTipRole)
    for menu in menus.menus:
        menu.comboBox.currentIndexChanged.connect(lambda index, menu=menu: menu.choose(index, parameters))
    menus.refresh(lambda: catalog, parameters)
    methodBox, trainingBox = boxes
    assert [methodBox.itemText(i) for i in range(methodBox.count())] == [e["name"] for e in catalog if e["usage"] == "per-image"]
    assert [trainingBox.itemText(i) for i in range(trainingBox.count())] == [e["name"] for e in catalog if e["usage"] == "trained"]
    growcut = methodBox.findText("growcut")
    assert methodBox.itemData(growcut, QtCore.Qt.ToolTipRole) == next(e["summary"] for e in catalog if e["name"] == "growcut")
    assert (methodBox.currentText(), parameters.method) == ("interactive", "weakseg")  # an old scene's spelling
    methodBox.setCurrentIndex(growcut)
    trainingBox.setCurrentIndex(trainingBox.findText("maag"))
    assert (parameters.method, parameters.trainingMethod) == ("growcut", "maag")
    parameters.method = "interactive"
    menus.show(parameters)
    assert methodBox.currentText() == "interactive" and parameters.method == "interactive"


def renderPreview(path: Path) -> Path:
    """Fill the panel with example content and save it as a PNG."""
    application, panel = loadPanel()
    from PySide6 import QtWidgets

    examples = {"inputVolumeSelector": "MNI T1", "scribbleSegmentationSelector": "MNI T1 scribbles",
                "outputSegmentationSelector": "MNI T1 WeakSeg", "methodComboBox": "interactive",
                "maskSegmentationSelector": "None", "imageLabelComboBox": "tumor", "trainingMethodComboBox": "cohort"}
    for name, text in examples.items():
        panel.findChild(QtWidgets.QComboBox, name).addItem(text)
    panel.findChild(QtWidgets.QLineEdit, "classNamesLineEdit").setText("grey matter, white matter")
    panel.findChild(QtWidgets.QLineEdit, "modelPathLineEdit").setText("/data/models/brain.pt")
    table = panel.findChild(QtWidgets.QTableWidget, "cohortTable")
    rows = [("MNI T1", "", "", "yes", ""), ("Case 2", "tumor", "0-20: healthy", "", ""),
            ("Case 3", "healthy", "", "", "yes")]
    table.setRowCount(len(rows))
    for row, cells in enumerate(rows):
        for column, text in enumerate(cells):
            table.setItem(row, column, QtWidgets.QTableWidgetItem(text))
    panel.findChild(QtWidgets.QLabel, "statusLabel").setText("Segmenting volume 'MNI T1': training step 40/100")
    panel.findChild(QtWidgets.QProgressBar, "progressBar").setValue(40)
    panel.resize(440, 860)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(path))
    application.processEvents()
    return path


def test_panel_renders_offscreen(tmp_path):
    from PySide6 import QtGui

    image = QtGui.QImage(str(renderPreview(tmp_path / "panel.png")))
    assert image.width() >= 440 and image.height() >= 860
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 20, "the rendered panel is blank"


if __name__ == "__main__":
    print(renderPreview(SCREENSHOT))
