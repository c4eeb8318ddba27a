"""WeakSeg: weakly-supervised segmentation in 3D Slicer.

This file holds the module description, the widget (a thin GUI over
``WeakSegExtensionLib.logic.WeakSegLogic``) and the self-test. Everything the widget does
is a call to the logic, which works without the GUI from the Python console.
"""

import logging
import os
import time
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Default, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from WeakSegExtensionLib import (cohort_labels, compute_panel, diagnosis_panel, install, method_menus, mrml_bridge,
                                 segment_editor)
from WeakSegExtensionLib.errors import WeakSegCancelledError, WeakSegError
from WeakSegExtensionLib.logic import WeakSegLogic

POLL_INTERVAL_MS = 100


class WeakSeg(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "WeakSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakSeg contributors"]
        self.parent.helpText = (
            "Segment from a few scribbles, or train a model on a cohort labelled with scribbles, full masks "
            "and image-level labels. Paint a 'background' segment and one segment per structure, then click Segment."
        )
        self.parent.acknowledgementText = "Uses 3D Slicer's Segment Editor and Grow from seeds; models run with PyTorch."


@parameterNodeWrapper
class WeakSegParameterNode:
    """GUI state saved with the scene."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    scribbleSegmentation: slicer.vtkMRMLSegmentationNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    maskSegmentation: slicer.vtkMRMLSegmentationNode
    classNames: str
    method: Annotated[str, Default("interactive")]  # no Choice: the menus come from the library (method_menus)
    modelPath: str
    trainingMethod: Annotated[str, Default("cohort")]
    shapeModel: str
    resume: bool


class WeakSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, the embedded Segment Editor, the cohort table and a progress area."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._onJobResult = None
        self._pendingResult = None
        self._previewNode = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._pollJob)

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WeakSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = WeakSegLogic(logCallback=self._log)
        self._methodMenus = method_menus.MethodMenus(self.ui.methodComboBox, self.ui.trainingMethodComboBox, qt.Qt.ToolTipRole)
        for menu in self._methodMenus.menus:
            menu.comboBox.connect("currentIndexChanged(int)", lambda index, menu=menu: menu.choose(index, self._parameterNode))
        self._computePanel = compute_panel.ComputePanel(self.ui, self.logic, qt.QSettings())  # this computer or a server
        segment_editor.embedEditor(self.ui.segmentEditorWidget, slicer.mrmlScene)
        self.ui.cohortTable.setColumnCount(len(cohort_labels.COHORT_COLUMNS))
        self.ui.cohortTable.setHorizontalHeaderLabels(list(cohort_labels.COHORT_COLUMNS))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onSceneNodesChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onSceneNodesChanged)

        self.ui.createScribblesButton.clicked.connect(self.onCreateScribbles)
        self.ui.segmentButton.clicked.connect(self.onSegment)
        self.ui.applyPreviewButton.clicked.connect(self.onApplyPreview)
        self.ui.cancelPreviewButton.clicked.connect(self.onCancelPreview)
        self.ui.undoButton.clicked.connect(self.onUndo)
        self.ui.setLabelButton.clicked.connect(lambda: self.onSetImageLabel(clear=False))
        self.ui.clearLabelButton.clicked.connect(lambda: self.onSetImageLabel(clear=True))
        self.ui.setDiagnosisButton.clicked.connect(lambda: diagnosis_panel.setSelectedDiagnosis(self, clear=False))
        self.ui.clearDiagnosisButton.clicked.connect(lambda: diagnosis_panel.setSelectedDiagnosis(self, clear=True))
        self.ui.linkMaskButton.clicked.connect(self.onLinkMask)
        self.ui.markSourceButton.clicked.connect(self.onToggleSource)
        self.ui.importLabelsButton.clicked.connect(self.onImportLabels)
        self.ui.exportLabelsButton.clicked.connect(self.onExportLabels)
        self.ui.refreshCohortButton.clicked.connect(self.refreshCohortTable)
        self.ui.trainButton.clicked.connect(self.onTrain)
        self.ui.applyModelButton.clicked.connect(self.onApplyModel)
        self.ui.cancelButton.clicked.connect(self.onCancelJob)
        self.ui.modelPathLineEdit.currentPathChanged.connect(self.onModelPathChanged)
        self.ui.classNamesLineEdit.editingFinished.connect(self.refreshCohortTable)
        self.initializeParameterNode()
        self._updateButtons()

    def cleanup(self) -> None:
        self._timer.stop()
        if self._job is not None and not self._job.finished:
            self._job.cancel(wait=False)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._methodMenus.refresh(self.logic.methodCatalog, self._parameterNode)
        self.ui.segmentEditorWidget.setupViewObservations()
        self.refreshCohortTable()

    def exit(self) -> None:
        segment_editor.leaveEditor(self.ui.segmentEditorWidget)
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self._discardPreview()
        self.logic.clearUndoHistory()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(segment_editor.editorParameterNode(slicer.mrmlScene))
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneNodesChanged(self, caller, event) -> None:
        if self.parent.isEntered:
            qt.QTimer.singleShot(0, self.refreshCohortTable)

    # -- parameter node ------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(WeakSegParameterNode(self.logic.getParameterNode()))
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self.ui.modelPathLineEdit.currentPath = self._parameterNode.modelPath
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Point the embedded Segment Editor at the current volume and scribbles, and refresh buttons."""
        if not self._parameterNode:
            return
        segment_editor.showInEditor(
            self.ui.segmentEditorWidget, self._parameterNode.scribbleSegmentation, self._parameterNode.inputVolume
        )
        self._methodMenus.show(self._parameterNode)
        self._updateButtons()

    def onModelPathChanged(self, path: str) -> None:
        if self._parameterNode:
            self._parameterNode.modelPath = path

    def _classNames(self):
        """The class list typed by the user ("background" added), or None to use the scribbles' segment names."""
        text = self._parameterNode.classNames if self._parameterNode else ""
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            return None
        return ["background"] + [name for name in names if name.lower() != "background"]

    def _updateButtons(self) -> None:
        busy = self._job is not None
        parameters = self._parameterNode
        hasInputs = bool(parameters and parameters.inputVolume and parameters.scribbleSegmentation)
        self.ui.segmentButton.enabled = hasInputs and not busy
        self.ui.createScribblesButton.enabled = bool(parameters and parameters.inputVolume) and not busy
        self.ui.applyPreviewButton.enabled = self._pendingResult is not None and not busy
        self.ui.cancelPreviewButton.enabled = self._pendingResult is not None and not busy
        output = self._outputNode()
        self.ui.undoButton.enabled = bool(output and self.logic.canUndo(output)) and not busy
        self.ui.trainButton.enabled = bool(parameters and parameters.modelPath) and not busy
        self.ui.applyModelButton.enabled = bool(parameters and parameters.modelPath) and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.progressBar.visible = busy

    def _outputNode(self):
        if not self._parameterNode:
            return None
        if self._parameterNode.outputSegmentation:
            return self._parameterNode.outputSegmentation
        volume = self._parameterNode.inputVolume
        return self.logic.resultSegmentationNode(volume, create=False) if volume else None

    # -- long actions ---------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        logging.info("WeakSeg: %s", line)

    def _ensureDependencies(self) -> bool:
        """Offer to install missing packages; True when everything needed is there."""
        missing = self.logic.missingDependencies()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(install.describeMissing(missing) + "\n\nInstall them now?"):
            self.ui.statusLabel.text = "WeakSeg needs its Python packages; nothing was done."
            return False
        try:
            with slicer.util.tryWithErrorDisplay("Installing WeakSeg's Python packages failed.", waitCursor=True):
                self.ui.statusLabel.text = "Installing Python packages (this can take a few minutes)..."
                slicer.app.processEvents()
                self.logic.installDependencies()
        except Exception:  # shown to the user by tryWithErrorDisplay, which re-raises; keep the panel usable
            logging.exception("WeakSeg: installing Python packages failed")
            self.ui.statusLabel.text = "Installing WeakSeg's Python packages failed; nothing was done."
            return False
        self._methodMenus.refresh(self.logic.methodCatalog, self._parameterNode)  # now from the installed library
        return not self.logic.missingDependencies()

    def _startJob(self, startFunction, onResult) -> None:
        """Run ``startFunction()`` (which returns a started job) and follow it with the timer."""
        if not self._ensureDependencies():
            return
        try:
            self._job = startFunction()
        except WeakSegError as error:
            self._showError(error)
            return
        self._onJobResult = onResult
        self.ui.statusLabel.text = f"{self._job.title}..."
        self.ui.progressBar.value = 0
        self._updateButtons()
        self._timer.start()

    def _pollJob(self) -> None:
        job = self._job
        job.poll()
        self.ui.progressBar.value = int(job.percent)
        self.ui.statusLabel.text = f"{job.title}: {job.message}"
        if not job.finished:
            return
        self._timer.stop()
        self._job = None
        try:
            with slicer.util.WaitCursor():
                message = self._onJobResult(job.result())
            self.ui.statusLabel.text = message
        except WeakSegCancelledError:
            self.ui.statusLabel.text = f"{job.title}: cancelled; nothing was written."
        except WeakSegError as error:
            self._showError(error)
        except Exception as error:  # unexpected: keep the GUI usable and say what happened
            logging.exception("WeakSeg: %s failed", job.title)
            self._showError(f"{job.title} failed unexpectedly: {error}")
        finally:
            self._updateButtons()

    def onCancelJob(self) -> None:
        if self._job is not None:
            self.ui.statusLabel.text = f"{self._job.title}: cancelling..."
            self._job.cancel(wait=False)  # the timer keeps polling until the process has ended

    def _showError(self, error) -> None:
        self.ui.statusLabel.text = str(error)
        slicer.util.errorDisplay(str(error), windowTitle="WeakSeg")

    # -- interactive segmentation -------------------------------------------------------------

    def onCreateScribbles(self) -> None:
        classNames = self._classNames()
        if classNames is None:
            self._showError("Type the structures to segment in Classes (for example: LV, RV, Myo).")
            return
        try:
            node = self.logic.createScribbleSegmentation(self._parameterNode.inputVolume, classNames)
        except WeakSegError as error:
            self._showError(error)
            return
        self._parameterNode.scribbleSegmentation = node
        self.ui.statusLabel.text = "Paint a few strokes in each segment, background included, then click Segment."

    def onSegment(self) -> None:
        self._discardPreview()
        volume, scribbles = self._parameterNode.inputVolume, self._parameterNode.scribbleSegmentation
        self._startJob(
            lambda: self.logic.startSegmentation(volume, scribbles, self._parameterNode.method, self._classNames()),
            lambda result: self._showPreview(result, scribbles),
        )

    def _showPreview(self, result, scribbles) -> str:
        self.logic.setScribbleSegmentation(result.volumeNode, scribbles)  # the cohort now knows these scribbles
        self._pendingResult = result
        self._previewNode = self.logic.showPreview(result, self._previewNode)
        counts = ", ".join(f"{name}: {count}" for name, count in result.voxelCounts().items())
        return f"Preview ready ({counts} voxels). Apply to keep it, Cancel to discard it."

    def onApplyPreview(self) -> None:
        try:
            output = self.logic.applyResult(self._pendingResult, self._parameterNode.outputSegmentation)
        except WeakSegError as error:
            self._showError(error)
            return
        self._discardPreview()
        self.ui.statusLabel.text = f"Result written to '{output.GetName()}'. Undo restores its previous segments."
        self._updateButtons()

    def onCancelPreview(self) -> None:
        self._discardPreview()
        self.ui.statusLabel.text = "Preview discarded."

    def _discardPreview(self) -> None:
        self.logic.removePreview(self._previewNode)
        self._previewNode = None
        self._pendingResult = None
        self._updateButtons()

    def onUndo(self) -> None:
        output = self._outputNode()
        if output is not None and self.logic.undoLastResult(output):
            self.ui.statusLabel.text = f"'{output.GetName()}' restored."
        self._updateButtons()

    # -- cohort ---------------------------------------------------------------------------------

    def _cohortClasses(self) -> list[str]:
        return self._classNames() or cohort_labels.cohortClassNames(self.logic.cohortRows())

    def refreshCohortTable(self) -> None:
        """Show every volume with its labels; refresh the label choices from the class list."""
        if not self.logic:
            return
        table = self.ui.cohortTable
        rows = self.logic.cohortRows()
        table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate(cohort_labels.rowCells(row)):
                item = qt.QTableWidgetItem(text)
                item.setData(qt.Qt.UserRole, row.volumeNode.GetID())
                table.setItem(index, column, item)
        current = self.ui.imageLabelComboBox.currentText
        self.ui.imageLabelComboBox.clear()
        self.ui.imageLabelComboBox.addItems(cohort_labels.allowedImageLabels(self._cohortClasses()))
        self.ui.imageLabelComboBox.setCurrentText(current)

    def _selectedVolumes(self) -> list:
        table = self.ui.cohortTable
        rows = sorted({index.row() for index in table.selectionModel().selectedRows()})
        return [slicer.mrmlScene.GetNodeByID(table.item(row, 0).data(qt.Qt.UserRole)) for row in rows]

    def _selectedVolumesOrWarn(self) -> list:
        volumes = self._selectedVolumes()
        if not volumes:
            self._showError("Select one or more volumes in the cohort table first.")
        return volumes

    def onSetImageLabel(self, clear: bool) -> None:
        volumes = self._selectedVolumesOrWarn()
        if not volumes:
            return
        label = None if clear else self.ui.imageLabelComboBox.currentText
        first = self.ui.firstSliceSpinBox.value if self.ui.sliceRangeCheckBox.checked else None
        last = self.ui.lastSliceSpinBox.value if self.ui.sliceRangeCheckBox.checked else None
        try:
            for volume in volumes:
                self.logic.setImageLabel(volume, label, first, last, self._cohortClasses())
        except WeakSegError as error:
            self._showError(error)
        self.refreshCohortTable()

    def onLinkMask(self) -> None:
        volumes = self._selectedVolumes()
        if len(volumes) != 1:
            self._showError("Select exactly one volume in the cohort table to link the mask to.")
            return
        self.logic.setMaskSegmentation(volumes[0], self._parameterNode.maskSegmentation)
        self.refreshCohortTable()

    def onToggleSource(self) -> None:
        for row in self.logic.cohortRows(self._selectedVolumesOrWarn()):
            self.logic.setSourceVolume(row.volumeNode, not row.isSource)
        self.refreshCohortTable()

    def onImportLabels(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, "Import image labels", "", "CSV files (*.csv)")
        if not path:
            return
        try:
            changed = self.logic.importLabels(path, self._cohortClasses())
            self.ui.statusLabel.text = f"Labels of {len(changed)} volume(s) imported from {path}."
        except WeakSegError as error:
            self._showError(error)
        self.refreshCohortTable()

    def onExportLabels(self) -> None:
        path = qt.QFileDialog.getSaveFileName(self.parent, "Export image labels", "labels.csv", "CSV files (*.csv)")
        if path:
            count = self.logic.exportLabels(path)
            self.ui.statusLabel.text = f"{count} label row(s) exported to {path}."

    def onTrain(self) -> None:
        volumes = self._selectedVolumes() or self.logic.volumeNodes()
        modelPath, method = self._parameterNode.modelPath, self._parameterNode.trainingMethod
        keepsFormer = bool(modelPath) and os.path.isfile(modelPath) and not self._parameterNode.resume
        self._startJob(
            lambda: self.logic.startTraining(volumes, modelPath, self._classNames(), self._parameterNode.resume,
                                             method=method, shapeModel=self.logic.shapeModelFor(method, self._parameterNode.shapeModel)),
            lambda path: f"Model saved to {path}." + (" The former model is kept beside it ('.previous' in its name)."
                                                       if keepsFormer else ""),
        )

    def onApplyModel(self) -> None:
        volumes = self._selectedVolumes() or [self._parameterNode.inputVolume]
        self._startJob(
            lambda: self.logic.startApplyModel(self._parameterNode.modelPath, [v for v in volumes if v]),
            self._applyModelResults,
        )

    def _applyModelResults(self, results) -> str:
        outputs = [self.logic.applyResult(result) for result in results]
        return "Model applied; results in " + ", ".join(f"'{node.GetName()}'" for node in outputs) + "."


class WeakSegTest(ScriptedLoadableModuleTest):
    """*Reload and Test*, on a synthetic disc, no network: scribbles, Grow from seeds and WeakSeg (few steps), preview,
    apply, undo, re-apply, cancel, the panel's buttons and method menu, leaving the module, image labels through CSV."""

    FEW_STEPS, TIMEOUT_SECONDS = ["--steps", "20", "--device", "cpu", "--seed", "0"], 600

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_SegmentPreviewApplyUndo, self.test_Cancel, self.test_Widget, self.test_ImageLabelsCsv):
            self.setUp()
            test()

    def _syntheticCase(self):
        _, y, x = np.indices((6, 28, 32))
        truth = ((y - 10) ** 2 + (x - 10) ** 2 <= 25).astype(np.uint8)
        image = (truth * 100.0 + np.random.default_rng(0).normal(0, 3, truth.shape)).astype(np.float32)
        volume = slicer.util.addVolumeFromArray(image, name="WeakSegTestVolume")
        volume.SetSpacing(0.7, 0.9, 2.5)
        return volume, truth

    def _scribbledCase(self, logic):
        volume, truth = self._syntheticCase()
        scribbles = logic.createScribbleSegmentation(volume, ["background", "disc"])
        self._paintScribbles(volume, scribbles, truth.shape)
        return volume, scribbles, truth

    def _paintScribbles(self, volume, scribbles, shape) -> None:
        background, disc = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
        background[:, 2, 2:30], background[:, 20:22, 20:30], disc[:, 10, 8:13] = 1, 1, 1
        for name, mask in (("background", background), ("disc", disc)):  # as a Segment Editor effect writes strokes
            WeakSegLogic().paintScribbles(scribbles, volume, name, mask)

    def _discDice(self, segmentation, volume, truth) -> float:
        segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("disc")
        found = mrml_bridge.segmentMaskOnGrid(segmentation, segmentId, mrml_bridge.volumeGeometry(volume), volume)
        return 2 * np.count_nonzero(found & (truth > 0)) / (np.count_nonzero(found) + np.count_nonzero(truth))

    def _dependenciesMissing(self, logic) -> bool:
        missing = logic.missingDependencies()
        if missing:  # the rest needs the command line
            self.delayDisplay(f"Skipped: WeakSeg's Python packages are not installed ({', '.join(missing)})")
        return bool(missing)

    def test_SegmentPreviewApplyUndo(self):
        self.delayDisplay("Scribbles, Grow from seeds and WeakSeg, preview, apply, undo, re-apply")
        logic = WeakSegLogic()
        volume, scribbles, truth = self._scribbledCase(logic)
        self.assertEqual(sorted(mrml_bridge.segmentNames(scribbles)), ["background", "disc"])
        if self._dependenciesMissing(logic):
            return
        growcut = logic.startSegmentation(volume, scribbles, "growcut").wait()
        weakseg = logic.startSegmentation(volume, scribbles, "interactive", extraArguments=self.FEW_STEPS).wait()
        preview = logic.showPreview(growcut)
        self.assertGreater(self._discDice(preview, volume, truth), 0.8)
        logic.removePreview(preview)
        self.assertIsNone(preview.GetScene())
        output = logic.applyResult(growcut)
        self.assertGreater(self._discDice(output, volume, truth), 0.8)
        logic.applyResult(weakseg, output)  # replaces the Grow from seeds segments
        self.assertGreater(self._discDice(output, volume, truth), 0.7)
        self.assertEqual(mrml_bridge.segmentNames(output), ["disc"])  # one segment per class, background left out
        self.assertTrue(logic.undoLastResult(output))
        self.assertGreater(self._discDice(output, volume, truth), 0.8)  # the Grow from seeds result is back
        self.assertTrue(logic.undoLastResult(output))
        self.assertEqual(output.GetSegmentation().GetNumberOfSegments(), 0)
        logic.applyResult(weakseg, output)  # re-apply after undo
        self.assertGreater(self._discDice(output, volume, truth), 0.7)
        self.assertEqual(sorted(mrml_bridge.segmentNames(scribbles)), ["background", "disc"])  # scribbles untouched
        self.delayDisplay("Test passed")

    def test_Cancel(self):
        self.delayDisplay("Cancel a long WeakSeg run")
        logic = WeakSegLogic()
        volume, scribbles, _ = self._scribbledCase(logic)
        if self._dependenciesMissing(logic):
            return
        job = logic.startSegmentation(volume, scribbles, "interactive", extraArguments=["--steps", "100000", "--device", "cpu"])
        self._waitUntil(lambda: job.poll() is not None and (job.percent > 0 or job.finished), "no progress reported")
        self.assertFalse(job.finished, "the run ended before it could be cancelled")
        started = time.monotonic()
        job.cancel()
        self.assertLess(time.monotonic() - started, 30)
        with self.assertRaises(WeakSegCancelledError):
            job.result()
        self.assertFalse(job.workDirectory.exists())
        self.assertIsNone(logic.resultSegmentationNode(volume, create=False))
        self.delayDisplay("Test passed")

    def _waitUntil(self, condition, failure: str) -> None:
        """Process events until ``condition()`` holds (the panel's timer polls its job meanwhile)."""
        deadline = time.monotonic() + self.TIMEOUT_SECONDS
        while not condition():
            self.assertLess(time.monotonic(), deadline, failure)
            slicer.app.processEvents()
            time.sleep(0.02)

    def test_Widget(self):
        self.delayDisplay("The panel: create scribbles, segment, preview, apply, undo, cancel, leave the module")
        slicer.util.selectModule("WeakSeg")
        widget = slicer.modules.weakseg.widgetRepresentation().self()
        volume, truth = self._syntheticCase()
        parameters = widget._parameterNode
        parameters.inputVolume = volume
        parameters.classNames = "disc"
        parameters.method = "weakseg"  # an old scene's spelling: the menu shows the method's current name
        self.assertEqual(widget.ui.methodComboBox.currentText, "interactive")
        widget.ui.methodComboBox.setCurrentIndex(widget.ui.methodComboBox.findText("growcut"))  # as a user picks it
        self.assertEqual(parameters.method, "growcut")
        widget.ui.createScribblesButton.click()
        scribbles = parameters.scribbleSegmentation
        editor = widget.ui.segmentEditorWidget
        self.assertEqual((editor.segmentationNode().GetID(), editor.sourceVolumeNode().GetID()), (scribbles.GetID(), volume.GetID()))
        self._paintScribbles(volume, scribbles, truth.shape)
        if not self._dependenciesMissing(widget.logic):
            parameters.method = "growcut"
            widget.ui.segmentButton.click()
            self._waitUntil(lambda: widget._job is None, "the job did not end in time")
            self.assertTrue(widget.ui.applyPreviewButton.enabled, widget.ui.statusLabel.text)
            widget.ui.applyPreviewButton.click()
            output = widget.logic.resultSegmentationNode(volume, create=False)
            self.assertGreater(self._discDice(output, volume, truth), 0.8)
            widget.ui.undoButton.click()
            self.assertEqual(output.GetSegmentation().GetNumberOfSegments(), 0)
            parameters.method = "interactive"
            widget.ui.segmentButton.click()
            self.assertTrue(widget.ui.cancelButton.enabled)
            widget.ui.cancelButton.click()
            self._waitUntil(lambda: widget._job is None, "the job did not end in time")
            self.assertIn("cancelled", widget.ui.statusLabel.text)
            self.assertEqual(output.GetSegmentation().GetNumberOfSegments(), 0)
        editor.setActiveEffectByName("Paint")
        self.assertIsNotNone(editor.activeEffect())
        slicer.util.selectModule("Data")
        self.assertIsNone(editor.activeEffect())
        self.delayDisplay("Test passed")

    def test_ImageLabelsCsv(self):
        self.delayDisplay("Image labels: set, export to CSV, import")
        logic = WeakSegLogic()
        volume, _ = self._syntheticCase()
        logic.setImageLabel(volume, "tumor")
        logic.setImageLabel(volume, "healthy", firstSlice=0, lastSlice=2)
        path = slicer.app.temporaryPath + "/WeakSegTestLabels.csv"
        self.assertEqual(logic.exportLabels(path), 2)
        logic.setImageLabel(volume, None)
        logic.setImageLabel(volume, None, firstSlice=0, lastSlice=2)
        self.assertIsNone(logic.getImageLabel(volume))
        logic.importLabels(path)
        self.assertEqual(logic.getImageLabel(volume), "tumor")
        self.assertEqual(logic.getImageLabel(volume, sliceIndex=1), "healthy")
        self.delayDisplay("Test passed")
