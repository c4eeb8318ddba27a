"""A stand-in for the ``weakseg`` command line that follows the shared contract.

It lets the Slicer-side tests check everything the extension does around the command line
(arguments, file formats, geometry, progress lines, exit codes, cancel) in well under a
second, without training anything:

* ``segment --method growcut``: WeakSegLib's real grow-cut (Slicer's *Grow from seeds*), so
  a Dice measured through it is grow-cut's; any other per-image method of the library
  (``interactive``, its old spelling ``weakseg``, ...): every voxel takes the class
  whose scribbles' mean intensity is closest to its own (no learning: a result matches the
  truth only if image and scribbles reached it aligned; never a Dice claim for a method);
* ``train``: checks the training folder, read as the real command reads it (every
  ``_scribble``/``_label`` file on its image's grid) and writes a JSON "model" naming its classes, cases and image labels; ``--resume``
  needs the model file, as the real command does; it accepts the real command line's training
  settings (``--steps`` ...) and ignores them;
* ``predict``: labels voxels in the top quarter of the intensity range as the model's first
  foreground class and writes ``<input name without its suffix>.seg.nrrd`` (the real
  command's naming) with WeakSegLib's writer; for a model trained with ``--masks-split``
  (method collaborative) also ``predictions.csv``, every image given the first diagnosis
  (sorted) with probability 0.75;
* ``methods --json``: the real library's method list (the stand-in offers the same methods).

Exit status as the real command: 0 done, 2 bad input, 130 on SIGTERM (cancel).
``Testing/extension/test_contract_cli.py`` checks this stand-in against the real command line.

Test-only switches (environment): ``WEAKSEG_STUB_SLEEP=<seconds>`` sleeps while reporting
progress before working (to test cancel); ``WEAKSEG_STUB_FAIL=<message>`` exits with code 2
and "<first input file>: <message>" (to test error reporting); ``WEAKSEG_STUB_RECORD=<file>``
appends each command line (the arguments after the program, one JSON list a line) to the file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

UNLABELLED = 255


def progress(percent: float, message: str) -> None:
    print(f"PROGRESS {percent:.0f} {message}", flush=True)


def fail(message: str) -> None:
    print(f"weakseg: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def cancel(*_arguments) -> None:
    print("weakseg: cancelled; no output written", file=sys.stderr, flush=True)
    sys.exit(130)


def testSwitches(firstInput: str) -> None:
    if os.environ.get("WEAKSEG_STUB_FAIL"):
        fail(f"{firstInput}: {os.environ['WEAKSEG_STUB_FAIL']}")
    seconds = float(os.environ.get("WEAKSEG_STUB_SLEEP", "0"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress(1, "waiting")
        time.sleep(0.1)


def sameGrid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    )


def segment(arguments) -> None:
    image = sitk.ReadImage(arguments.image)
    scribbles = sitk.ReadImage(arguments.scribbles)
    if not sameGrid(image, scribbles):
        fail(f"{arguments.scribbles}: does not match the image's grid")
    classes = arguments.classes.split(",")
    if arguments.method == "growcut":
        growFromSeeds(arguments, image, classes)
        return
    codes = sitk.GetArrayFromImage(scribbles)
    intensities = sitk.GetArrayFromImage(image).astype(float)
    progress(10, "scribbles read")
    distances = []
    for code, name in enumerate(classes):
        scribbled = intensities[codes == code]
        distances.append(np.abs(intensities - scribbled.mean()) if scribbled.size else np.full(codes.shape, np.inf))
        progress(10 + 80 * (code + 1) / len(classes), f"class {name}")
    labels = sitk.GetImageFromArray(np.argmin(np.stack(distances), axis=0).astype(np.uint8))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, arguments.out)
    progress(100, "done")


def growFromSeeds(arguments, image: sitk.Image, classes: list) -> None:
    from weakseg.io import read_image
    from weakseg.methods.growcut import segment_growcut
    from weakseg.weak_labels import load_scribbles

    progress(10, "growing from seeds")
    loaded = read_image(arguments.image)
    labels = sitk.GetImageFromArray(segment_growcut(loaded, load_scribbles(arguments.scribbles, loaded, classes)))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, arguments.out)
    progress(100, "done")


def train(arguments) -> None:
    from weakseg.cases import list_cases
    from weakseg.errors import WeakSegInputError

    folder = Path(arguments.data_dir)
    if arguments.resume and not Path(arguments.out).is_file():
        fail(f"{arguments.out}: no such model file")
    try:
        found = list_cases(str(folder), None, require_scribbles=False)
    except WeakSegInputError as error:
        fail(str(error))
    cases = [case.name for case in found]
    for case in found:
        for path in (case.scribble_path, case.label_path):
            if path and not sameGrid(sitk.ReadImage(case.image_path), sitk.ReadImage(path)):
                fail(f"{path}: does not match its image's grid")
        progress(100 * (cases.index(case.name) + 1) / len(cases), f"case {case.name}")
    labelsFile = folder / "image_labels.csv"
    model = {
        "classes": arguments.classes.split(","),
        "cases": cases,
        "scribbled": [case.name for case in found if case.scribble_path],
        "masked": [case.name for case in found if case.label_path],
        "image_labels": labelsFile.read_text().splitlines() if labelsFile.exists() else [],
        "method": arguments.method if arguments.method != "cohort" or not arguments.image_labels else "imagelabel",
        "unpaired": sorted(path.name for path in Path(arguments.unpaired_masks).iterdir()) if arguments.unpaired_masks else [],
        "shape_model": getattr(arguments, "shape_model", None),
        "resumed": arguments.resume,
        "source": sorted(path.name for path in Path(arguments.source).glob("*_label.*")) if arguments.source else [],
        "masks_split": arguments.masks_split,
        "diagnoses": _diagnoses(arguments.image_labels) if arguments.masks_split else {},
    }
    Path(arguments.out).write_text(json.dumps(model))


def _diagnoses(path: str) -> dict:
    """``{case: diagnosis}`` of a diagnosis CSV (method collaborative)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return {row["case"]: row["diagnosis"] for row in csv.DictReader(handle)}


def _writePredictions(folder: Path, stems: list, diagnoses: list) -> None:
    """``predictions.csv`` as the real command writes it: every image gets the first diagnosis, probability 0.75."""
    import csv

    share = 0.25 / max(len(diagnoses) - 1, 1)
    with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "diagnosis"] + [f"p_{name}" for name in diagnoses])
        for stem in stems:
            writer.writerow([stem, diagnoses[0]] + [f"{0.75 if index == 0 else share:.4f}" for index in range(len(diagnoses))])


def predict(arguments) -> None:
    from weakseg.contract import class_color
    from weakseg.io import suffix_of
    from weakseg.segnrrd import Segment, write_seg_nrrd

    model = json.loads(Path(arguments.model).read_text())
    foreground = model["classes"][1]
    os.makedirs(arguments.out, exist_ok=True)
    for index, path in enumerate(arguments.images):
        image = sitk.ReadImage(path)
        array = sitk.GetArrayFromImage(image).astype(float)
        labels = (array > array.min() + 0.75 * (array.max() - array.min())).astype(np.uint8)
        name = Path(path).name
        stem = name[: len(name) - len(suffix_of(name))]
        if arguments.format != ".seg.nrrd":
            fail(f"{arguments.format}: the stand-in writes .seg.nrrd only")
        write_seg_nrrd(Path(arguments.out) / f"{stem}.seg.nrrd", labels, image, [Segment(foreground, 1, class_color(foreground, 1))])
        progress(100 * (index + 1) / len(arguments.images), f"{stem}")
    if model.get("diagnoses"):
        names = [Path(path).name for path in arguments.images]
        _writePredictions(Path(arguments.out), [name[: len(name) - len(suffix_of(name))] for name in names],
                          sorted(set(model["diagnoses"].values())))


def methods(arguments) -> None:
    from weakseg.methods.registry import describe_methods

    print(json.dumps({"methods": describe_methods()}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="weakseg")
    commands = parser.add_subparsers(dest="command", required=True)
    methodsParser = commands.add_parser("methods")
    methodsParser.add_argument("--json", action="store_true")
    segmentParser = commands.add_parser("segment")
    segmentParser.add_argument("image")
    segmentParser.add_argument("--scribbles", required=True)
    segmentParser.add_argument("--out", required=True)
    segmentParser.add_argument("--classes", required=True)
    from weakseg.methods.registry import PER_IMAGE, TRAINED, accepted_names, training_options

    segmentParser.add_argument("--method", choices=accepted_names(PER_IMAGE), default="interactive")
    segmentParser.add_argument("--cache", help="accepted as the real command does; the stand-in trains nothing to keep")
    trainParser = commands.add_parser("train")
    trainParser.add_argument("data_dir")
    trainParser.add_argument("--out", required=True)
    trainParser.add_argument("--classes", required=True)
    trainParser.add_argument("--resume", action="store_true")
    trainParser.add_argument("--method", choices=accepted_names(TRAINED), default="cohort")
    trainParser.add_argument("--unpaired-masks")
    trainParser.add_argument("--image-labels")
    trainParser.add_argument("--source")
    trainParser.add_argument("--masks-split")

    for option, takers in training_options().items():  # the real CLI's settings options, accepted as given
        if takers[0][1][0].kind == "bool":
            trainParser.add_argument(option, action="store_true")
        else:
            trainParser.add_argument(option)
    predictParser = commands.add_parser("predict")
    predictParser.add_argument("model")
    predictParser.add_argument("images", nargs="+")
    predictParser.add_argument("--out", required=True)
    predictParser.add_argument("--format", choices=(".seg.nrrd", ".nii.gz", ".nrrd"), default=".seg.nrrd")
    for sub in (segmentParser, trainParser, predictParser):
        sub.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    if os.environ.get("WEAKSEG_STUB_RECORD"):
        with open(os.environ["WEAKSEG_STUB_RECORD"], "a") as record:
            record.write(json.dumps(sys.argv[1:]) + "\n")
    signal.signal(signal.SIGTERM, cancel)
    arguments = parser.parse_args()
    if arguments.command == "methods":
        methods(arguments)
        return
    firstInput = {"segment": "scribbles", "train": "data_dir", "predict": "model"}[arguments.command]
    testSwitches(getattr(arguments, firstInput))
    {"segment": segment, "train": train, "predict": predict}[arguments.command](arguments)


if __name__ == "__main__":
    main()
