"""``weakseg demo``: the main job end to end on the embedded brain template.

The case (:mod:`weakseg.demo_data`) is written to the output folder as ordinary files
and then read back through the same path a user's data takes, so the demo exercises
reading, scribble checks, both methods, scoring and writing a Slicer segmentation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from weakseg.errors import WeakSegInputError
from weakseg.io import read_image, read_labelmap, write_image
from weakseg.metrics import dice_per_class
from weakseg.overlay import overlay_picture, write_png
from weakseg.progress import Progress
from weakseg.results import write_result
from weakseg.weak_labels import load_scribbles


def run_demo(
    out: Path, progress: Progress, device_name: str = "auto", seed: int = 0, steps: int | None = None
) -> dict[str, list[float]]:
    """Segment the demo case with WeakSeg and with Grow from seeds; print and return Dice.

    Writes to ``out``: the case (``image.nii.gz``, ``scribbles.nii.gz``, ``truth.nii.gz``),
    one ``.seg.nrrd`` per method, and ``overlay.png`` (image with scribbles | truth |
    WeakSeg | Grow from seeds).
    """
    from weakseg.demo_data import load_demo_case
    from weakseg.apply import segment_image

    try:
        case = load_demo_case()
    except ImportError as error:
        raise WeakSegInputError(str(error)) from None
    print(case.description)
    paths = {name: out / f"{name}.nii.gz" for name in ("image", "scribbles", "truth")}
    write_image(case.image, paths["image"])
    write_image(case.scribbles, paths["scribbles"])
    write_image(case.truth, paths["truth"])

    image = read_image(paths["image"])
    scribbles = load_scribbles(paths["scribbles"], image, case.class_names)
    truth = read_labelmap(paths["truth"], image.reference)
    results = {}
    scores = {}
    for index, method in enumerate(("weakseg", "growcut")):
        started = time.perf_counter()
        labels = segment_image(image, scribbles, method=method, steps=steps, device_name=device_name, seed=seed,
                               progress=progress.part(index / 2, (index + 1) / 2))
        seconds = time.perf_counter() - started
        results[method] = labels
        scores[method] = [float(value) for value in dice_per_class(labels, truth, scribbles.num_classes)[1:]]
        write_result(out / f"{method}.seg.nrrd", labels, image.reference, scribbles.class_names)
        scores[method].append(seconds)
    picture = overlay_picture(image.array, truth, results["weakseg"], scribbles.labels)
    growcut_panel = overlay_picture(image.array, None, results["growcut"])[:, image.shape_zyx[2]:]
    write_png(out / "overlay.png", np.concatenate([picture, growcut_panel], axis=1))
    print(_table(scores, scribbles.class_names[1:]))
    print(f"outputs in {out}/: weakseg.seg.nrrd, growcut.seg.nrrd (open in 3D Slicer with image.nii.gz), overlay.png")
    return scores


def _table(scores: dict[str, list[float]], foreground: list[str]) -> str:
    header = "| method | " + " | ".join(f"Dice {name}" for name in foreground) + " | mean Dice | seconds |"
    lines = [header, "|" + "---|" * (len(foreground) + 3)]
    labels = {"weakseg": "WeakSeg (interactive)", "growcut": "Grow from seeds"}
    for method, values in scores.items():
        dice, seconds = values[:-1], values[-1]
        cells = [f"{value:.3f}" for value in dice] + [f"{sum(dice) / len(dice):.3f}", f"{seconds:.1f}"]
        lines.append(f"| {labels[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

