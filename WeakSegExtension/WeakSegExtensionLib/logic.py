"""WeakSegLogic: everything the WeakSeg module does, usable from the Python console without the GUI.

Interactive segmentation::

    logic = WeakSegLogic()
    outputNode = logic.segmentFromScribbles(volumeNode, scribbleSegmentationNode, method="growcut")

Image-level labels and a cohort model::

    logic.setImageLabel(volumeNode, "tumor")
    logic.exportLabels("labels.csv")
    logic.trainCohort([volume1, volume2], "model.pt")
    logic.applyModel("model.pt", [volume3])

Training and inference run ``python -m weakseg ...`` in a separate process (see
:mod:`runner`); the blocking methods above wait for it, while the ``start...`` methods return
a running :class:`WeakSegJob` that the widget polls from a timer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import slicer

from WeakSegExtensionLib import cohort_labels, diagnoses, install, mrml_bridge
from WeakSegExtensionLib.errors import WeakSegDependencyError, WeakSegInputError
from WeakSegExtensionLib.library_contract import PREDICTIONS_FILE
from WeakSegExtensionLib.jobs import LogCallback, ProgressCallback, WeakSegJob
from WeakSegExtensionLib.method_menus import PER_IMAGE_USAGE, TRAINED_USAGE
from WeakSegExtensionLib.mrml_bridge import BACKGROUND, UNLABELLED, describeNode
from WeakSegExtensionLib.remote import SERVER, ComputeSettings, RemoteRunner, ServerClient
from WeakSegExtensionLib.result_segments import ResultHistory, SegmentationResult, classColor, writeSegments

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # slicer-core without the application (tests, scripts): no module framework, no Qt
    ScriptedLoadableModuleLogic = object

IMAGE_LABELS = "image-labels"
SOURCE_MASKS = "source-masks"
MASKS = "masks"
SHAPE_MODEL = "shape-model"
ROLE_ATTRIBUTE = "WeakSeg.Role"
PREVIEW_NAME = "WeakSeg preview"


def pythonExecutable() -> str:
    """Slicer's Python (``PythonSlicer``) inside the application, the running interpreter elsewhere."""
    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


class WeakSegLogic(ScriptedLoadableModuleLogic):
    """Scribble segmentation, image-level labels and cohort models on MRML nodes.

    Args:
        scene: the MRML scene to work in (``slicer.mrmlScene`` by default).
        cliCommand: how to start the command line; ``[pythonExecutable(), "-m", "weakseg"]``
            by default. Tests pass another interpreter or script here.
        temporaryDirectory: where working folders are made (Slicer's temporary folder by default).
        logCallback: receives log lines of the command line process.
        compute: where jobs run: this computer (default) or a ``weakseg serve`` server
            (:class:`~WeakSegExtensionLib.remote.ComputeSettings`; may be replaced at any time).

    ``warmStartDirectory`` (``<temporaryDirectory>/WeakSeg-warm-start`` by default; None turns
    it off) keeps the network of each ``weakseg`` segmentation, keyed by the volume's voxels:
    pressing *Segment* again on the same volume after adding scribbles continues from it with
    fewer training steps (``weakseg segment --cache``).
    """

    def __init__(
        self,
        scene=None,
        cliCommand: Sequence[str] | None = None,
        temporaryDirectory: str | None = None,
        logCallback: LogCallback | None = None,
        compute: ComputeSettings | None = None,
    ):
        if ScriptedLoadableModuleLogic is not object:
            ScriptedLoadableModuleLogic.__init__(self)
        mrml_bridge.registerSegmentationConverterRules()
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.cliCommand = list(cliCommand) if cliCommand else [pythonExecutable(), "-m", "weakseg"]
        if temporaryDirectory is None and hasattr(slicer, "app"):
            temporaryDirectory = slicer.app.temporaryPath
        self.temporaryDirectory = temporaryDirectory
        self.logCallback = logCallback
        self.compute = compute or ComputeSettings()
        self.history = ResultHistory()
        self._methodCatalog: list[dict] | None = None
        self.warmStartDirectory: str | None = str(Path(temporaryDirectory or tempfile.gettempdir()) / "WeakSeg-warm-start")

    # -- methods -------------------------------------------------------------------------------

    def methodCatalog(self) -> list[dict]:
        """The library's methods as it describes them (``weakseg methods --json``), asked once.

        Each entry has ``name``, ``aliases``, ``usage`` (``per-image`` / ``trained``),
        ``learns_from``, ``adapts_to_scribbles``, ``needs_unpaired_masks`` and ``options``.
        """
        if self._methodCatalog is None and self.compute.mode == SERVER:
            return ServerClient(self.compute).methods()
        if self._methodCatalog is None:
            self.checkDependencies()
            completed = subprocess.run([*self.cliCommand, "methods", "--json"], capture_output=True, text=True,
                                       timeout=120)
            if completed.returncode != 0:
                raise WeakSegDependencyError(f"the WeakSeg command line cannot list its methods: {completed.stderr.strip()}")
            self._methodCatalog = json.loads(completed.stdout)["methods"]
        return self._methodCatalog

    def methodNames(self, usage: str) -> list[str]:
        """Names of the library's methods of one usage (``per-image`` or ``trained``)."""
        return [entry["name"] for entry in self.methodCatalog() if entry["usage"] == usage]

    def method(self, name: str, usage: str) -> dict:
        """The catalogue entry of method ``name`` (or an old spelling of it) of that usage."""
        for entry in self.methodCatalog():
            if entry["usage"] == usage and name in [entry["name"], *entry["aliases"]]:
                return entry
        kind = "training method" if usage == TRAINED_USAGE else "method"
        raise WeakSegInputError(f"unknown {kind} {name!r}; choose one of {self.methodNames(usage)}")

    def shapeModelFor(self, method: str, shapeModel: str) -> str:
        """The panel's *Shape model* text if training method ``method`` learns from a shape model, else "".

        The field stays filled while the user tries other training methods; only a method that
        takes shapes (``shape-gan``) receives it, so switching methods never makes training fail.
        """
        return shapeModel.strip() if SHAPE_MODEL in self.method(method, TRAINED_USAGE)["learns_from"] else ""

    # -- dependencies --------------------------------------------------------------------------

    def missingDependencies(self) -> list[str]:
        """Packages the command line needs that this Python cannot import (empty when all are there, or when
        computing on a server)."""
        return install.missingPackages() if self.compute.mode != SERVER else []

    def checkDependencies(self) -> None:
        """Raise :class:`WeakSegDependencyError` with install instructions if a package is missing."""
        missing = self.missingDependencies()
        if missing:
            raise WeakSegDependencyError(
                install.describeMissing(missing) + " Install them from the WeakSeg module, or from the Python "
                "console with: WeakSegLogic().installDependencies()"
            )

    def installDependencies(self) -> None:
        """Install the missing packages into Slicer's Python (asks nothing: callers ask first)."""
        pipInstall, installTorch = install.slicerInstallers()
        source = install.bundledLibrarySource(Path(__file__).resolve().parent.parent)
        with tempfile.TemporaryDirectory(prefix="WeakSeg-install-", dir=self.temporaryDirectory) as scratch:
            staged = install.stageLibrarySource(source, scratch) if source else None
            install.installPackages(self.missingDependencies(), pipInstall, installTorch, staged, self.logCallback)

    # -- scribbles -----------------------------------------------------------------------------

    def createScribbleSegmentation(self, volumeNode, classNames: Sequence[str], name: str | None = None):
        """A new segmentation on ``volumeNode``'s grid with one empty segment per class, "background" first.

        "background" is added in front when ``classNames`` does not name it, as the GUI does:
        ``["LV", "RV"]`` gives the segments background, LV, RV.
        """
        mrml_bridge.checkImageVolume(volumeNode)
        named = [str(className).strip() for className in classNames]
        classNames = mrml_bridge.checkClassNames(
            [BACKGROUND] + [className for className in named if className.lower() != BACKGROUND], "scribble classes"
        )
        segmentationNode = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volumeNode.GetName()} scribbles")
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        segmentationNode.SetAttribute(ROLE_ATTRIBUTE, "scribbles")
        segmentation = segmentationNode.GetSegmentation()
        for code, className in enumerate(classNames):
            color = (0.35, 0.35, 0.35) if code == 0 else classColor(className, code)
            segmentation.AddEmptySegment("", className, list(color))
        volumeNode.SetNodeReferenceID(cohort_labels.SCRIBBLES_ROLE, segmentationNode.GetID())
        return segmentationNode

    def paintScribbles(self, scribbleSegmentationNode, volumeNode, className: str, mask: np.ndarray) -> None:
        """Replace the scribbles of segment ``className`` with ``mask``: painting from code.

        ``mask`` is a ``(Z, Y, X)`` array on ``volumeNode``'s voxel grid (the order of
        ``slicer.util.arrayFromVolume``), non-zero where the class is scribbled.

        Raises:
            WeakSegInputError: no segment of that name, a mask of another shape, or an empty mask.
        """
        geometry = mrml_bridge.volumeGeometry(volumeNode)
        mask = np.asarray(mask) != 0
        if mask.shape != tuple(geometry.shape):
            raise WeakSegInputError(
                f"scribbles for '{className}': mask of shape {mask.shape}, but {describeNode(volumeNode)} has "
                f"{tuple(geometry.shape)} voxels (Z, Y, X)"
            )
        segmentation = scribbleSegmentationNode.GetSegmentation()
        segmentId = segmentation.GetSegmentIdBySegmentName(className)
        if not segmentId:
            raise WeakSegInputError(
                f"{describeNode(scribbleSegmentationNode)} has no segment named '{className}'; its segments are "
                f"{mrml_bridge.segmentNames(scribbleSegmentationNode)}"
            )
        image = mrml_bridge.orientedImageFromMask(mask, geometry)
        if image is None:
            raise WeakSegInputError(f"scribbles for '{className}': the mask is empty")
        segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic
        segmentationsLogic.SetBinaryLabelmapToSegment(
            image, scribbleSegmentationNode, segmentId, segmentationsLogic.MODE_REPLACE, image.GetExtent()
        )

    def scribbleLabels(self, volumeNode, scribbleSegmentationNode, classNames: Sequence[str] | None = None):
        """Check the inputs of a segmentation and return ``(labels, classNames)``.

        ``labels`` is uint8 ``(Z, Y, X)`` on the volume's grid: class codes where scribbled,
        255 elsewhere. Nothing in the scene changes.

        Raises:
            WeakSegInputError: naming the node at fault, for a volume WeakSeg cannot read, a node that
                is not a segmentation, different transforms, no "background" segment, segments
                on another grid, or too few scribbled classes.
        """
        mrml_bridge.checkImageVolume(volumeNode)
        if scribbleSegmentationNode is None or not scribbleSegmentationNode.IsA("vtkMRMLSegmentationNode"):
            raise WeakSegInputError(f"{describeNode(scribbleSegmentationNode)} is not a segmentation; select the scribbles")
        if volumeNode.GetTransformNodeID() != scribbleSegmentationNode.GetTransformNodeID():
            raise WeakSegInputError(
                f"{describeNode(volumeNode)} and {describeNode(scribbleSegmentationNode)} are under different "
                "transforms; harden the transforms (Data module) first"
            )
        names = [name.lower() for name in mrml_bridge.segmentNames(scribbleSegmentationNode)]
        if BACKGROUND not in names:
            raise WeakSegInputError(
                f"{describeNode(scribbleSegmentationNode)} has no segment named 'background'; add one and "
                "paint a few strokes outside the structures"
            )
        if classNames is None:
            classNames = mrml_bridge.classNamesFromSegmentation(scribbleSegmentationNode)
        classNames = mrml_bridge.checkClassNames(classNames, describeNode(scribbleSegmentationNode))
        labels = mrml_bridge.segmentationToLabelmap(scribbleSegmentationNode, volumeNode, classNames)
        if not np.any(labels == 0):
            raise WeakSegInputError(f"the 'background' segment of {describeNode(scribbleSegmentationNode)} is empty; paint some background")
        if not np.any((labels != 0) & (labels != UNLABELLED)):
            raise WeakSegInputError(
                f"{describeNode(scribbleSegmentationNode)} has no scribbles of any class other than background"
            )
        return labels, classNames

    # -- interactive segmentation --------------------------------------------------------------

    def startSegmentation(
        self,
        volumeNode,
        scribbleSegmentationNode,
        method: str = "weakseg",
        classNames: Sequence[str] | None = None,
        extraArguments: Sequence[str] = (),
    ) -> WeakSegJob:
        """Check the inputs, write them for the command line and start ``weakseg segment``.

        The job's result is a :class:`SegmentationResult`; nothing is written to the scene.
        """
        labels, classNames = self.scribbleLabels(volumeNode, scribbleSegmentationNode, classNames)
        warmStart = []
        if self.method(method, PER_IMAGE_USAGE)["name"] == "interactive" and self.warmStartDirectory \
                and "--model" not in extraArguments:
            warmStart = ["--cache", self.warmStartDirectory]
        geometry = mrml_bridge.volumeGeometry(volumeNode)
        work = self._workDirectory("segment")
        imagePath, scribblePath, outputPath = (str(work / name) for name in ("image.nrrd", "scribbles.nrrd", "result.nrrd"))
        mrml_bridge.writeVolumeFile(volumeNode, imagePath)
        mrml_bridge.writeImageFile(mrml_bridge.imageFromArray(labels, geometry), scribblePath)
        command = [
            *self.cliCommand, "segment", imagePath, "--scribbles", scribblePath, "--out", outputPath,
            "--classes", ",".join(classNames), "--method", method, "--progress", "lines", *warmStart, *extraArguments,
        ]

        def finish() -> SegmentationResult:
            resultLabels = mrml_bridge.readLabelmapFile(outputPath, geometry)
            if resultLabels.min() < 0 or resultLabels.max() >= len(classNames):
                raise WeakSegInputError(f"the result holds class codes outside 0..{len(classNames) - 1}")
            return SegmentationResult(volumeNode, resultLabels, list(classNames), method)

        descriptions = {imagePath: describeNode(volumeNode), scribblePath: describeNode(scribbleSegmentationNode)}
        return self._job(f"Segmenting {describeNode(volumeNode)}", command, work, finish, descriptions)

    def segmentFromScribbles(
        self,
        volumeNode,
        scribbleSegmentationNode,
        method: str = "weakseg",
        outputSegmentationNode=None,
        classNames: Sequence[str] | None = None,
        progressCallback: ProgressCallback | None = None,
        extraArguments: Sequence[str] = (),
    ):
        """Segment ``volumeNode`` from the scribbles and write one segment per class; returns the output node.

        Without ``outputSegmentationNode`` the volume's WeakSeg result node is used (created on
        first use). Earlier WeakSeg segments of this volume in the output are replaced; all other
        segments stay as they are, and :meth:`undoLastResult` restores the previous state.
        """
        self._checkOutputNode(outputSegmentationNode, scribbleSegmentationNode, volumeNode)
        result = self.startSegmentation(volumeNode, scribbleSegmentationNode, method, classNames, extraArguments).wait(
            progressCallback
        )
        return self.applyResult(result, outputSegmentationNode)

    def _checkOutputNode(self, outputSegmentationNode, scribbleSegmentationNode, volumeNode) -> None:
        if outputSegmentationNode is None:
            return
        if not outputSegmentationNode.IsA("vtkMRMLSegmentationNode"):
            raise WeakSegInputError(f"{describeNode(outputSegmentationNode)} is not a segmentation; choose an output segmentation")
        if scribbleSegmentationNode is not None and outputSegmentationNode is scribbleSegmentationNode:
            raise WeakSegInputError(
                f"{describeNode(outputSegmentationNode)} holds the scribbles; choose another output so that results stay apart"
            )
        if outputSegmentationNode.GetTransformNodeID() != volumeNode.GetTransformNodeID() and outputSegmentationNode.GetSegmentation().GetNumberOfSegments():
            raise WeakSegInputError(f"{describeNode(outputSegmentationNode)} is under another transform than {describeNode(volumeNode)}")

    def resultSegmentationNode(self, volumeNode, create: bool = True):
        """The segmentation that holds WeakSeg results for ``volumeNode`` (made on first use when ``create``)."""
        node = volumeNode.GetNodeReference(cohort_labels.RESULT_ROLE)
        if node is not None or not create:
            return node
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volumeNode.GetName()} WeakSeg")
        node.CreateDefaultDisplayNodes()
        node.SetAttribute(ROLE_ATTRIBUTE, "result")
        volumeNode.SetNodeReferenceID(cohort_labels.RESULT_ROLE, node.GetID())
        return node

    def applyResult(self, result: SegmentationResult, outputSegmentationNode=None):
        """Write a result into ``outputSegmentationNode`` (default: the volume's result node), undoably."""
        volumeNode = result.volumeNode
        self._checkOutputNode(outputSegmentationNode, volumeNode.GetNodeReference(cohort_labels.SCRIBBLES_ROLE), volumeNode)
        output = outputSegmentationNode or self.resultSegmentationNode(volumeNode)
        if output.GetSegmentation().GetNumberOfSegments() == 0:
            output.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
            output.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        if output.GetDisplayNode() is None and output.GetScene() is not None:
            output.CreateDefaultDisplayNodes()
        self.history.write(result, output)
        return output

    def undoLastResult(self, outputSegmentationNode) -> bool:
        """Restore ``outputSegmentationNode`` as it was before the last result written into it."""
        return self.history.undo(outputSegmentationNode)

    def canUndo(self, outputSegmentationNode) -> bool:
        return self.history.canUndo(outputSegmentationNode)

    def clearUndoHistory(self) -> None:
        """Forget every undo step, for instance when the scene is closed."""
        self.history.clear()

    def showPreview(self, result: SegmentationResult, previewNode=None):
        """Show a result in a separate preview segmentation (replacing its content); returns the preview node."""
        if previewNode is None:
            previewNode = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NAME)
            previewNode.CreateDefaultDisplayNodes()
            previewNode.SetAttribute(ROLE_ATTRIBUTE, "preview")
            previewNode.SetHideFromEditors(True)  # shown in the views, never offered as an input or output
            previewNode.GetDisplayNode().SetOpacity(0.6)
        previewNode.GetSegmentation().RemoveAllSegments()
        previewNode.SetReferenceImageGeometryParameterFromVolumeNode(result.volumeNode)
        previewNode.SetAndObserveTransformNodeID(result.volumeNode.GetTransformNodeID())
        writeSegments(result, previewNode)
        return previewNode

    def removePreview(self, previewNode) -> None:
        if previewNode is not None and previewNode.GetScene() is self.scene:
            self.scene.RemoveNode(previewNode)

    # -- image-level labels --------------------------------------------------------------------

    def setImageLabel(self, volumeNode, label: str | None, firstSlice: int | None = None, lastSlice: int | None = None,
                      classNames: Sequence[str] | None = None) -> None:
        """Label a volume, or its slices ``firstSlice..lastSlice``, with a class name or "healthy"."""
        cohort_labels.setImageLabel(volumeNode, label, firstSlice, lastSlice, classNames)

    def getImageLabel(self, volumeNode, sliceIndex: int | None = None) -> str | None:
        """The image-level label of a volume, or of one of its slices."""
        return cohort_labels.getImageLabel(volumeNode, sliceIndex)

    def exportLabels(self, csvPath: str | os.PathLike, volumeNodes: Sequence | None = None) -> int:
        """Write image labels (all volumes of the scene by default) to CSV; returns the row count."""
        return cohort_labels.exportLabels(csvPath, volumeNodes if volumeNodes is not None else self.volumeNodes())

    def importLabels(self, csvPath: str | os.PathLike, classNames: Sequence[str] | None = None) -> list:
        """Read image labels from CSV onto the scene's volumes (matched by name); returns the volumes changed."""
        return cohort_labels.importLabels(csvPath, self.volumeNodes(), classNames)

    # -- cohort --------------------------------------------------------------------------------

    def volumeNodes(self) -> list:
        """Grey-level and colour volumes of the scene (labelmaps excluded), in scene order."""
        nodes = []
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = self.scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetHideFromEditors():
                nodes.append(node)
        return nodes

    def setScribbleSegmentation(self, volumeNode, segmentationNode) -> None:
        """Link a scribble segmentation to a volume for cohort training (None unlinks)."""
        volumeNode.SetNodeReferenceID(cohort_labels.SCRIBBLES_ROLE, segmentationNode.GetID() if segmentationNode else None)

    def setMaskSegmentation(self, volumeNode, segmentationNode) -> None:
        """Link a full-mask segmentation (every voxel labelled) to a volume for cohort training (None unlinks)."""
        volumeNode.SetNodeReferenceID(cohort_labels.MASK_ROLE, segmentationNode.GetID() if segmentationNode else None)

    def setSourceVolume(self, volumeNode, isSource: bool = True) -> None:
        """Mark a volume as "source (fully segmented)" (its linked mask trains method transfer), or unmark it."""
        cohort_labels.setSource(volumeNode, isSource)

    def setDiagnosisLabel(self, volumeNode, diagnosis: str | None) -> None:
        """Give a volume its diagnosis for training (method collaborative); None clears it."""
        diagnoses.setDiagnosisLabel(volumeNode, diagnosis)

    def predictedDiagnosis(self, volumeNode) -> tuple[str, dict[str, float]] | None:
        """The diagnosis the last applied model predicted for the volume, with every diagnosis's probability."""
        return diagnoses.predictedDiagnosis(volumeNode)

    def cohortRows(self, volumeNodes: Sequence | None = None) -> list[cohort_labels.CohortRow]:
        return [cohort_labels.cohortRow(node) for node in (volumeNodes if volumeNodes is not None else self.volumeNodes())]

    def startTraining(self, volumeNodes: Sequence, modelPath: str | os.PathLike, classNames: Sequence[str] | None = None,
                      resume: bool = False, extraArguments: Sequence[str] = (), method: str = "cohort",
                      shapeModel: str = "") -> WeakSegJob:
        """Write the cohort to a training folder and start ``weakseg train``; the job's result is the model path.

        ``method`` is one of the library's trained methods (:meth:`methodNames`); for a method that
        needs unpaired masks (``maag``) the volumes with scribbles train and the full masks of the
        other volumes are the unpaired shape prior (:func:`cohort_labels.splitForShapePrior`); a method
        that learns from image-level labels (``imagelabel``) trains on the labels of the volumes
        that have one (``weakseg train --method imagelabel --image-labels CSV``); a method that learns
        from a source cohort (``transfer``) takes the masks of the volumes marked as source
        (:meth:`setSourceVolume`) and the image labels and scribbles of the others (``--source FOLDER``);
        a method that learns from a few masks and diagnoses (``collaborative``) takes the volumes with a
        mask or a diagnosis (:meth:`setDiagnosisLabel`): ``--masks-split`` names those with a mask.
        a method that learns from a shape model (``shape-gan``) trains on the images of the volumes
        without a full mask and takes its shapes from ``shapeModel`` (e.g. ``ellipse``, 2D per slice)
        or, without one, from the full masks of the other volumes (:func:`cohort_labels.splitForShapeGan`).
        """
        spec = self.method(method, TRAINED_USAGE)
        fromImageLabels = IMAGE_LABELS in spec["learns_from"]
        fromSource = SOURCE_MASKS in spec["learns_from"]
        fromMasks = MASKS in spec["learns_from"]
        fromShapes = SHAPE_MODEL in spec["learns_from"]
        if shapeModel and not fromShapes:
            raise WeakSegInputError(f"training method {spec['name']!r} does not take a shape model")
        rows = self.cohortRows(volumeNodes)
        if fromMasks:
            rows = cohort_labels.splitForCollaborative(rows)
        cohort_labels.checkOneClassSet(rows)
        found = cohort_labels.cohortClassNames(rows)
        if fromShapes and len(found) == 1:
            found.append("foreground")  # a shape model names no class; the library's default name
        classNames = mrml_bridge.checkClassNames(classNames or found, "cohort classes")
        modelPath = Path(modelPath)
        if not modelPath.parent.is_dir():
            raise WeakSegInputError(f"{modelPath}: its folder does not exist")
        maskRows, sourceRows = [], []
        if fromSource:
            sourceRows, rows = cohort_labels.splitForTransfer(rows)
        elif fromShapes:
            rows, maskRows = cohort_labels.splitForShapeGan(rows, shapeModel)
        elif spec["needs_unpaired_masks"]:
            rows, maskRows = cohort_labels.splitForShapePrior(rows)
        if fromImageLabels and not fromMasks:
            rows = [row for row in rows if row.imageLabel or row.sliceLabels]
            if not rows:
                raise WeakSegInputError("training from image-level labels, but no volume of the cohort has one")
        work = self._workDirectory("train")
        if fromShapes:
            cases = cohort_labels.writeImageFolder(rows, work / "data")
        else:
            cases = cohort_labels.writeTrainingFolder(rows, work / "data", classNames)
        methodArguments = ["--method", spec["name"]] + (["--shape-model", shapeModel] if shapeModel else [])
        if fromMasks:
            diagnoses.writeDiagnosisCsv(work / "data" / diagnoses.DIAGNOSES_FILE, cases)
            masked = [case for case, node in cases.items() if node.GetNodeReference(cohort_labels.MASK_ROLE)]
            methodArguments += ["--image-labels", str(work / "data" / diagnoses.DIAGNOSES_FILE),
                                "--masks-split", ",".join(masked)]
        elif fromImageLabels:
            methodArguments += ["--image-labels", str(work / "data" / cohort_labels.IMAGE_LABELS_FILE)]
        if sourceRows:
            cohort_labels.writeTrainingFolder(sourceRows, work / "source", classNames)
            methodArguments += ["--source", str(work / "source")]
        if maskRows:
            cohort_labels.writeUnpairedMasks(maskRows, work / "unpaired", classNames)
            methodArguments += ["--unpaired-masks", str(work / "unpaired")]
        command = [*self.cliCommand, "train", str(work / "data"), "--out", str(modelPath), "--classes", ",".join(classNames),
                   *methodArguments, "--progress", "lines", *(["--resume"] if resume else []), *extraArguments]

        def finish() -> str:
            if not modelPath.is_file():
                raise WeakSegInputError(f"training ended but wrote no model at {modelPath}")
            return str(modelPath)

        title = f"Training on {len(cases)} volume(s)"
        return self._job(title, command, work, finish, {str(work / "data"): "the cohort"})

    def trainCohort(self, volumeNodes: Sequence, modelPath: str | os.PathLike, classNames: Sequence[str] | None = None,
                    resume: bool = False, progressCallback: ProgressCallback | None = None,
                    extraArguments: Sequence[str] = (), method: str = "cohort", shapeModel: str = "") -> str:
        """Train a cohort model on the labels of ``volumeNodes``; blocks and returns the model path."""
        return self.startTraining(volumeNodes, modelPath, classNames, resume, extraArguments, method,
                                  shapeModel).wait(progressCallback)

    def startApplyModel(self, modelPath: str | os.PathLike, volumeNodes: Sequence,
                        extraArguments: Sequence[str] = ()) -> WeakSegJob:
        """Start ``weakseg predict`` on ``volumeNodes``; the job's result is a list of :class:`SegmentationResult`."""
        modelPath = Path(modelPath)
        if not modelPath.is_file():
            raise WeakSegInputError(f"{modelPath}: no such model file")
        if not volumeNodes:
            raise WeakSegInputError("no volume selected to apply the model to")
        for volumeNode in volumeNodes:
            mrml_bridge.checkImageVolume(volumeNode)
        self.checkDependencies()
        work = self._workDirectory("predict")
        (work / "inputs").mkdir()
        taken: set[str] = set()
        cases = {cohort_labels.caseName(node.GetName(), taken): node for node in volumeNodes}
        inputs = []
        for case, volumeNode in cases.items():
            inputs.append(str(work / "inputs" / f"{case}{mrml_bridge.FILE_SUFFIX}"))
            mrml_bridge.writeVolumeFile(volumeNode, inputs[-1])
        command = [*self.cliCommand, "predict", str(modelPath), *inputs, "--out", str(work / "outputs"),
                   "--format", ".seg.nrrd", "--progress", "lines", *extraArguments]

        def finish() -> list[SegmentationResult]:
            results = [self._readPrediction(work / "outputs", case, node, modelPath.name) for case, node in cases.items()]
            diagnoses.storePredictions(work / "outputs" / PREDICTIONS_FILE, cases)
            return results

        descriptions = {path: describeNode(node) for path, node in zip(inputs, cases.values())}
        return self._job(f"Applying {modelPath.name}", command, work, finish, descriptions)

    def applyModel(self, modelPath: str | os.PathLike, volumeNodes: Sequence,
                   progressCallback: ProgressCallback | None = None, extraArguments: Sequence[str] = ()) -> list:
        """Segment ``volumeNodes`` with a trained model; blocks and returns their result segmentation nodes."""
        results = self.startApplyModel(modelPath, volumeNodes, extraArguments).wait(progressCallback)
        return [self.applyResult(result) for result in results]

    def _readPrediction(self, folder: Path, case: str, volumeNode, method: str) -> SegmentationResult:
        """Read ``<case>.seg.nrrd`` (segment names = classes) or a ``<case>*`` labelmap from ``weakseg predict``."""
        segFile = folder / f"{case}.seg.nrrd"
        if segFile.is_file():
            return readSegmentationFile(segFile, volumeNode, method)
        candidates = sorted(path for path in folder.glob(f"{case}*") if path.is_file())
        if not candidates:
            raise WeakSegInputError(f"the model wrote no result for {describeNode(volumeNode)} in {folder}")
        labels = mrml_bridge.readLabelmapFile(candidates[0], mrml_bridge.volumeGeometry(volumeNode))
        classNames = [BACKGROUND] + [f"class_{code}" for code in range(1, max(int(labels.max()), 1) + 1)]
        return SegmentationResult(volumeNode, labels, classNames, method)

    def _job(self, title: str, command: list, work: Path, finish, descriptions: dict) -> WeakSegJob:
        """Start ``command`` here, or on the server of :attr:`compute` (same progress, cancel and result)."""
        runner = None
        if self.compute.mode == SERVER:
            try:
                runner = RemoteRunner(self.compute, command[len(self.cliCommand):])
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        return WeakSegJob(title, command, work, finish, descriptions, self.logCallback, runner=runner).start()

    def _workDirectory(self, purpose: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"WeakSeg-{purpose}-", dir=self.temporaryDirectory))


def readSegmentationFile(path: str | os.PathLike, volumeNode, method: str) -> SegmentationResult:
    """Read a ``.seg.nrrd`` onto ``volumeNode``'s grid as a result; classes = background + segment names in file order.

    The file is read into a private scene, so the user's scene does not change.
    """
    privateScene = slicer.vtkMRMLScene()
    segmentationNode = privateScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storageNode = slicer.vtkMRMLSegmentationStorageNode()
    storageNode.SetFileName(str(path))
    if not storageNode.ReadData(segmentationNode):
        raise WeakSegInputError(f"{path}: cannot be read as a segmentation")
    names = [name for name in mrml_bridge.segmentNames(segmentationNode) if name.lower() != BACKGROUND]
    classNames = [BACKGROUND] + names
    labels = mrml_bridge.segmentationToLabelmap(segmentationNode, volumeNode, classNames, fillValue=0)
    return SegmentationResult(volumeNode, labels.astype(np.int32), classNames, method)
