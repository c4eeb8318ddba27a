"""File suffixes and atomic writes, without SimpleITK.

Kept apart from :mod:`weakseg.io` so that code that writes only model files (the
training loop, array-based training on a machine without SimpleITK) can use them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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
    format detection by suffix works and the final rename is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix_of(path), dir=path.parent)
    os.close(handle)
    try:
        write_to(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
