"""``weakseg demo``: the main job end to end on the embedded brain template.

The case (:mod:`weakseg.demo_data`) is written to the output folder as ordinary files
and then read back through the same path a user's data takes, so the demo exercises
reading, scribble checks, both methods, scoring and writing a Slicer segmentation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weakseg.errors import WeakSegInputError
from weakseg.figure import titled_figure
from weakseg.io import read_image, read_labelmap, write_image
from weakseg.metrics import dice_per_class
from weakseg.overlay import paint_slice, write_png
from weakseg.progress import Progress
from weakseg.results import write_result
from weakseg.contract import palette_color
from weakseg.weak_labels import UNLABELLED, load_scribbles

METHOD_TITLES = {"weakseg": "WeakSeg (interactive)", "growcut": "Grow from seeds"}
SCRIBBLE_BACKGROUND_COLOUR = (0.85, 0.85, 0.85)


@dataclass
class DemoReport:
    """What the demo found.

    Attributes:
        scores: per method, the Dice of each foreground class, then the seconds taken.
        summary: the text to print once the progress display is closed: the case's
            description, the result table and where the outputs are.
    """

    scores: dict[str, list[float]]
    summary: str


def run_demo(
    out: Path, progress: Progress, device_name: str = "auto", seed: int = 0, steps: int | None = None
) -> DemoReport:
    """Segment the demo case with WeakSeg and with Grow from seeds and score both.

    Writes to ``out``: the case (``image.nii.gz``, ``scribbles.nii.gz``, ``truth.nii.gz``),
    one ``.seg.nrrd`` per method, and ``overlay.png`` (titled panels: image with
    scribbles, truth, WeakSeg and Grow from seeds with their Dice, and a colour legend).
    Prints nothing, so that the caller can print :attr:`DemoReport.summary` after its
    progress display is gone.
    """
    from weakseg.demo_data import load_demo_case
    from weakseg.apply import segment_image

    try:
        case = load_demo_case()
    except ImportError as error:
        raise WeakSegInputError(str(error)) from None
    paths = {name: out / f"{name}.nii.gz" for name in ("image", "scribbles", "truth")}
    write_image(case.image, paths["image"])
    write_image(case.scribbles, paths["scribbles"])
    write_image(case.truth, paths["truth"])

    image = read_image(paths["image"])
    scribbles = load_scribbles(paths["scribbles"], image, case.class_names)
    truth = read_labelmap(paths["truth"], image.reference)
    results = {}
    scores = {}
    for index, method in enumerate(METHOD_TITLES):
        started = time.perf_counter()
        labels = segment_image(image, scribbles, method=method, steps=steps, device_name=device_name, seed=seed,
                               progress=progress.part(index / 2, (index + 1) / 2))
        seconds = time.perf_counter() - started
        results[method] = labels
        scores[method] = [float(value) for value in dice_per_class(labels, truth, scribbles.num_classes)[1:]]
        write_result(out / f"{method}.seg.nrrd", labels, image.reference, scribbles.class_names)
        scores[method].append(seconds)
    write_png(out / "overlay.png", demo_figure(image.array, scribbles.labels, truth, results, scores,
                                               scribbles.class_names))
    summary = "\n".join([
        case.description,
        "",
        _table(scores, scribbles.class_names[1:]),
        "",
        f"outputs in {out}/: weakseg.seg.nrrd, growcut.seg.nrrd (open in 3D Slicer with image.nii.gz), overlay.png",
    ])
    return DemoReport(scores=scores, summary=summary)


def demo_figure(
    image: np.ndarray,
    scribbles: np.ndarray,
    truth: np.ndarray,
    results: dict[str, np.ndarray],
    scores: dict[str, list[float]],
    class_names: list[str],
) -> np.ndarray:
    """The demo's overlay: one axial slice as four titled panels with a colour legend.

    The slice is the scribbled slice with the most tissue, so that panel one shows the
    strokes the methods learnt from. Arrays are ``(C, Z, Y, X)`` for the image and
    ``(Z, Y, X)`` codes for the rest; returns uint8 RGB.
    """
    scribbled = np.flatnonzero((scribbles != UNLABELLED).reshape(len(scribbles), -1).any(axis=1))
    tissue = (truth > 0).reshape(len(truth), -1).sum(axis=1)
    slice_index = int(scribbled[np.argmax(tissue[scribbled])]) if scribbled.size else int(np.argmax(tissue))
    panels = [("Image + scribbles", paint_slice(image, scribbles, slice_index, scribbles=True)),
              ("Truth", paint_slice(image, truth, slice_index))]
    for method, title in METHOD_TITLES.items():
        dice = scores[method][:-1]
        panels.append((f"{title.split(' (')[0]}: Dice {sum(dice) / len(dice):.3f}",
                       paint_slice(image, results[method], slice_index)))
    legend = [(f"{class_names[0]} (scribbles only)", SCRIBBLE_BACKGROUND_COLOUR)]
    legend += [(name, palette_color(code)) for code, name in enumerate(class_names) if code > 0]
    per_class = "; ".join(
        f"{METHOD_TITLES[method]}: " + ", ".join(f"{name} {value:.3f}" for name, value in
                                                 zip(class_names[1:], scores[method][:-1]))
        for method in METHOD_TITLES
    )
    heading = (f"MNI ICBM152 2009a T1 template, axial slice {slice_index + 1} of {len(truth)}: "
               "grey and white matter from scribbles")
    footnote = f"Dice in the titles: mean over the classes. {per_class}"
    return titled_figure(panels, legend, heading=heading, footnote=footnote)


def _table(scores: dict[str, list[float]], foreground: list[str]) -> str:
    header = "| method | " + " | ".join(f"Dice {name}" for name in foreground) + " | mean Dice | seconds |"
    lines = [header, "|" + "---|" * (len(foreground) + 3)]
    for method, values in scores.items():
        dice, seconds = values[:-1], values[-1]
        cells = [f"{value:.3f}" for value in dice] + [f"{sum(dice) / len(dice):.3f}", f"{seconds:.1f}"]
        lines.append(f"| {METHOD_TITLES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
