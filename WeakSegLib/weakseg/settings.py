"""Training settings as they are stored in model files.

Model files are read with ``torch.load(weights_only=True)``, which rebuilds plain lists,
dicts and scalars but no dataclasses, and a file written by one version of WeakSeg may be
read by another. :class:`StoredSettings` gives a settings dataclass of scalars and tuples
one way to go to and from such a dict.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Sequence, TypeVar

from weakseg.errors import WeakSegInputError

NORMALISATIONS = ("auto", "volume", "cohort", "median")
NORMALISATION_HELP = ("intensity normalisation: volume (each image by its own statistics: MRI), cohort (one clip "
                      "and z-score for all training images, kept in the model: photographs, CT), median (each image "
                      "divided by its foreground median: MRI slices each stretched to its own range), auto (cohort "
                      "when every training image is a colour picture, else volume; see weakseg.data.training_intensities)")

SettingsType = TypeVar("SettingsType", bound="StoredSettings")


class StoredSettings:
    """Mixin for a dataclass whose fields are scalars or tuples."""

    def as_dict(self) -> dict[str, Any]:
        """The settings with tuples written as lists."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls: type[SettingsType], values: dict[str, Any]) -> SettingsType:
        """Settings from :meth:`as_dict`'s output; lists become tuples, keys of other versions are ignored
        and settings the dict lacks keep their defaults."""
        known = {item.name for item in fields(cls)}
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in values.items() if name in known})


def check_unet_image_size(image_size: int, channels: Sequence[int], minimum_multiple: int = 1) -> None:
    """Refuse an ``--image-size`` a U-Net with ``len(channels)`` levels cannot halve at every level.

    Each level halves the slice, so the side must be a multiple of ``2 ** (levels - 1)``
    (and of ``minimum_multiple`` where a method's other network needs more).

    Raises:
        WeakSegInputError: naming the size, the multiple and the number of levels.
    """
    levels = len(channels)
    multiple = max(minimum_multiple, 2 ** (levels - 1))
    if image_size % multiple:
        raise WeakSegInputError(f"--image-size {image_size} must be a multiple of {multiple} "
                                f"for a U-Net with {levels} levels (--channels)")
