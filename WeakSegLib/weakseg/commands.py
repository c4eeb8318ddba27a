"""What each ``weakseg`` sub-command does, given its parsed arguments.

Kept apart from :mod:`weakseg.cli` so that argument parsing stays cheap (``--help`` does
not import torch) and so that each command reads top to bottom: inputs, checks, work,
output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import SimpleITK as sitk

from weakseg.errors import WeakSegInputError
from weakseg.io import read_image, read_sitk, suffix_of
from weakseg.progress import Progress
from weakseg.results import check_result_path, write_result
from weakseg.weak_labels import load_scribbles


def class_list(text: str | None) -> list[str] | None:
    """``"background,RV,Myo"`` -> ``["background", "RV", "Myo"]``; None stays None."""
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def positive_integers(text: str, option: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``; anything else is a clear error naming the option."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise WeakSegInputError(f"{option} {text!r}: expected a comma list of positive integers")
    return values


def segment_command(arguments: argparse.Namespace, progress: Progress) -> None:
    """``weakseg segment``: one image and its scribbles in, a segmentation out."""
    from weakseg.methods import segment_image

    image = read_image(arguments.image)
    check_result_path(arguments.out, image.reference)
    model = None
    class_names = class_list(arguments.classes)
    if arguments.model:
        from weakseg.engine import pick_device
        from weakseg.methods.cohort import load_cohort_model

        model = load_cohort_model(arguments.model, pick_device(arguments.device))
        class_names = class_names or list(model.class_names)
    scribbles = load_scribbles(arguments.scribbles, image, class_names)
    labels = segment_image(
        image,
        scribbles,
        method=arguments.method,
        model=model,
        steps=arguments.steps,
        device_name=arguments.device,
        seed=arguments.seed,
        progress=progress,
    )
    write_result(arguments.out, labels, image.reference, scribbles.class_names)


def train_command(arguments: argparse.Namespace, progress: Progress) -> None:
    """``weakseg train``: a folder of images with scribbles in, a cohort model out."""
    from weakseg.engine import pick_device
    from weakseg.methods.cohort import config_for_method, list_cases, train_cohort

    if Path(arguments.out).suffix != ".pt":
        raise WeakSegInputError(f"{arguments.out}: model file must end in .pt")
    if arguments.image_labels:
        if arguments.method != "cohort" or arguments.unpaired_masks or arguments.unpaired_split:
            raise WeakSegInputError("--image-labels trains the image-label pipeline; --method and --unpaired-* "
                                    "apply to training from scribbles")
        _train_from_image_labels(arguments, progress)
        return
    cases = list_cases(arguments.data_dir, arguments.split)
    config = config_for_method(arguments.method, seed=arguments.seed)
    if arguments.steps:
        config.steps = arguments.steps
    for setting in ("learning_rate", "outside_weight", "adversarial_weight"):
        if getattr(arguments, setting) is not None:
            setattr(config, setting, getattr(arguments, setting))
    if arguments.image_size:
        config.image_size = arguments.image_size
    if arguments.channels:
        config.channels = tuple(positive_integers(arguments.channels, "--channels"))
    if arguments.batch_size:
        config.batch_size = arguments.batch_size
    train_cohort(
        cases,
        arguments.out,
        config,
        class_list(arguments.classes),
        progress,
        resume=arguments.resume,
        device=pick_device(arguments.device),
        unpaired_masks=unpaired_mask_files(arguments),
    )


def unpaired_mask_files(arguments: argparse.Namespace):
    """The unpaired masks that ``--unpaired-masks`` / ``--unpaired-split`` name, or None."""
    from weakseg.unpaired_masks import list_mask_files

    if not (arguments.unpaired_masks or arguments.unpaired_split):
        return None
    return list_mask_files(arguments.unpaired_masks or arguments.data_dir, arguments.unpaired_split)


def _train_from_image_labels(arguments: argparse.Namespace, progress: Progress) -> None:
    """``weakseg train DATA_DIR --image-labels CSV``: images named in the CSV, an image-label model out."""
    from weakseg.engine import pick_device
    from weakseg.image_labels import read_image_labels, resolve_image_path
    from weakseg.methods.imagelabel import ImageLabelConfig, LabelledVolume, train_image_label_model

    class_names = class_list(arguments.classes)
    labels = read_image_labels(arguments.image_labels, class_names)
    if class_names is None:
        named = sorted({name for entry in labels.values() for name in _all_classes(entry)})
        class_names = ["background"] + (named or ["lesion"])
    volumes = []
    for name, entry in labels.items():
        image = read_image(resolve_image_path(arguments.data_dir, name, arguments.image_labels))
        volumes.append(LabelledVolume(name, image.array, entry.per_slice(image.shape_zyx[0])))
    config = ImageLabelConfig(seed=arguments.seed, mirror_excess=arguments.mirror_excess)
    if arguments.steps:
        config.classifier_steps = config.round_steps = arguments.steps
    train_image_label_model(volumes, class_names, config, progress, pick_device(arguments.device), arguments.out,
                            resume=arguments.resume)


def _all_classes(entry) -> set[str]:
    names = set(entry.whole or ())
    for item in entry.ranges:
        names |= item.classes
    return names


def predict_command(arguments: argparse.Namespace, progress: Progress) -> None:
    """``weakseg predict``: a cohort or image-label model and images in, one segmentation per image out."""
    from weakseg.engine import load_checkpoint, pick_device
    from weakseg.methods.cohort import load_cohort_model, predict_volume
    from weakseg.methods.imagelabel import METHOD_NAME as IMAGE_LABEL_METHOD
    from weakseg.methods.imagelabel import load_image_label_model, segment_volume

    device = pick_device(arguments.device)
    payload = load_checkpoint(arguments.model, device)
    if (payload.get("metadata") or {}).get("method") == IMAGE_LABEL_METHOD:
        model = load_image_label_model(arguments.model, device, payload)

        def predict(image, part):
            spacing = tuple(float(value) for value in reversed(image.reference.GetSpacing()))
            spacing = spacing if len(spacing) == 3 else (1.0, *spacing)
            return segment_volume(model, image.array, spacing)
    else:
        model = load_cohort_model(arguments.model, device, payload)

        def predict(image, part):
            return predict_volume(model, image, part)

    images = [read_image(path) for path in arguments.images]
    output_folder = Path(arguments.out)
    for index, image in enumerate(images):
        part = progress.part(index / len(images), (index + 1) / len(images))
        labels, _ = predict(image, part)
        name = Path(image.path).name
        stem = name[: len(name) - len(suffix_of(name))]
        write_result(output_folder / f"{stem}{arguments.format}", labels, image.reference, list(model.class_names))


def evaluate_command(arguments: argparse.Namespace) -> None:
    """``weakseg evaluate``: print per-class scores of a prediction against the truth."""
    from weakseg.metrics import evaluate_labelmaps, format_scores_table

    prediction = read_sitk(arguments.prediction)
    truth = read_sitk(arguments.truth)
    class_names = class_list(arguments.classes)
    if class_names is None:
        highest = int(sitk.GetArrayViewFromImage(truth).max())
        class_names = ["background"] + [f"class_{code}" for code in range(1, highest + 1)]
    scores = evaluate_labelmaps(prediction, truth, class_names, arguments.prediction, arguments.truth)
    print(format_scores_table(scores))
