"""What a client may ask the server to run, and the command line that runs it.

A job is one ``weakseg segment|train|predict`` run. The client sends the sub-command, the
options it would type (``["--method", "growcut", "--classes", "background,liver"]``) and its
files, each with a *role* saying what the file is (``image``, ``scribbles``,
``data:<case>:scribble``, ...). The server, not the client, decides every path: options
that name files (``--out``, ``--scribbles``, ``--model``, ``--cache``, ...) are refused,
uploads get server-chosen names inside the job's own folder, and a client's file name
contributes at most its suffix (from a fixed list). Option names come from the command
line's own parser (passed in by the command line), so a new option of a method is accepted without a change here.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from weakseg.errors import WeakSegInputError
from weakseg.suffixes import MODEL_SUFFIX, RESULT_SUFFIXES

COMMANDS = ("segment", "train", "predict")
# Options that name a file or folder, or that the server sets itself.
SERVER_OPTIONS = ("--out", "--scribbles", "--model", "--cache", "--progress", "--device", "--image-labels",
                  "--source", "--unpaired-masks", "--resume", "--help", "-h")
IMAGE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".seg.nrrd", ".png", ".jpg", ".jpeg", ".bmp")
CSV_SUFFIXES = (".csv",)
CASE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
CASE_KINDS = ("image", "scribble", "label")
RESULT_NAME = "result"
MODEL_NAME = "model.pt"


class SubmissionError(Exception):
    """A request the server refuses: ``status`` (400, 413, ...) and a one-line reason for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    """Where one uploaded file goes: ``relative_path`` inside the job folder, checked as ``kind``."""

    relative_path: str
    kind: str  # "image", "model" or "csv"
    suffixes: tuple[str, ...]


@dataclass
class JobPlan:
    """A checked submission: the files to store and the command line (paths relative to the job folder)."""

    command: str
    uploads: list[Upload]
    arguments: list[str] = field(default_factory=list)
    resumable: bool = False


OptionTables = Dict[str, Dict[str, bool]]


def option_tables(parser: argparse.ArgumentParser) -> OptionTables:
    """For each job command, option -> takes a value, for every option of the command line's
    ``parser`` (:func:`weakseg.cli.build_parser`) that a client may give."""
    subcommands = next(action for action in parser._actions if action.dest == "command")
    tables: OptionTables = {}
    for command in COMMANDS:
        tables[command] = {option: action.nargs != 0 for action in subcommands.choices[command]._actions
                           for option in action.option_strings if option not in SERVER_OPTIONS}
    return tables


def client_options(table: dict[str, bool], command: str, given: list) -> list[str]:
    """The client's options, checked against ``table`` (``weakseg <command>``'s, from :func:`option_tables`).

    Raises:
        SubmissionError: a value that is not a string, a positional argument, an unknown
            option, or one that names a file or that the server sets.
    """
    result: list[str] = []
    items = list(given)
    index = 0
    while index < len(items):
        item = items[index]
        if not isinstance(item, str):
            raise SubmissionError(400, f"arguments: {item!r} is not a string")
        if item in SERVER_OPTIONS or item.split("=", 1)[0] in SERVER_OPTIONS:
            raise SubmissionError(400, f"arguments: {item.split('=', 1)[0]} is set by the server; upload files "
                                       "with their role instead")
        if item not in table:
            raise SubmissionError(400, f"arguments: {item!r} is not an option of weakseg {command} "
                                       "(write each option and its value as separate items)")
        result.append(item)
        if table[item]:
            if index + 1 >= len(items) or not isinstance(items[index + 1], str) or items[index + 1].startswith("--"):
                raise SubmissionError(400, f"arguments: {item} needs a value")
            result.append(items[index + 1])
            index += 1
        index += 1
    return result


def _suffix(file_name: str, allowed: tuple[str, ...], role: str) -> str:
    """The suffix of a client's file name when it is one of ``allowed`` (the only part of the name used)."""
    name = (file_name or "").lower()
    for suffix in sorted(allowed, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise SubmissionError(400, f"file for role {role!r}: its name must end with one of {', '.join(allowed)}")


def _case(text: str, role: str) -> str:
    if not CASE_PATTERN.match(text):
        raise SubmissionError(400, f"role {role!r}: case name {text!r} must be letters, digits and '-' "
                                   "(at most 64, starting with a letter or digit)")
    return text


def plan_job(tables: OptionTables, command: str, options: list, roles: list, file_names: list[str],
             result_format: Optional[str]) -> JobPlan:
    """Check a submission and decide every path of the job.

    Args:
        tables: the options clients may give (:func:`option_tables`).
        command: ``segment``, ``train`` or ``predict``.
        options: the client's command-line options (:func:`client_options`).
        roles: one per uploaded file: ``image``, ``scribbles``, ``model`` (segment, predict);
            ``data:<case>:image|scribble|label``, ``unpaired:<case>``, ``image-labels`` (train).
        file_names: the client's names of the uploaded files (only their suffix is used).
        result_format: segment's result suffix (default ``.seg.nrrd``); predict's ``--format`` option.

    Raises:
        SubmissionError: anything the server will not run, with the reason.
    """
    if command not in COMMANDS:
        raise SubmissionError(400, f"command {command!r}: expected one of {', '.join(COMMANDS)}")
    if len(roles) != len(file_names):
        raise SubmissionError(400, f"roles: {len(roles)} roles for {len(file_names)} files; give one role per file")
    arguments = client_options(tables[command], command, options)
    uploads: list[Upload] = []
    images: list[str] = []
    single: dict[str, str] = {}
    data_cases: set[str] = set()
    taken: set[str] = set()
    for role, file_name in zip(roles, file_names):
        if not isinstance(role, str):
            raise SubmissionError(400, f"roles: {role!r} is not a string")
        parts = role.split(":")
        if command != "train" and role == "image":
            path = f"in/image-{len(images) + 1}{_suffix(file_name, IMAGE_SUFFIXES, role)}"
            images.append(path)
            uploads.append(Upload(path, "image", IMAGE_SUFFIXES))
            continue
        if command == "segment" and role == "scribbles" or command in ("segment", "predict") and role == "model" \
                or command == "train" and role == "image-labels":
            if role in single:
                raise SubmissionError(400, f"role {role!r}: given twice")
            kind, allowed = {"scribbles": ("image", IMAGE_SUFFIXES), "model": ("model", (MODEL_SUFFIX,)),
                             "image-labels": ("csv", CSV_SUFFIXES)}[role]
            path = f"in/{role}{_suffix(file_name, allowed, role)}"
            single[role] = path
            uploads.append(Upload(path, kind, allowed))
            continue
        if command == "train" and len(parts) == 3 and parts[0] == "data" and parts[2] in CASE_KINDS:
            case = _case(parts[1], role)
            path = f"in/data/{case}_{parts[2]}{_suffix(file_name, IMAGE_SUFFIXES, role)}"
            data_cases.add(case)
        elif command == "train" and len(parts) == 2 and parts[0] == "unpaired":
            path = f"in/unpaired/{_case(parts[1], role)}_label{_suffix(file_name, IMAGE_SUFFIXES, role)}"
        else:
            raise SubmissionError(400, f"role {role!r}: not a file role of weakseg {command}")
        if path.lower() in taken:
            raise SubmissionError(400, f"role {role!r}: given twice")
        taken.add(path.lower())
        uploads.append(Upload(path, "image", IMAGE_SUFFIXES))
    return _command_line(command, arguments, uploads, images, single, data_cases, result_format)


def _command_line(command: str, arguments: list[str], uploads: list[Upload], images: list[str], single: dict,
                  data_cases: set, result_format: Optional[str]) -> JobPlan:
    if command == "segment":
        if len(images) != 1 or "scribbles" not in single:
            raise SubmissionError(400, "segment needs one file of role 'image' and one of role 'scribbles'")
        result_format = result_format or ".seg.nrrd"
        if result_format not in RESULT_SUFFIXES:
            raise SubmissionError(400, f"result_format {result_format!r}: expected one of {', '.join(RESULT_SUFFIXES)}")
        line = [images[0], "--scribbles", single["scribbles"], "--out", f"out/{RESULT_NAME}{result_format}"]
        if "model" in single:
            line += ["--model", single["model"]]
        return JobPlan(command, uploads, line + arguments)
    if command == "predict":
        if not images or "model" not in single:
            raise SubmissionError(400, "predict needs one file of role 'model' and at least one of role 'image'")
        return JobPlan(command, uploads, [single["model"], *images, "--out", "out"] + arguments)
    if not data_cases:
        raise SubmissionError(400, "train needs the cohort: files of role 'data:<case>:image' and "
                                   "'data:<case>:scribble' (or 'data:<case>:label')")
    line = ["in/data", "--out", f"out/{MODEL_NAME}"]
    if "image-labels" in single:
        line += ["--image-labels", single["image-labels"]]
    if any(upload.relative_path.startswith("in/unpaired/") for upload in uploads):
        line += ["--unpaired-masks", "in/unpaired"]
    return JobPlan(command, uploads, line + arguments, resumable=True)


def data_parallel_training(arguments: list) -> bool:
    """True when a ``train`` job's arguments ask for a method that trains data-parallel (cohort, pce, maag)."""
    from weakseg.methods.registry import method_named
    from weakseg.methods.spec import TRAINED

    if "--method" in arguments and arguments.index("--method") + 1 < len(arguments):
        name = arguments[arguments.index("--method") + 1]
    else:
        name = "imagelabel" if "--image-labels" in arguments else "cohort"
    try:
        return method_named(name, TRAINED).data_parallel
    except WeakSegInputError:
        return False
