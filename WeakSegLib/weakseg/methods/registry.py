"""The list of segmentation methods: the one place a method is named.

The command line's choices and help, ``predict``'s dispatch on a model file, the
benchmark's rows and the Slicer module's method list all come from :data:`METHODS`.
Adding a method is adding its module under :mod:`weakseg.methods` and its name to :data:`METHOD_MODULES`.
"""

from __future__ import annotations

import importlib

from weakseg.errors import WeakSegInputError
from weakseg.methods.spec import PER_IMAGE, TRAINED, MethodSpec, OptionField

# The modules under weakseg.methods that export a method's SPEC, in the order users see them.
METHOD_MODULES = (
    "interactive",
    "growcut",
    "cohort",
    "pce",
    "maag",
    "imagelabel",
    "transfer",
    "collaborative",
    "shape_gan",
    "cycle",
)

METHODS: tuple[MethodSpec, ...] = tuple(importlib.import_module(f"weakseg.methods.{name}").SPEC for name in METHOD_MODULES)


def method_names(usage: str | None = None) -> tuple[str, ...]:
    """Names of the methods, all or those of one usage (:data:`~weakseg.methods.spec.PER_IMAGE` / ``TRAINED``)."""
    return tuple(spec.name for spec in METHODS if usage is None or spec.usage == usage)


def accepted_names(usage: str | None = None) -> tuple[str, ...]:
    """:func:`method_names` followed by the old spellings still accepted."""
    specs = [spec for spec in METHODS if usage is None or spec.usage == usage]
    return tuple(spec.name for spec in specs) + tuple(alias for spec in specs for alias in spec.aliases)


def method_named(name: str, usage: str | None = None) -> MethodSpec:
    """The method called ``name`` (or an old spelling of it).

    Raises:
        WeakSegInputError: no such method (of that usage); the message lists the choices.
    """
    for spec in METHODS:
        if (usage is None or spec.usage == usage) and name in (spec.name,) + spec.aliases:
            return spec
    raise WeakSegInputError(f"method {name!r}: expected one of {', '.join(method_names(usage))}")


def method_for_model(metadata: dict, path: str) -> MethodSpec:
    """The method that reads a model file, from the ``method`` its metadata records.

    Methods that share a model file format (cohort, pce, maag) read each other's files; the
    first of them answers.

    Raises:
        WeakSegInputError: a model of no known method.
    """
    kind = (metadata or {}).get("method")
    matching = [spec for spec in METHODS if spec.usage == TRAINED and spec.model_kind == kind]
    if not matching:
        raise WeakSegInputError(f"{path}: not a model of any WeakSeg method (method {kind!r})")
    return matching[0]


def training_options() -> dict[str, list[tuple[str, list[OptionField]]]]:
    """Every settings option of the trained methods: option -> [(method, its fields)], in registry order.

    A method's variant whose defaults differ for an option adds an entry of its own, named
    ``METHOD --variant VARIANT``, so that the help shows the default each variant really uses.
    """
    options: dict[str, list[tuple[str, list[OptionField]]]] = {}
    for spec in METHODS:
        if spec.usage != TRAINED:
            continue
        base = fields_by_option(spec.option_fields())
        for option, items in base.items():
            options.setdefault(option, []).append((spec.name, items))
        for variant in spec.variants:
            for option, items in fields_by_option(spec.option_fields(variant)).items():
                if [item.default for item in items] != [item.default for item in base[option]]:
                    options[option].append((f"{spec.name} --variant {variant}", items))
    return options


def fields_by_option(fields: list[OptionField]) -> dict[str, list[OptionField]]:
    """Option -> the settings fields it sets (several for one option that sets more than one field)."""
    grouped: dict[str, list[OptionField]] = {}
    for item in fields:
        grouped.setdefault(item.option, []).append(item)
    return grouped


def describe_methods() -> list[dict]:
    """Every method as plain data (``weakseg methods --json``)."""
    return [spec.describe() for spec in METHODS]


__all__ = ["METHODS", "PER_IMAGE", "TRAINED", "accepted_names", "describe_methods", "method_for_model",
           "fields_by_option", "method_named", "method_names", "training_options"]
