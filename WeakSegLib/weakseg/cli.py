"""The ``weakseg`` command line.

Each sub-command reads its inputs, checks them, runs one library function and writes
its output atomically. Bad input exits with status 2 and a one-line message naming the
file or value; a cancelled run (Ctrl-C or SIGTERM, as the Slicer module sends) exits
with 130. Neither leaves a partial output behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable

from weakseg import __version__
from weakseg.errors import CancelledError, WeakSegInputError
from weakseg.progress import Progress

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class _CancelFlag:
    """Set by SIGTERM; polled by :class:`Progress` so work stops at the next report."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, *_args) -> None:
        self.requested = True


def _progress_reporter(kind: str, cancel: _CancelFlag) -> tuple[Progress, Callable[[], None]]:
    """A Progress for ``--progress bar|lines|none`` and a function that closes it."""
    if kind == "lines":

        def print_line(fraction: float, message: str) -> None:
            print(f"PROGRESS {100 * fraction:.1f} {message}", flush=True)

        return Progress(print_line, lambda: cancel.requested), lambda: None
    if kind == "bar":
        from tqdm import tqdm

        bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]", file=sys.stderr)

        def move_bar(fraction: float, message: str) -> None:
            bar.n = 100 * fraction
            bar.set_description(message[:60], refresh=False)
            bar.refresh()

        return Progress(move_bar, lambda: cancel.requested), bar.close
    return Progress(None, lambda: cancel.requested), lambda: None


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=("bar", "lines", "none"), default="bar",
                        help="progress display: a bar, 'PROGRESS <percent> <message>' lines, or nothing")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="random seed, for reproducible runs")


def _add_unpaired(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unpaired-masks",
                        help="folder of masks of OTHER images, the shape prior of method maag "
                             "(default: the data folder's <case>_label files, with --unpaired-split)")
    parser.add_argument("--unpaired-split", help="cases whose masks serve as unpaired masks, e.g. 036-060")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="weakseg", description="Weakly-supervised medical image segmentation.")
    parser.add_argument("--version", action="version", version=f"weakseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment one image from its scribbles")
    segment.add_argument("image", help="image: NIfTI, NRRD, MHA, DICOM folder, PNG/JPG/BMP")
    segment.add_argument("--scribbles", required=True,
                         help="labelmap (0 = background, 1..K classes, 255 = unlabelled) or .seg.nrrd")
    segment.add_argument("--out", required=True, help="result: .seg.nrrd (Slicer segmentation) or a labelmap")
    segment.add_argument("--classes", help="class names in code order, background first: background,RV,Myo,LV")
    segment.add_argument("--method", default="weakseg", choices=("weakseg", "growcut"),
                         help="weakseg: learn from the scribbles; growcut: Slicer's Grow from seeds")
    segment.add_argument("--model", help="cohort model (.pt) to adapt to this image's scribbles")
    segment.add_argument("--steps", type=int, help="training steps (default: the method's own)")
    _add_common(segment)

    train = commands.add_parser("train", help="train a cohort model on a folder of images and scribbles")
    train.add_argument("data_dir", help="folder of <case>_image.* and <case>_scribble.* files")
    train.add_argument("--out", required=True, help="model file to write (.pt)")
    train.add_argument("--split", help="cases to use, e.g. 001-060 (patient numbers) or a comma list of names")
    train.add_argument("--classes", help="class names in code order, background first")
    train.add_argument("--method", default="cohort", choices=("cohort", "pce", "maag"),
                       help="cohort: U-Net, scribble losses with regularisers (default); maag: attention U-Net with "
                            "a multi-scale adversarial shape prior from unpaired masks; pce: the same network, "
                            "partial cross-entropy only")
    _add_unpaired(train)
    train.add_argument("--steps", type=int, help="training steps")
    train.add_argument("--learning-rate", type=float, help="initial learning rate (default: the method's own)")
    train.add_argument("--outside-weight", type=float,
                       help="weight of the background prior beyond the scribbles' hull (cohort: 0.1; 0 = off)")
    train.add_argument("--adversarial-weight", type=float,
                       help="maag: adversarial term relative to the supervised term (default 0.2)")
    train.add_argument("--image-size", type=int,
                       help="side in pixels every slice is resized to (default 128; 192-256 on a GPU)")
    train.add_argument("--channels",
                       help="U-Net widths per level, finest first (default 8,16,32,64,128; 16,32,64,128,256 on a GPU)")
    train.add_argument("--batch-size", type=int, help="slices per training step (default 12)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    train.add_argument("--image-labels",
                       help="train from image-level labels instead of scribbles: a CSV of image,slices,label rows "
                            "(or the case,label,first_slice,last_slice file the Slicer cohort panel writes); "
                            "images are looked up in DATA_DIR")
    train.add_argument("--mirror-excess", action="store_true",
                       help="with --image-labels: add the brighter-than-mirror channel (hyperintense lesions in "
                            "a left-right symmetric organ centred in the image, e.g. brain FLAIR)")
    _add_common(train)

    predict = commands.add_parser("predict", help="segment images with a cohort or image-label model (no scribbles)")
    predict.add_argument("model", help="model file written by 'weakseg train'")
    predict.add_argument("images", nargs="+", help="images to segment")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument("--format", default=".seg.nrrd", choices=(".seg.nrrd", ".nii.gz", ".nrrd"),
                         help="output file type")
    _add_common(predict)

    evaluate = commands.add_parser("evaluate", help="per-class Dice, Jaccard, HD95, sensitivity, specificity")
    evaluate.add_argument("prediction", help="predicted labelmap")
    evaluate.add_argument("truth", help="ground-truth labelmap on the same grid")
    evaluate.add_argument("--classes", help="class names in code order, background first")

    bench = commands.add_parser(
        "bench", help="benchmark methods on a dataset and print a table",
        description="scribbles: methods learning from scribbles on <case>_image/_scribble/_label files. "
                    "imagelabel: methods learning from slice-level labels (lesion / healthy) on a BraTS-style "
                    "folder of volumes or a medimgseg-style folder of 2D datasets (see weakseg.bench_imagelabel).")
    bench.add_argument("kind", choices=("scribbles", "imagelabel"), help="benchmark family")
    bench.add_argument("data_dir", help="scribbles: folder of <case>_image/_scribble/_label files; "
                                        "imagelabel: BraTS-style or medimgseg-style folder")
    bench.add_argument("--train-split", help="scribbles: cases to train the cohort-level models on; "
                                             "imagelabel (brats layout): comma list of case-name parts, e.g. pat0005,pat0006")
    bench.add_argument("--test-split", help="cases to evaluate on (scribbles default: all; imagelabel: as --train-split)")
    bench.add_argument("--classes", help="scribbles: class names in code order, background first")
    bench.add_argument("--methods",
                       help="comma list; scribbles: growcut, weakseg, and the cohort-level methods cohort, pce, maag "
                            "(no scribbles of the test volume), each also as NAME+scribbles (adapted to them); default "
                            "growcut,weakseg. imagelabel: intensity, cam, cam+crf, network+crf, full (default all)")
    bench.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                       help="a trained model, benchmarked as method NAME (default name: cohort; any name, "
                            "e.g. maag-long) instead of training one; repeat for several models")
    bench.add_argument("--cohort-steps", type=int, help="training steps of the cohort-level methods")
    _add_unpaired(bench)
    bench.add_argument("--layout", default="auto", choices=("auto", "brats", "medimgseg"),
                       help="imagelabel: data layout (auto: detected from the folder)")
    bench.add_argument("--channel", default="flair", help="imagelabel, brats layout: the <case>_<channel> volumes used")
    bench.add_argument("--rounds", type=int, help="imagelabel: self-training rounds (default: the method's own)")
    bench.add_argument("--steps", type=int,
                       help="imagelabel: training steps of the classifier and of each round (default: the method's own)")
    bench.add_argument("--image-size", type=int, help="imagelabel: slices are resized to this square size (default 128)")
    bench.add_argument("--out", default="bench-out", help="folder for the CSV and overlay PNGs")
    bench.add_argument("--overlays", type=int, default=3, help="cases to draw overlays for, per method")
    _add_common(bench)

    demo = commands.add_parser("demo", help="run WeakSeg and Grow from seeds on the embedded brain template")
    demo.add_argument("--out", default="weakseg-demo", help="output folder")
    demo.add_argument("--steps", type=int, help="training steps of the WeakSeg method (default: its own)")
    _add_common(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``weakseg`` command; returns the process exit status."""
    arguments = build_parser().parse_args(argv)
    cancel = _CancelFlag()
    signal.signal(signal.SIGTERM, cancel.request)
    progress, close = _progress_reporter(getattr(arguments, "progress", "none"), cancel)
    try:
        summary = _run(arguments, progress)
    except WeakSegInputError as error:
        close()
        print(f"weakseg: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CancelledError, KeyboardInterrupt):
        close()
        print("weakseg: cancelled; no output written", file=sys.stderr)
        return EXIT_CANCELLED
    close()
    if summary:
        print(summary)
    return 0


def _run(arguments: argparse.Namespace, progress: Progress) -> str | None:
    """Run the sub-command; returns text to print once the progress display is closed."""
    if arguments.command == "segment":
        from weakseg.commands import segment_command

        segment_command(arguments, progress)
    elif arguments.command == "train":
        from weakseg.commands import train_command

        train_command(arguments, progress)
    elif arguments.command == "predict":
        from weakseg.commands import predict_command

        predict_command(arguments, progress)
    elif arguments.command == "evaluate":
        from weakseg.commands import evaluate_command

        evaluate_command(arguments)
    elif arguments.command == "bench" and arguments.kind == "imagelabel":
        from weakseg.bench_imagelabel import run_imagelabel_bench

        run_imagelabel_bench(arguments, progress)
    elif arguments.command == "bench":
        from weakseg.bench import run_scribble_bench

        run_scribble_bench(arguments, progress)
    elif arguments.command == "demo":
        from weakseg.demo import run_demo

        return run_demo(Path(arguments.out), progress, arguments.device, arguments.seed, arguments.steps).summary
    return None


if __name__ == "__main__":
    sys.exit(main())
