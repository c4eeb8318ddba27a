"""Time ``weakseg predict`` of a 256x256x150 volume: each stage, the method, the whole command.

Builds the volume once (an ACDC image resized to 150 slices of 256x256 when the data
folder is given, else a smooth synthetic volume; the time does not depend on the content),
then runs ``REPEATS`` times: the stages of the cohort prediction one by one, the method as
``weakseg.apply.predict_image`` (the bench's method time: files excluded) and the whole
``weakseg predict`` command in a fresh process (start-up, reading, writing included).
Prints a Markdown table of medians (wall and CPU seconds; the command's CPU is its process's). The model
only needs the default architecture: the time does not depend on its weights.

    OMP_NUM_THREADS=2 python docs/scripts/predict_speed.py MODEL.pt --data ../shared/data/acdc --out /tmp/predict-speed
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch.nn import functional as F

from weakseg.apply import load_model, predict_image
from weakseg.data import normalise_intensity, resize_images, volume_to_slices
from weakseg.inference import flip_averaged_softmax, keep_largest_components, most_probable_class, to_image_grid
from weakseg.io import read_image

SHAPE_ZYX = (150, 256, 256)


def make_volume(path: Path, data_dir: str | None) -> None:
    """Write the test volume: an ACDC image resized to :data:`SHAPE_ZYX`, or a synthetic one."""
    source = Path(data_dir or "") / "patient061_frame01_image.nii.gz"
    if data_dir and source.is_file():
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(source), sitk.sitkFloat32))
        volume = F.interpolate(torch.from_numpy(array)[None, None], size=SHAPE_ZYX, mode="trilinear")[0, 0].numpy()
    else:
        z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE_ZYX), indexing="ij")
        volume = (1000 * np.exp(-4 * (x**2 + y**2 + z**2))).astype(np.float32)
    image = sitk.GetImageFromArray(volume.astype(np.int16))
    image.SetSpacing((1.4, 1.4, 1.0))
    sitk.WriteImage(image, str(path), True)


def timed(function) -> tuple[object, float, float]:
    """``function()``'s result, wall seconds and CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_times(model, image) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of each stage of a cohort prediction, run one after the other."""
    cohort = model.model
    times = {}
    normalised, *times["normalise"] = timed(lambda: normalise_intensity(image.array))
    slices, *times["resize to the network"] = timed(
        lambda: resize_images(volume_to_slices(normalised), (cohort.image_size, cohort.image_size)))
    small, *times["network (4 flips)"] = timed(lambda: flip_averaged_softmax(cohort.network, slices, cohort.device))
    probabilities, *times["resize to the image"] = timed(lambda: to_image_grid(small, image.array.shape[-2:], 1e-8))
    labels, *times["argmax"] = timed(lambda: most_probable_class(probabilities))
    _, *times["largest component"] = timed(lambda: keep_largest_components(labels, cohort.num_classes))
    return times


def main(model_path: str, data_dir: str | None, out: str, repeats: int) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    volume = out_dir / "volume.nii.gz"
    if not volume.is_file():
        make_volume(volume, data_dir)
    model = load_model(model_path, "cpu")
    image = read_image(str(volume))
    predict_image(model, image)
    rows: dict[str, list[tuple[float, float]]] = {}
    command = [sys.executable, "-m", "weakseg", "predict", model_path, str(volume), "--out", str(out_dir / "result"),
               "--progress", "none", "--device", "cpu"]
    for _ in range(repeats):
        for stage, seconds in stage_times(model, image).items():
            rows.setdefault(stage, []).append(seconds)
        _, *method = timed(lambda: predict_image(model, image))
        rows.setdefault("method (predict_image)", []).append(tuple(method))
        before, started = children_cpu_seconds(), time.perf_counter()
        subprocess.run(command, check=True)
        rows.setdefault("whole command (weakseg predict)", []).append(
            (time.perf_counter() - started, children_cpu_seconds() - before))
    print(f"{SHAPE_ZYX[2]}x{SHAPE_ZYX[1]}x{SHAPE_ZYX[0]} volume, torch threads {torch.get_num_threads()}, "
          f"{repeats} repeats, load average {os.getloadavg()[0]:.1f} at the end")
    print("| stage | median wall s | median CPU s |")
    print("|---|---|---|")
    for stage, values in rows.items():
        wall = statistics.median(value[0] for value in values)
        cpu = statistics.median(value[1] for value in values)
        print(f"| {stage} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", help="ACDC folder (patient061_frame01_image.nii.gz is resized into the test volume)")
    parser.add_argument("--out", default="predict-speed")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.model, arguments.data, arguments.out, arguments.repeats)
