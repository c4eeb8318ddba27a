"""File suffixes, atomic writes and copies of files about to be replaced, without SimpleITK.

Kept apart from :mod:`weakseg.io` so that code that writes only model files (the
training loop, array-based training on a machine without SimpleITK) can use them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from weakseg.contract import FORMER_COPY_MARK


def suffix_of(path: str | os.PathLike) -> str:
    """The file's full suffix in lower case, ``.nii.gz`` and ``.seg.nrrd`` included."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def write_atomically(path: str | os.PathLike, write_to: Callable[[str], None]) -> None:
    """Call ``write_to(temporary_path)`` then move the result onto ``path``.

    The temporary file lives in the destination folder and carries the same suffix, so
    format detection by suffix works and the final rename is atomic: a reader, a run
    killed part-way, or a second run writing the same path at once never leaves a
    half-written file at ``path`` (the last complete write wins). The data is flushed to
    disk before the rename. The file gets the permissions a newly created file gets
    under the user's umask (``mkstemp`` alone would leave it readable by the owner only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix_of(path), dir=path.parent)
    os.close(handle)
    try:
        write_to(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())
        _flush_to_disk(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _flush_to_disk(path: str) -> None:
    """fsync a written file so that the rename never publishes data still in flight."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def keep_former_file(path: str | os.PathLike) -> Path | None:
    """Keep a copy of the file at ``path`` beside it, before a run that will replace it starts.

    The copy is the first free name of ``<stem>.previous<suffix>``, ``<stem>.previous-2<suffix>``,
    ... (a hard link where the file system allows one, so it costs no space). The file at
    ``path`` itself stays until the run replaces it, so a run that fails early leaves it in
    place. Returns the copy's path, or None when ``path`` holds no file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    suffix = suffix_of(path)
    stem = path.name[:len(path.name) - len(suffix)] if suffix else path.name
    number = 1
    while True:
        kept = path.with_name(f"{stem}{FORMER_COPY_MARK}{'' if number == 1 else f'-{number}'}{suffix}")
        if not kept.exists():
            break
        number += 1
    try:
        os.link(path, kept)
    except OSError:
        shutil.copy2(path, kept)
    return kept
