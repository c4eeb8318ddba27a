"""Errors raised for bad user input.

Every message names the offending file, node or value so that a user can fix it
without reading a traceback. The command line turns these into a one-line message
and a non-zero exit code.
"""


class WeakSegInputError(ValueError):
    """Input that WeakSeg cannot work with (wrong geometry, unreadable file, ...)."""


class CancelledError(RuntimeError):
    """Raised inside long work when the user asked to cancel it."""
