"""What each ``weakseg`` sub-command does, given its parsed arguments.

Kept apart from :mod:`weakseg.cli` so that argument parsing stays cheap (``--help`` does
not import torch) and so that each command reads top to bottom: every argument checked,
then the work, then the output. A command returns the text to print, if any, so that
the progress display is closed before it appears.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from weakseg.atomic import keep_former_file
from weakseg.cli_checks import (
    check_count,
    check_input_file,
    check_output_file,
    check_output_folder,
    parse_option,
)
from weakseg.errors import WeakSegInputError
from weakseg.methods.registry import METHODS, describe_methods, fields_by_option, method_named, training_options
from weakseg.methods.spec import IMAGE_LABELS, MASKS, PER_IMAGE, SOURCE_MASKS, TRAINED, UNPAIRED_MASKS, TrainingRequest
from weakseg.progress import Progress
from weakseg.suffixes import MODEL_SUFFIX, RESULT_SUFFIXES


def class_list(text: str | None) -> list[str] | None:
    """``"background,RV,Myo"`` -> ``["background", "RV", "Myo"]``; None stays None."""
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def methods_command(arguments: argparse.Namespace) -> str:
    """``weakseg methods``: what exists, what each learns from, its options."""
    if arguments.json:
        return json.dumps({"methods": describe_methods()}, indent=1)
    lines = []
    for spec in METHODS:
        aliases = f" (also {', '.join(spec.aliases)})" if spec.aliases else ""
        lines.append(f"{spec.name}{aliases} [{spec.usage}; learns from {', '.join(spec.learns_from)}]: {spec.summary}")
    return "\n".join(lines)


def segment_command(arguments: argparse.Namespace, progress: Progress) -> str | None:
    """``weakseg segment``: one image and its scribbles in, a segmentation out (and, with ``--profile``, the table)."""
    from weakseg.apply import load_model, segment_image
    from weakseg.io import read_image
    from weakseg.profiling import StageProfile
    from weakseg.results import check_result_path, write_result
    from weakseg.weak_labels import load_scribbles

    spec = method_named(arguments.method, PER_IMAGE)
    check_output_file(arguments.out, "--out", RESULT_SUFFIXES)
    check_count("--steps", arguments.steps)
    if arguments.model and spec.name != "interactive":
        raise WeakSegInputError(f"method {spec.name!r} does not use a model; drop --model or use --method interactive")
    if arguments.cache and (spec.name != "interactive" or arguments.model):
        raise WeakSegInputError(f"--cache {arguments.cache}: only the interactive method without --model keeps a cache")
    if arguments.cache and Path(arguments.cache).exists() and not Path(arguments.cache).is_dir():
        raise WeakSegInputError(f"--cache {arguments.cache}: not a folder")
    check_input_file(arguments.image, "image")
    check_input_file(arguments.scribbles, "scribble file")
    if arguments.profile:
        progress.profile = StageProfile()
    with progress.stage("reading"):
        image = read_image(arguments.image)
        check_result_path(arguments.out, image.reference)
        model = None
        class_names = class_list(arguments.classes)
        if arguments.model:
            model = load_model(arguments.model, arguments.device)
            if not model.spec.adapt:
                raise WeakSegInputError(f"{arguments.model}: a {model.spec.name} model cannot adapt to scribbles")
            class_names = class_names or model.class_names
        scribbles = load_scribbles(arguments.scribbles, image, class_names)
    labels = segment_image(image, scribbles, method=spec.name, model=model, steps=arguments.steps,
                           device_name=arguments.device, seed=arguments.seed, progress=progress,
                           cache_dir=arguments.cache)
    with progress.stage("writing"):
        write_result(arguments.out, labels, image.reference, scribbles.class_names)
    return progress.profile.table() if progress.profile is not None else None


def _training_method(arguments: argparse.Namespace):
    """The method ``weakseg train`` runs: ``--method``, or imagelabel for the old ``--image-labels`` spelling."""
    if arguments.method is None:
        return method_named("imagelabel" if arguments.image_labels else "cohort", TRAINED)
    spec = method_named(arguments.method, TRAINED)
    if (arguments.source or arguments.source_split) and SOURCE_MASKS not in spec.learns_from:
        raise WeakSegInputError(f"--source/--source-split: method {spec.name} does not learn from a source cohort; "
                                "use --method transfer")
    if arguments.masks_split and MASKS not in spec.learns_from:
        raise WeakSegInputError(f"--masks-split: method {spec.name} does not learn from full masks; use --method collaborative")
    if MASKS in spec.learns_from and not arguments.masks_split:
        raise WeakSegInputError(f"method {spec.name} needs --masks-split CASES (the cases whose full masks it learns from)")
    if SOURCE_MASKS in spec.learns_from and not arguments.source:
        raise WeakSegInputError(f"method {spec.name} needs --source FOLDER (the fully segmented source cohort)")
    if IMAGE_LABELS in spec.learns_from and spec.name != "imagelabel":
        if not arguments.image_labels:
            raise WeakSegInputError(f"method {spec.name} needs --image-labels CSV (the target's image-level labels)")
        return spec
    if arguments.image_labels and spec.name != "imagelabel":
        raise WeakSegInputError(f"--image-labels: method {spec.name} learns from scribbles, not image-level labels; "
                                "use --method imagelabel")
    if spec.name == "imagelabel" and not arguments.image_labels:
        raise WeakSegInputError("--method imagelabel needs --image-labels CSV (image,slices,label rows)")
    return spec


def _takers(option: str) -> str:
    names = [spec.name for spec in METHODS if spec.usage == TRAINED
             and any(item.option == option for item in spec.option_fields())]
    return ", ".join(names) if names else "none"


def training_settings(spec, arguments: argparse.Namespace):
    """The method's settings with every option given on the command line applied and range-checked.

    Raises:
        WeakSegInputError: an option the method does not take (naming the methods that do), or a
            value out of its range.
    """
    offered = fields_by_option(spec.option_fields())
    changes = {"seed": arguments.seed}
    for option in training_options():
        value = getattr(arguments, option.lstrip("-").replace("-", "_"))
        if value is None:
            continue
        if option not in offered:
            raise WeakSegInputError(f"{option}: method {spec.name} does not take it (taken by: {_takers(option)})")
        for item in offered[option]:
            changes[item.name] = parse_option(item, value)
    settings = spec.make_settings(**changes)
    if hasattr(settings, "check"):
        settings.check()
    return settings


def train_command(arguments: argparse.Namespace, progress: Progress) -> None:
    """``weakseg train``: a folder of images with weak labels in, a model file out."""
    from weakseg.engine import pick_device

    spec = _training_method(arguments)
    if not spec.data_parallel:
        from weakseg.distributed import refuse_distributed

        refuse_distributed(spec.name)
    check_output_file(arguments.out, "--out", (MODEL_SUFFIX,))
    if arguments.resume:
        check_input_file(arguments.out, "model file to resume")
    settings = training_settings(spec, arguments)
    if UNPAIRED_MASKS not in spec.learns_from and (arguments.unpaired_masks or arguments.unpaired_split):
        takers = ", ".join(item.name for item in METHODS if UNPAIRED_MASKS in item.learns_from)
        raise WeakSegInputError(f"--unpaired-masks/--unpaired-split: method {spec.name} does not take unpaired masks "
                                f"(taken by: {takers})")
    if spec.needs_unpaired_masks and not (arguments.unpaired_masks or arguments.unpaired_split):
        raise WeakSegInputError(f"method {spec.name} needs unpaired masks: give --unpaired-split (cases of the data "
                                "folder) or --unpaired-masks FOLDER")
    if arguments.image_labels:
        check_input_file(arguments.image_labels, "image-label CSV")
    for folder in (arguments.data_dir, arguments.source):
        if folder and not Path(folder).is_dir():
            raise WeakSegInputError(f"{folder}: no such folder")
    kept = None if arguments.resume else keep_former_file(arguments.out)
    if kept is not None:
        print(f"weakseg: {arguments.out} exists; this run starts over and replaces it, the former model is kept "
              f"as {kept} (--resume continues a run instead)", file=sys.stderr)
    spec.function("train")(TrainingRequest(
        data_dir=arguments.data_dir, out_path=arguments.out, settings=settings,
        class_names=class_list(arguments.classes), device=pick_device(arguments.device), progress=progress,
        split=arguments.split, unpaired_masks=unpaired_mask_files(arguments), image_labels=arguments.image_labels,
        resume=arguments.resume, source_dir=arguments.source, source_split=arguments.source_split,
        masks_split=arguments.masks_split,
    ))


def unpaired_mask_files(arguments: argparse.Namespace):
    """The unpaired masks that ``--unpaired-masks`` / ``--unpaired-split`` name, or None."""
    from weakseg.unpaired_masks import list_mask_files

    if not (arguments.unpaired_masks or arguments.unpaired_split):
        return None
    return list_mask_files(arguments.unpaired_masks or arguments.data_dir, arguments.unpaired_split)


def predict_command(arguments: argparse.Namespace, progress: Progress) -> None:
    """``weakseg predict``: a trained model and images in, one segmentation per image out.

    A model whose method diagnoses or measures also writes ``predictions.csv`` (:mod:`weakseg.predictions`).
    """
    from weakseg.apply import load_model, predict_image
    from weakseg.io import read_image, suffix_of
    from weakseg.results import write_result

    check_output_folder(arguments.out, "--out")
    check_input_file(arguments.model, "model file")
    for path in arguments.images:
        check_input_file(path, "image")
    model = load_model(arguments.model, arguments.device)
    images = [read_image(path) for path in arguments.images]
    output_folder = Path(arguments.out)
    predictions = []
    for index, image in enumerate(images):
        part = progress.part(index / len(images), (index + 1) / len(images))
        labels, _ = predict_image(model, image, part, post_processing=not arguments.no_post_processing)
        name = Path(image.path).name
        stem = name[: len(name) - len(suffix_of(name))]
        write_result(output_folder / f"{stem}{arguments.format}", labels, image.reference, model.class_names)
        columns = _prediction_columns(model, image, labels)
        if columns:
            predictions.append((stem, columns))
    if predictions:
        from weakseg.contract import PREDICTIONS_FILE
        from weakseg.predictions import write_predictions

        write_predictions(output_folder / PREDICTIONS_FILE, predictions)


def _prediction_columns(model, image, labels) -> dict[str, str]:
    """What the model's method says of one image beside its labels: its diagnosis, its measurements."""
    from weakseg.predictions import diagnosis_columns

    columns: dict[str, str] = {}
    if model.spec.diagnose:
        columns.update(diagnosis_columns(*model.spec.function("diagnose")(model.model, image)))
    if model.spec.measure:
        columns.update(model.spec.function("measure")(image, labels))
    return columns


def evaluate_command(arguments: argparse.Namespace, progress: Progress) -> str:
    """``weakseg evaluate``: per-class scores of a prediction against the truth, as a table."""
    import SimpleITK as sitk

    from weakseg.io import read_sitk
    from weakseg.metrics import evaluate_labelmaps, format_scores_table

    prediction = read_sitk(arguments.prediction)
    truth = read_sitk(arguments.truth)
    class_names = class_list(arguments.classes)
    if class_names is None:
        highest = int(sitk.GetArrayViewFromImage(truth).max())
        class_names = ["background"] + [f"class_{code}" for code in range(1, highest + 1)]
    scores = evaluate_labelmaps(prediction, truth, class_names, arguments.prediction, arguments.truth)
    return format_scores_table(scores)


def bench_command(arguments: argparse.Namespace, progress: Progress) -> str:
    """``weakseg bench scribbles|imagelabel``: run the benchmark, return its table(s)."""
    check_output_folder(arguments.out, "--out")
    check_count("--overlays", arguments.overlays, 0)
    for folder in (getattr(arguments, "data_dir", None), getattr(arguments, "source_dir", None),
                   getattr(arguments, "target_dir", None)):
        if folder is not None and not Path(folder).is_dir():
            raise WeakSegInputError(f"{folder}: no such folder")
    if arguments.kind == "semisup":
        return _semisup_bench(arguments, progress)
    if arguments.kind == "shapegan":
        return _shapegan_bench(arguments, progress)
    methods = tuple(name.strip() for name in (arguments.methods or "").split(",") if name.strip())
    if arguments.kind == "imagelabel":
        from weakseg.bench.imagelabel import DEFAULT_ROWS, ImageLabelBenchOptions, run_imagelabel_bench

        for option, value in (("--rounds", arguments.rounds), ("--steps", arguments.steps),
                              ("--gan-steps", arguments.gan_steps)):
            check_count(option, value)
        check_count("--image-size", arguments.image_size, 16)
        options = ImageLabelBenchOptions(
            data_dir=arguments.data_dir, out=arguments.out, methods=methods or DEFAULT_ROWS,
            layout=arguments.layout, train_split=arguments.train_split, test_split=arguments.test_split,
            channel=arguments.channel, rounds=arguments.rounds, steps=arguments.steps, gan_steps=arguments.gan_steps,
            image_size=arguments.image_size,
            class_balance=arguments.class_balance, normalisation=arguments.normalisation,
            dice_weight=arguments.dice_weight, overlays=arguments.overlays,
            device=arguments.device, seed=arguments.seed, seeds=seed_list(arguments.seeds) if arguments.seeds else (),
            cam_guide=not arguments.no_cam_guide)
        return run_imagelabel_bench(options, progress).text
    if arguments.kind == "transfer":
        return _transfer_bench(arguments, methods, progress)
    from weakseg.bench.scribbles import (DEFAULT_METHODS, ScribbleBenchOptions, check_options, model_paths,
                                         post_processing_modes, run_scribble_bench)

    check_count("--cohort-steps", arguments.cohort_steps)
    models = model_paths(arguments.model)
    for path in models.values():
        check_input_file(path, "model file")
    options = ScribbleBenchOptions(
        data_dir=arguments.data_dir, out=arguments.out, methods=methods or DEFAULT_METHODS,
        test_split=arguments.test_split, train_split=arguments.train_split, class_names=class_list(arguments.classes),
        models=models, training_steps=arguments.cohort_steps, overlays=arguments.overlays, device=arguments.device,
        seed=arguments.seed, profile=arguments.profile,
        post_processing=post_processing_modes(arguments.post_processing))
    check_options(options)
    options.unpaired_masks = unpaired_mask_files(arguments)
    result = run_scribble_bench(options, progress)
    return result.table + ("\n\n" + result.stage_table if result.stage_table else "")


def _transfer_bench(arguments: argparse.Namespace, methods: tuple[str, ...], progress: Progress) -> str:
    """``weakseg bench transfer``: every argument checked, then the benchmark; returns its table."""
    from weakseg.bench.scribbles import post_processing_modes
    from weakseg.bench.transfer import DEFAULT_ROWS, TransferBenchOptions, check_options, run_transfer_bench

    check_count("--steps", arguments.steps)
    models = {}
    for item in arguments.model:
        name, separator, path = item.partition("=")
        if not separator or not name.strip() or name.strip() in models:
            raise WeakSegInputError(f"--model {item!r}: expected NAME=PATH, each NAME once")
        check_input_file(path.strip(), "model file")
        models[name.strip()] = path.strip()
    if arguments.image_labels:
        check_input_file(arguments.image_labels, "image-label CSV")
    options = TransferBenchOptions(
        source_dir=arguments.source_dir, target_dir=arguments.target_dir, class_names=class_list(arguments.classes) or [],
        out=arguments.out, methods=methods or DEFAULT_ROWS, source_split=arguments.source_split,
        train_split=arguments.train_split, test_split=arguments.test_split, image_labels=arguments.image_labels,
        models=models, steps=arguments.steps, overlays=arguments.overlays, device=arguments.device, seed=arguments.seed,
        post_processing=post_processing_modes(arguments.post_processing))
    check_options(options)
    return run_transfer_bench(options, progress).table


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` as a tuple of ints.

    Raises:
        WeakSegInputError: not a comma list of whole numbers.
    """
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise WeakSegInputError(f"--seeds {text!r}: expected a comma list of whole numbers") from None


def _semisup_bench(arguments: argparse.Namespace, progress: Progress) -> str:
    """``weakseg bench semisup``: every argument checked, then the benchmark; returns its table."""
    from weakseg.bench.semisup import SemisupBenchOptions, run_semisup_bench
    from weakseg.methods.collaborative import SPEC

    check_count("--masks", arguments.masks)
    seeds = seed_list(arguments.seeds)
    image_labels = arguments.image_labels
    if image_labels is None:
        found = sorted(Path(arguments.data_dir).glob("*.csv"))
        if len(found) != 1:
            raise WeakSegInputError(f"{arguments.data_dir}: holds {len(found)} .csv files; name the diagnosis CSV "
                                    "with --image-labels")
        image_labels = str(found[0])
    check_input_file(image_labels, "diagnosis CSV")
    fields = {item.option: item for item in SPEC.option_fields()}
    settings = {}
    for option in ("--image-size", "--steps", "--classifier-steps", "--rounds", "--round-steps", "--refinement-weight",
                   "--adversarial-weight"):
        value = getattr(arguments, option.lstrip("-").replace("-", "_"))
        if value is not None:
            settings[fields[option].name] = parse_option(fields[option], str(value))
    options = SemisupBenchOptions(data_dir=arguments.data_dir, image_labels=image_labels, masks=arguments.masks,
                                  seeds=seeds, validation=arguments.validation, settings=settings, out=arguments.out,
                                  overlays=arguments.overlays, device=arguments.device)
    return run_semisup_bench(options, progress)


def _shapegan_bench(arguments: argparse.Namespace, progress: Progress) -> str:
    """``weakseg bench shapegan``: every argument checked, then the benchmark; returns its table."""
    from weakseg.bench.shapegan import ROWS, ShapeGanBenchOptions, check_options, run_shapegan_bench

    spec = method_named("shape-gan")
    offered = {item.option: item for item in spec.option_fields()}
    settings = {}
    for option in ("--gan-steps", "--steps", "--rounds", "--image-size", "--channels", "--batch-size"):
        value = getattr(arguments, option.lstrip("-").replace("-", "_"))
        if value is not None:
            settings[offered[option].name] = parse_option(offered[option], value)
    check_count("--ablation-gan-steps", arguments.ablation_gan_steps)
    rows = tuple(name.strip() for name in (arguments.rows or "").split(",") if name.strip())
    options = ShapeGanBenchOptions(
        data_dir=arguments.data_dir, out=arguments.out, rows=rows or ROWS, train_split=arguments.train_split,
        unpaired_train_split=arguments.unpaired_train_split, unpaired_split=arguments.unpaired_split,
        test_split=arguments.test_split, shape_model=arguments.shape_model, settings=settings,
        ablation_gan_steps=arguments.ablation_gan_steps, overlays=arguments.overlays, device=arguments.device,
        seed=arguments.seed, seeds=seed_list(arguments.seeds) if arguments.seeds else ())
    check_options(options)
    spec.make_settings(**settings, shape_model=arguments.shape_model).check()
    return run_shapegan_bench(options, progress).table
