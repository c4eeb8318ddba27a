"""The ``weakseg`` command line.

Each sub-command checks every argument first (:mod:`weakseg.cli_checks`), then runs one
library function and writes its output atomically. Bad input exits with status 2 and a
one-line message naming the file or value; a cancelled run (Ctrl-C or SIGTERM, as the
Slicer module sends) exits with 130. Neither leaves a partial output behind.

Methods, their options, help texts and defaults come from the method registry
(:mod:`weakseg.methods.registry`); building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable

from weakseg import __version__
from weakseg.contract import ERROR_PREFIX, EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK
from weakseg.errors import CancelledError, WeakSegInputError
from weakseg.methods.registry import METHODS, accepted_names, method_names, training_options
from weakseg.methods.spec import PER_IMAGE, TRAINED, UNPAIRED_MASKS
from weakseg.progress import Progress
from weakseg.settings import NORMALISATIONS

__all__ = ["EXIT_BAD_INPUT", "EXIT_CANCELLED", "EXIT_OK", "build_parser", "main"]


class _CancelFlag:
    """Set by SIGTERM; polled by :class:`Progress` so work stops at the next report."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, *_args) -> None:
        self.requested = True


class _Bar:
    """A tqdm bar made at the first report (so nothing is drawn before an early error) and closed before output."""

    def __init__(self) -> None:
        self._bar = None

    def move(self, fraction: float, message: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]",
                             file=sys.stderr)
        self._bar.n = 100 * fraction
        self._bar.set_description(message[:60], refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _progress_reporter(kind: str, cancel: _CancelFlag) -> tuple[Progress, Callable[[], None]]:
    """A Progress for ``--progress bar|lines|none`` and a function that ends its display."""
    if kind == "lines":

        def print_line(fraction: float, message: str) -> None:
            print(f"PROGRESS {100 * fraction:.1f} {message}", flush=True)

        return Progress(print_line, lambda: cancel.requested), lambda: None
    if kind == "bar":
        bar = _Bar()
        return Progress(bar.move, lambda: cancel.requested), bar.close
    return Progress(None, lambda: cancel.requested), lambda: None


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=("bar", "lines", "none"), default="bar",
                        help="progress display: a bar, 'PROGRESS <percent> <message>' lines, or nothing")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="random seed, for reproducible runs")


def _add_profile(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--profile", action="store_true",
                        help=f"{what}; peak memory is the process's resident-set peak of each stage (Linux; elsewhere "
                             "the peak so far, via getrusage) and torch's own peak on CUDA")


def _add_unpaired(parser: argparse.ArgumentParser) -> None:
    takers = ", ".join(spec.name for spec in METHODS if UNPAIRED_MASKS in spec.learns_from)
    parser.add_argument("--unpaired-masks",
                        help=f"folder of masks of OTHER images, the shape prior of {takers} "
                             "(default: the data folder's <case>_label files, with --unpaired-split)")
    parser.add_argument("--unpaired-split", help="cases whose masks serve as unpaired masks, e.g. 036-060")


def _shown(value) -> str:
    """A default as the command line writes it: ``8,16,32``, ``0.002``, ``3000``."""
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "none"


def _default_text(items: list) -> str:
    """One method's default of an option (each field's when the option sets several)."""
    if len(items) == 1:
        return _shown(items[0].default)
    return ", ".join(f"{item.name} {_shown(item.default)}" for item in items)


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """One argument per settings option of the trained methods; help lists each method's true default."""
    for option, takers in training_options().items():
        first = takers[0][1][0]
        groups: dict[str, list[str]] = {}
        for name, items in takers:
            groups.setdefault(_default_text(items), []).append(name)
        defaults = "; ".join(f"{', '.join(names)}: {text}" for text, names in groups.items())
        help_text = f"{first.help} (default {defaults})"
        if first.kind == "bool":
            parser.add_argument(option, action="store_true", default=None, help=help_text)
        else:
            metavar = "{" + ",".join(first.choices) + "}" if first.choices else first.kind.upper()
            parser.add_argument(option, metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="weakseg", description="Weakly-supervised medical image segmentation.")
    parser.add_argument("--version", action="version", version=f"weakseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    per_image = method_names(PER_IMAGE)
    segment = commands.add_parser("segment", help="segment one image from its scribbles")
    segment.add_argument("image", help="image: NIfTI, NRRD, MHA, DICOM folder, PNG/JPG/BMP")
    segment.add_argument("--scribbles", required=True,
                         help="labelmap (0 = background, 1..K classes, 255 = unlabelled) or .seg.nrrd")
    segment.add_argument("--out", required=True, help="result: .seg.nrrd (Slicer segmentation) or a labelmap")
    segment.add_argument("--classes", help="class names in code order, background first: background,RV,Myo,LV")
    segment.add_argument("--method", default=per_image[0], choices=accepted_names(PER_IMAGE), metavar="|".join(per_image),
                         help="; ".join(f"{spec.name}{' (or ' + ', '.join(spec.aliases) + ')' if spec.aliases else ''}: "
                                        f"{spec.summary}" for spec in METHODS if spec.usage == PER_IMAGE))
    segment.add_argument("--model", help="trained model (.pt) to adapt to this image's scribbles (method interactive)")
    segment.add_argument("--steps", type=int, help="training steps (default: the method's own; with --model: 60)")
    segment.add_argument("--cache", metavar="DIR",
                         help="method interactive: keep the trained network in DIR, keyed by the image's content; "
                              "segmenting the same image again (e.g. after adding scribbles) starts from it and "
                              "trains fewer steps")
    _add_profile(segment, "print a table of seconds and peak memory per stage after the result")
    _add_common(segment)

    trained = method_names(TRAINED)
    train = commands.add_parser("train", help="train a model on a folder of images with weak labels")
    train.add_argument("data_dir", help="folder of <case>_image.* and <case>_scribble.* files (or the images "
                                        "an --image-labels CSV names)")
    train.add_argument("--out", required=True, help="model file to write (.pt); a file already there is kept as "
                                                    "NAME.previous.pt (then .previous-2.pt, ...) unless --resume")
    train.add_argument("--method", choices=trained,
                       help="; ".join(f"{spec.name}: {spec.summary}" for spec in METHODS if spec.usage == TRAINED)
                            + f" (default {trained[0]}; imagelabel when --image-labels is given)")
    train.add_argument("--split", help="cases to use, e.g. 001-060 (patient numbers) or a comma list of names")
    train.add_argument("--classes", help="class names in code order, background first (default: from the data)")
    train.add_argument("--image-labels",
                       help="method imagelabel: a CSV of image,slices,label rows (or the case,label,first_slice,"
                            "last_slice file the Slicer cohort panel writes); images are looked up in DATA_DIR")
    train.add_argument("--source", help="method transfer: folder of the fully segmented source cohort "
                                        "(<case>_image and <case>_label files)")
    train.add_argument("--source-split", help="method transfer: source cases to use, e.g. 001-060 (default all)")
    train.add_argument("--masks-split", help="method collaborative: cases whose full masks (<case>_label or "
                                             "<case>_mask files) it learns from, e.g. IMD002,IMD058 or 1-40")
    _add_unpaired(train)
    _add_training_options(train)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    _add_common(train)

    predict = commands.add_parser("predict", help="segment images with a trained model (no scribbles)")
    predict.add_argument("model", help="model file written by 'weakseg train'")
    predict.add_argument("images", nargs="+", help="images to segment")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument("--format", default=".seg.nrrd", choices=(".seg.nrrd", ".nii.gz", ".nrrd"),
                         help="output file type")
    predict.add_argument("--no-post-processing", action="store_true",
                         help="the network's raw output: no flip averaging, no largest-component filter")
    _add_common(predict)

    evaluate = commands.add_parser("evaluate", help="per-class Dice, Jaccard, HD95, sensitivity, specificity")
    evaluate.add_argument("prediction", help="predicted labelmap")
    evaluate.add_argument("truth", help="ground-truth labelmap on the same grid")
    evaluate.add_argument("--classes", help="class names in code order, background first")

    _add_bench(commands)

    demo = commands.add_parser("demo", help="run WeakSeg and Grow from seeds on the embedded brain template")
    demo.add_argument("--out", default="weakseg-demo", help="output folder")
    demo.add_argument("--steps", type=int, help="training steps of the interactive method (default: its own)")
    _add_common(demo)

    from weakseg.serve.options import add_serve_parser

    add_serve_parser(commands)

    methods = commands.add_parser("methods", help="list the methods, what they learn from and their options")
    methods.add_argument("--json", action="store_true", help="machine-readable (the Slicer module reads it)")
    return parser


def _add_post_processing(parser) -> None:
    """``--post-processing`` of the benchmarks that score trained models."""
    parser.add_argument("--post-processing", default="on,off",
                        help="score trained models with (on) and/or without (off: rows 'NAME (raw)', no flip "
                             "averaging, no largest-component filter) post-processing; default on,off")


def _add_bench(commands) -> None:
    from weakseg.bench.imagelabel import DEFAULT_ROWS, IMAGELABEL_METHODS
    from weakseg.bench.scribbles import DEFAULT_METHODS, bench_method_names

    bench = commands.add_parser("bench", help="benchmark methods on a dataset and print a table")
    kinds = bench.add_subparsers(dest="kind", required=True,
                                 metavar="{scribbles,imagelabel,transfer,semisup,shapegan}")

    scribbles = kinds.add_parser(
        "scribbles", help="methods learning from scribbles on <case>_image/_scribble/_label files")
    scribbles.add_argument("data_dir", help="folder of <case>_image/_scribble/_label files")
    scribbles.add_argument("--train-split", help="cases to train the trained methods on, e.g. 001-060")
    scribbles.add_argument("--test-split", help="cases to evaluate on (default: all with a label file)")
    scribbles.add_argument("--classes", help="class names in code order, background first")
    scribbles.add_argument("--methods", help=f"comma list of {', '.join(bench_method_names())} or a --model NAME "
                                             f"(+scribbles: adapted to the test volume's scribbles); default "
                                             f"{','.join(DEFAULT_METHODS)}")
    scribbles.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                           help="a trained model, benchmarked as method NAME (default name: cohort; any name, "
                                "e.g. maag-long) instead of training one; repeat for several models")
    scribbles.add_argument("--cohort-steps", type=int, help="training steps of the trained methods")
    _add_post_processing(scribbles)
    _add_unpaired(scribbles)
    scribbles.add_argument("--out", default="bench-out", help="folder for the CSV and overlay PNGs")
    scribbles.add_argument("--overlays", type=int, default=3, help="cases to draw overlays for, per method")
    _add_profile(scribbles, "add seconds per stage and peak memory columns (cases.csv, summary.csv) and a "
                            "per-stage table")
    _add_common(scribbles)

    imagelabel = kinds.add_parser(
        "imagelabel", help="the image-label pipeline and its baselines on a BraTS-style or medimgseg-style folder")
    imagelabel.add_argument("data_dir", help="BraTS-style folder of volumes or medimgseg-style folder of 2D datasets")
    imagelabel.add_argument("--layout", default="auto", choices=("auto", "brats", "medimgseg"),
                            help="data layout (auto: detected from the folder)")
    imagelabel.add_argument("--train-split", help="brats layout: comma list of case-name parts, e.g. pat0005,pat0006")
    imagelabel.add_argument("--test-split", help="brats layout: as --train-split")
    imagelabel.add_argument("--methods", help=f"comma list of {', '.join(IMAGELABEL_METHODS)} "
                                              f"(default {','.join(DEFAULT_ROWS)})")
    imagelabel.add_argument("--channel", default="flair", help="brats layout: the <case>_<channel> volumes used")
    imagelabel.add_argument("--rounds", type=int, help="self-training rounds (default: the method's own)")
    imagelabel.add_argument("--steps", type=int,
                            help="training steps of the classifier and of each round, or of cycle's segmentation "
                                 "network (default: the method's own)")
    imagelabel.add_argument("--gan-steps", type=int, help="rows cycle, cycle-net, cycle-net-alone: steps of the translation game "
                                                          "(default: the method's own)")
    imagelabel.add_argument("--image-size", type=int, help="slices are resized to this square size (default 128)")
    imagelabel.add_argument("--no-cam-guide", action="store_true",
                            help="rows cycle, cycle-net, cycle-net-alone: train the cycle model without the CAM's "
                                 "guidance (see weakseg train --method cycle --help)")
    imagelabel.add_argument("--normalisation", choices=NORMALISATIONS,
                            help="both models' intensity normalisation (see weakseg train --help); default: the "
                                 "methods' own (auto)")
    imagelabel.add_argument("--dice-weight", type=float,
                            help="rows network+crf, full: weight of the soft Dice term in the segmentation "
                                 "network's loss (see weakseg train --help); default: the method's own (0)")
    imagelabel.add_argument("--class-balance", choices=("dataset", "image"),
                            help="pseudo-label cut-off per class: over all slices (dataset) or per slice (image); "
                                 "default: the method's own")
    imagelabel.add_argument("--seeds", help="comma list of seeds, e.g. 0,1,2: one run per seed (OUT/seed-N) and "
                                            "the mean and spread of each row over them (instead of --seed)")
    imagelabel.add_argument("--out", default="bench-out", help="folder for the CSV and overlay PNGs")
    imagelabel.add_argument("--overlays", type=int, default=3, help="cases to draw overlays for, per method")
    _add_common(imagelabel)

    from weakseg.bench.transfer import DEFAULT_ROWS

    transfer = kinds.add_parser(
        "transfer", help="source masks -> weakly labelled target: source-only, image labels, transfer and its "
                         "ablations, scribbles")
    transfer.add_argument("source_dir", help="fully segmented source cohort (<case>_image and <case>_label files)")
    transfer.add_argument("target_dir", help="target cohort (<case>_image, <case>_scribble, <case>_label files)")
    transfer.add_argument("--classes", help="class names in code order, background first (required)")
    transfer.add_argument("--source-split", help="source cases to train on, e.g. 001-060 (default all)")
    transfer.add_argument("--train-split", help="target cases to train on (their scribbles give the image labels)")
    transfer.add_argument("--test-split", help="target cases to score (default: all with a label file)")
    transfer.add_argument("--image-labels", help="the target's image-label CSV (default: derived from the "
                                                 "training cases' scribbles, written to --out)")
    transfer.add_argument("--methods", help=f"comma list of rows (default {','.join(DEFAULT_ROWS)}) or --model NAMEs")
    transfer.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                          help="a trained model benchmarked as row NAME instead of training it; repeat")
    transfer.add_argument("--steps", type=int, help="training steps of every trained row (default: each method's own)")
    _add_post_processing(transfer)
    transfer.add_argument("--out", default="bench-out", help="folder for the CSV, the models and overlay PNGs")
    transfer.add_argument("--overlays", type=int, default=3, help="cases to draw overlays for, per method")
    _add_common(transfer)
    _add_semisup_bench(kinds)
    _add_shapegan_bench(kinds)


def _add_semisup_bench(kinds) -> None:
    semisup = kinds.add_parser(
        "semisup", help="a few masks + every image's diagnosis: masks-only, self-training, collaborative, all masks; "
                        "image-only vs lesion-attentive classifier")
    semisup.add_argument("data_dir", help="folder of <case>_image and <case>_label (or <case>_mask) files, e.g. PH2")
    semisup.add_argument("--masks", type=int, required=True,
                         help="training cases whose masks are used. Split, fixed by case id: sorted ids, the first two "
                              "thirds train (PH2: 70), the last third tests (35); the N masks are training ids number "
                              "round(i*T/N), i=0..N-1 (PH2, N=10: every 7th id from the first)")
    semisup.add_argument("--seeds", default="0", help="comma list of seeds, e.g. 0,1,2 (mean and spread over them)")
    semisup.add_argument("--image-labels", help="CSV with a diagnosis column (default: the one .csv in DATA_DIR)")
    semisup.add_argument("--validation", action="store_true",
                         help="score on the last third of the training cases instead of the test cases (for tuning)")
    for option, kind, text in (("--image-size", int, "side in pixels slices are resized to (default 128)"),
                               ("--steps", int, "segmenter steps on the masks"),
                               ("--classifier-steps", int, "classifier steps"),
                               ("--rounds", int, "semi-supervised rounds"),
                               ("--round-steps", int, "segmenter steps per round"),
                               ("--refinement-weight", float, "weight of the classifier's attention in pseudo masks"),
                               ("--adversarial-weight", float, "weight of the adversarial term")):
        semisup.add_argument(option, type=kind, help=f"{text} (default: the collaborative method's)")
    semisup.add_argument("--out", default="bench-out", help="folder for the CSVs and overlay PNGs")
    semisup.add_argument("--overlays", type=int, default=3, help="test images to draw overlays for, per row")
    _add_common(semisup)


def _add_shapegan_bench(kinds) -> None:
    from weakseg.bench.shapegan import ROWS

    shapegan = kinds.add_parser("shapegan", help="method shape-gan on HC18-style data (<case>_image, <case>_mask, "
                                                 "hc18_pixel_size.csv): supervised reference, ellipse, unpaired masks, "
                                                 "ablations; Dice, HD95 and head-circumference error in mm")
    shapegan.add_argument("data_dir", help="folder of <case>_image/<case>_mask files and hc18_pixel_size.csv")
    shapegan.add_argument("--rows", help=f"comma list of rows (default all: {','.join(ROWS)})")
    shapegan.add_argument("--train-split", default="000-149", help="training images (their masks: reference row only)")
    shapegan.add_argument("--test-split", default="150-199", help="images to score")
    shapegan.add_argument("--unpaired-train-split", default="000-099", help="training images of the unpaired row")
    shapegan.add_argument("--unpaired-split", default="100-149", help="cases whose masks are the unpaired row's masks")
    shapegan.add_argument("--shape-model", default="ellipse", help="shape model of the shape-gan rows")
    shapegan.add_argument("--gan-steps", type=int, help="CycleGAN steps (default: the method's own)")
    shapegan.add_argument("--ablation-gan-steps", type=int, help="CycleGAN steps of the ablation rows (default: --gan-steps)")
    shapegan.add_argument("--steps", type=int, help="segmenter steps per round (default: the method's own)")
    shapegan.add_argument("--rounds", type=int, help="segmenter rounds (default: the method's own)")
    shapegan.add_argument("--image-size", type=int, help="network grid width (default: the method's own)")
    shapegan.add_argument("--channels", help="U-Net widths of the generators (default: the method's own)")
    shapegan.add_argument("--batch-size", help="slices per training step (default: the method's own)")
    shapegan.add_argument("--seeds", help="comma list of seeds, e.g. 0,1,2: one run per seed (OUT/seed-N) and the "
                                          "mean and spread of each row over them (instead of --seed)")
    shapegan.add_argument("--out", default="bench-out", help="folder for the CSVs, the models and overlay PNGs")
    shapegan.add_argument("--overlays", type=int, default=3, help="cases to draw overlays for, per row")
    _add_common(shapegan)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``weakseg`` command; returns the process exit status."""
    arguments = build_parser().parse_args(argv)
    cancel = _CancelFlag()
    signal.signal(signal.SIGTERM, cancel.request)
    progress, close = _progress_reporter(getattr(arguments, "progress", "none"), cancel)
    try:
        if arguments.command in ("segment", "train", "predict", "bench", "demo"):
            from weakseg.threads import configure_torch_threads

            configure_torch_threads()
        output = _run(arguments, progress)
    except WeakSegInputError as error:
        close()
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CancelledError, KeyboardInterrupt):
        close()
        print("weakseg: cancelled; no output written", file=sys.stderr)
        return EXIT_CANCELLED
    close()
    if output:
        print(output)
    return EXIT_OK


def _run(arguments: argparse.Namespace, progress: Progress) -> str | None:
    """Run the sub-command; returns what it prints (after the progress display is closed)."""
    from weakseg import commands

    if arguments.command == "methods":
        return commands.methods_command(arguments)
    if arguments.command == "serve":
        from weakseg.serve.options import serve_command

        return serve_command(arguments, build_parser(), main)
    if arguments.command == "demo":
        from weakseg.cli_checks import check_count, check_output_folder
        from weakseg.demo import run_demo

        check_output_folder(arguments.out, "--out")
        check_count("--steps", arguments.steps)
        return run_demo(Path(arguments.out), progress, arguments.device, arguments.seed, arguments.steps).summary
    run = {
        "segment": commands.segment_command,
        "train": commands.train_command,
        "predict": commands.predict_command,
        "evaluate": commands.evaluate_command,
        "bench": commands.bench_command,
    }[arguments.command]
    return run(arguments, progress)


if __name__ == "__main__":
    sys.exit(main())

