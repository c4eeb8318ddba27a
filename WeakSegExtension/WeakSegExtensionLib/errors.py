"""Errors the WeakSeg extension raises, each with a message a user can act on.

Messages name the MRML node (by its name, as shown in Slicer) or the file at fault,
so that the widget can show them as they are and console users need no traceback.
"""


class WeakSegError(Exception):
    """Base class of every error raised on purpose by the WeakSeg extension."""


class WeakSegInputError(WeakSegError, ValueError):
    """Input that WeakSeg cannot work with: wrong node type, mismatched geometry, missing segment, ..."""


class WeakSegProcessError(WeakSegError, RuntimeError):
    """The ``weakseg`` command line process failed for a reason other than bad input."""


class WeakSegCancelledError(WeakSegError):
    """The user cancelled a running action; nothing was written to the scene."""


class WeakSegDependencyError(WeakSegError):
    """WeakSegLib or one of the Python packages it needs is not installed."""
