"""What a segmentation method declares about itself: :class:`MethodSpec` and :func:`setting`.

A method is one module under :mod:`weakseg.methods` that exports ``SPEC``. The command
line, the benchmarks and the Slicer module learn everything they need from it: the name
and old spellings, the weak labels it learns from, its settings dataclass (each
user-facing field says its command-line option, help text and valid range through
:func:`setting`), and the functions that run it. The functions are named as
``"module:function"`` strings and imported only when called, so listing the methods
(``weakseg --help``, ``weakseg methods --json``) does not import torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

# The weak labels a method may learn from.
SCRIBBLES = "scribbles"
UNPAIRED_MASKS = "unpaired-masks"
IMAGE_LABELS = "image-labels"
SOURCE_MASKS = "source-masks"  # full masks of another cohort (another sequence, scanner or centre)
MASKS = "masks"  # full masks of some of the training images (--masks-split)
SHAPE_MODEL = "shape-model"  # a parametric model of the structure's shape (random ellipses)

# How a method is used.
PER_IMAGE = "per-image"  # weakseg segment IMAGE --scribbles S: learns from this image's labels alone
TRAINED = "trained"  # weakseg train, then weakseg predict / segment --model


def setting(default: Any, option: str, help: str, minimum: float | None = None, maximum: float | None = None,
            default_factory: Callable[[], Any] | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A settings dataclass field that the command line offers as ``option``.

    ``minimum`` / ``maximum`` are inclusive bounds checked before any work starts
    (for tuples: every item); ``choices`` are the allowed words of a ``str`` field.
    Several fields may share one option (it sets all of them).
    """
    metadata = {"option": option, "help": help, "minimum": minimum, "maximum": maximum, "choices": choices}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionField:
    """One settings field behind a command-line option."""

    name: str
    option: str
    help: str
    kind: str  # "int", "float", "bool", "ints" (comma list of positive integers), "str" (free text, or one of ``choices`` when given)
    minimum: float | None
    maximum: float | None
    default: Any
    choices: tuple[str, ...] = ()


def _kind(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if text.startswith("tuple"):
        return "ints"
    if text in ("bool", "int", "float", "str"):
        return text
    raise TypeError(f"setting of type {text}: expected int, float, bool, str or a tuple of ints")


@dataclass(frozen=True)
class MethodSpec:
    """One segmentation method.

    Attributes:
        name: the name users type (``--method``, ``--methods``) and checkpoints record.
        summary: one line for help texts and the Slicer module.
        learns_from: weak labels it uses (:data:`SCRIBBLES`, :data:`UNPAIRED_MASKS`, :data:`IMAGE_LABELS`).
        usage: :data:`PER_IMAGE` or :data:`TRAINED`.
        settings: its settings dataclass (fields made with :func:`setting` are command-line options).
        defaults: settings that differ from the dataclass defaults for this method.
        aliases: old spellings still accepted on the command line.
        segment: ``module:function`` (per-image methods): ``(image, scribbles, settings, device, progress) -> labels``.
        train: ``module:function`` (trained methods): ``(request: TrainingRequest) -> None``.
        load: ``module:function``: ``(path, device, payload) -> model`` with ``class_names``.
        predict: ``module:function``: ``(model, image, progress, post_processing=True) -> (labels, probabilities)``.
        adapt: ``module:function`` or "": ``(model, image, scribbles, progress, seed) -> (labels, probabilities)``.
        diagnose: ``module:function`` or "" (models with a classifier): ``(model, image) -> (diagnosis,
            {diagnosis: probability})``; ``weakseg predict`` then writes ``predictions.csv``.
        measure: ``module:function`` or "": ``(image, labels) -> {column: text}``, measurements of a
            prediction (e.g. a head circumference) that ``weakseg predict`` adds to ``predictions.csv``.
        model_kind: the ``method`` a model file of this method records in its metadata.
        needs_unpaired_masks: training refuses to start without unpaired masks.
        hidden_options: options of the settings dataclass this method does not offer.
        data_parallel: trains data-parallel under ``torchrun`` (:mod:`weakseg.distributed`).
        variants: per value of the ``variant`` setting, the defaults that value brings (on top
            of :attr:`defaults`, below the caller's changes).
    """

    name: str
    summary: str
    learns_from: tuple[str, ...]
    usage: str
    settings: type | None = None
    defaults: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    segment: str = ""
    train: str = ""
    load: str = ""
    predict: str = ""
    adapt: str = ""
    diagnose: str = ""
    measure: str = ""
    model_kind: str = ""
    needs_unpaired_masks: bool = False
    hidden_options: tuple[str, ...] = ()
    data_parallel: bool = False
    variants: dict = field(default_factory=dict)

    def function(self, role: str) -> Callable:
        """The function this method names for ``role`` (``"train"``, ``"predict"``, ...), imported now."""
        target = getattr(self, role)
        if not target:
            raise LookupError(f"method {self.name} has no {role} function")
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    def make_settings(self, **changes: Any) -> Any:
        """This method's settings: the dataclass defaults, then :attr:`defaults`, the chosen variant's, then ``changes``."""
        if self.settings is None:
            raise LookupError(f"method {self.name} has no settings")
        variant = changes.get("variant", self.defaults.get("variant"))
        return self.settings(**{**self.defaults, **self.variants.get(variant, {}), **changes})

    def option_fields(self, variant: str | None = None) -> list[OptionField]:
        """The settings fields the command line offers for this method, with its defaults (those of ``variant`` if given)."""
        if self.settings is None:
            return []
        result = []
        hints = {item.name: item.type for item in dataclasses.fields(self.settings)}
        defaults = self.make_settings(**({"variant": variant} if variant else {}))
        for item in dataclasses.fields(self.settings):
            option = item.metadata.get("option")
            if option and option not in self.hidden_options:
                result.append(OptionField(item.name, option, item.metadata["help"], _kind(hints[item.name]),
                                          item.metadata["minimum"], item.metadata["maximum"],
                                          getattr(defaults, item.name), tuple(item.metadata.get("choices", ()))))
        return result

    def describe(self) -> dict:
        """A plain-data description (``weakseg methods --json``)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "summary": self.summary,
            "learns_from": list(self.learns_from),
            "usage": self.usage,
            "adapts_to_scribbles": bool(self.adapt),
            "needs_unpaired_masks": self.needs_unpaired_masks,
            "options": [
                {"option": item.option, "setting": item.name, "type": item.kind, "default": _plain(item.default),
                 "minimum": item.minimum, "maximum": item.maximum, "help": item.help,
                 **({"choices": list(item.choices)} if item.choices else {})}
                for item in self.option_fields()
            ],
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class TrainingRequest:
    """What ``weakseg train`` (or a caller from Python) asks a trained method to do.

    Attributes:
        data_dir: the cohort folder (scribble methods) or the folder the label CSV's images are in.
        out_path: the model file to write (``.pt``), rewritten at every checkpoint.
        settings: the method's settings dataclass.
        class_names: background first; None derives them from the data.
        split: split spec of the cases to train on (:func:`weakseg.cases.parse_split`), None = all.
        unpaired_masks: :class:`weakseg.unpaired_masks.MaskFile` list for a shape prior, or None.
        image_labels: the image-level label CSV (methods imagelabel, transfer).
        source_dir: the fully segmented source cohort folder (method transfer).
        source_split: split spec of the source cases, None = all.
        masks_split: split spec of the cases whose full masks are used (method collaborative).
        resume: continue the run stored in ``out_path``.
        device: a ``torch.device``.
        progress: a :class:`weakseg.progress.Progress`.
    """

    data_dir: str
    out_path: str
    settings: Any
    class_names: list[str] | None
    device: Any
    progress: Any
    split: str | None = None
    unpaired_masks: list | None = None
    image_labels: str | None = None
    resume: bool = False
    source_dir: str | None = None
    source_split: str | None = None
    masks_split: str | None = None
