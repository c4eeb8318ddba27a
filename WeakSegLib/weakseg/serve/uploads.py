"""Storing a job's uploaded files: server-chosen names, a byte limit and a voxel limit.

Each file is copied to the path :mod:`~weakseg.serve.submission` chose inside the job's
folder. An image is then checked from its header alone (:func:`weakseg.io.image_header`,
the check the command line makes before reading voxels) against the server's voxel limit,
so an oversized volume is refused before any job starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np

from weakseg.errors import WeakSegInputError
from weakseg.serve.submission import SubmissionError, Upload

CHUNK_BYTES = 1 << 20


def store_upload(source: BinaryIO, folder: Path, upload: Upload, byte_budget: int) -> int:
    """Copy ``source`` to ``folder / upload.relative_path``; returns the bytes written.

    Raises:
        SubmissionError: 413 when the file takes more than ``byte_budget`` bytes.
    """
    destination = folder / upload.relative_path
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(destination, "wb") as handle:
        while True:
            chunk = source.read(CHUNK_BYTES)
            if not chunk:
                break
            written += len(chunk)
            if written > byte_budget:
                raise SubmissionError(413, f"upload too large: the files of one job may hold at most "
                                           f"{byte_budget:,} more bytes here")
            handle.write(chunk)
    return written


def check_image_size(path: Path, role: str, max_voxels: int) -> None:
    """Refuse an uploaded image over ``max_voxels`` values (voxels x components), read from its header.

    Raises:
        SubmissionError: 413 for too many values, 400 for a file that is no readable image.
    """
    from weakseg.io import image_header

    try:
        size, components = image_header(path)
    except WeakSegInputError as error:
        message = str(error).replace(str(path), f"file for role {role!r}")
        raise SubmissionError(400, message) from None
    values = int(np.prod(size, dtype=np.int64)) * max(1, components)
    if values > max_voxels:
        shape = "x".join(str(item) for item in size)
        raise SubmissionError(413, f"file for role {role!r}: image too large: {shape} = {values:,} values; "
                                   f"this server accepts at most {max_voxels:,}")


def remove_folder(folder: Path) -> None:
    """Delete a job folder whose submission was refused."""
    shutil.rmtree(folder, ignore_errors=True)
