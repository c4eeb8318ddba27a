"""A folder of trained networks keyed by image content: re-segmenting after an edit starts warm.

In the interactive loop a user paints a few more scribbles and segments the same volume
again. Everything that depends on the scribbles (grow-cut labels, region of interest) is
recomputed (it costs well under a second); the expensive part, the network trained on
that volume, is kept in ``<folder>/<key>.pt`` and the next run continues from it.

The key is a SHA-256 of the image's voxels, shape and spacing, the class names and the
network's widths, so an entry is only ever used for the same image, classes and network:
another image, other classes or other widths miss the cache (and train from scratch).
An entry is replaced by every run on its image; the folder keeps the ``MAX_ENTRIES`` most
recently written entries and deletes older ones. Entries hold tensors only and load with
``torch.load(weights_only=True)``; one that cannot be loaded counts as a miss.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from weakseg.errors import WeakSegInputError
from weakseg.io import LoadedImage, write_atomically

MAX_ENTRIES = 16
ENTRY_FORMAT = "weakseg-warm-start-1"


def cache_key(image: LoadedImage, class_names: list[str], settings: object) -> str:
    """The entry name for ``image`` segmented into ``class_names`` with ``settings`` (its ``channels``)."""
    digest = hashlib.sha256()
    voxels = np.ascontiguousarray(image.array)
    digest.update(str((voxels.dtype.str, voxels.shape, tuple(image.spacing_zyx))).encode())
    digest.update(voxels.tobytes())
    digest.update(repr([name.lower() for name in class_names]).encode())
    digest.update(repr(tuple(getattr(settings, "channels", ()))).encode())
    return digest.hexdigest()[:32]


class WarmStartCache:
    """Networks of earlier runs in ``folder`` (created on first write).

    Raises:
        WeakSegInputError: ``folder`` exists and is not a folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise WeakSegInputError(f"{folder}: --cache must be a folder, this is a file")

    def path(self, key: str) -> Path:
        """The file of entry ``key``."""
        return self.folder / f"{key}.pt"

    def load(self, key: str, device: torch.device | str = "cpu") -> dict | None:
        """The stored network weights of ``key``, or None when absent or unreadable."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # a damaged entry is a miss; the run rewrites it
            return None
        if not isinstance(payload, dict) or payload.get("format") != ENTRY_FORMAT:
            return None
        return payload["model"]

    def save(self, key: str, state: dict) -> None:
        """Store network weights under ``key`` atomically, then drop the oldest entries beyond ``MAX_ENTRIES``."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WeakSegInputError(f"{self.folder}: cannot create the cache folder ({error.strerror})") from None
        payload = {"format": ENTRY_FORMAT, "model": {name: value.detach().cpu() for name, value in state.items()}}
        write_atomically(self.path(key), lambda temporary: torch.save(payload, temporary))
        entries = sorted(self.folder.glob("*.pt"), key=lambda entry: entry.stat().st_mtime, reverse=True)
        for stale in entries[MAX_ENTRIES:]:
            stale.unlink(missing_ok=True)
