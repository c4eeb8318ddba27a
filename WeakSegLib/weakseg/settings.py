"""Training settings as they are stored in model files.

Model files are read with ``torch.load(weights_only=True)``, which rebuilds plain lists,
dicts and scalars but no dataclasses, and a file written by one version of WeakSeg may be
read by another. :class:`StoredSettings` gives a settings dataclass of scalars and tuples
one way to go to and from such a dict.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

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
