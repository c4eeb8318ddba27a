"""Errors raised for bad user input.

Every message names the offending file, node or value so that a user can fix it
without reading a traceback. The command line turns these into a one-line message
and a non-zero exit code.
"""


class WeakSegInputError(ValueError):
    """Input that WeakSeg cannot work with (wrong geometry, unreadable file, ...)."""


class CancelledError(RuntimeError):
    """Raised inside long work when the user asked to cancel it."""


def check_fractions(owner: str, settings: object, names: tuple[str, ...]) -> None:
    """Raise :class:`WeakSegInputError` naming the first of ``settings``' attributes ``names`` outside [0, 1].

    ``owner`` says whose parameters they are (``"appearance"``), for the message.
    """
    for name in names:
        value = getattr(settings, name)
        if not 0.0 <= value <= 1.0:
            raise WeakSegInputError(f"{owner} parameter {name} must lie in [0, 1], got {value}")
