"""Progress reporting and cancellation for long work.

Library code reports through a :class:`Progress` object and never prints: the command
line turns reports into a bar or into machine-readable ``PROGRESS <percent> <message>``
lines (read by the Slicer module), and a caller that wants to stop the work makes
``should_cancel`` return True, upon which the next report raises
:class:`~weakseg.errors.CancelledError`.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Callable, ContextManager

from weakseg.errors import CancelledError

if TYPE_CHECKING:
    from weakseg.profiling import StageProfile

ProgressCallback = Callable[[float, str], None]


class Progress:
    """Maps a task's own ``0..1`` progress onto a slice of the whole job's progress.

    Args:
        callback: receives ``(fraction of the whole job in 0..1, message)``.
        should_cancel: polled at every report; True cancels the work.
        start, end: the slice of the whole job this task covers.
        profile: records seconds and peak memory of the stages the work enters through
            :meth:`stage` (``--profile``); None records nothing.
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        start: float = 0.0,
        end: float = 1.0,
        profile: StageProfile | None = None,
    ) -> None:
        self._callback = callback
        self._should_cancel = should_cancel
        self._start = start
        self._end = end
        self.profile = profile

    def report(self, fraction: float, message: str = "") -> None:
        """Report that this task is ``fraction`` done; raises CancelledError if cancelled."""
        if self._should_cancel is not None and self._should_cancel():
            raise CancelledError("cancelled by the user")
        if self._callback is not None:
            clamped = min(max(fraction, 0.0), 1.0)
            self._callback(self._start + (self._end - self._start) * clamped, message)

    def part(self, start: float, end: float) -> "Progress":
        """A reporter for a sub-task covering ``start..end`` of this task."""
        span = self._end - self._start
        return Progress(self._callback, self._should_cancel, self._start + span * start, self._start + span * end,
                        self.profile)

    def muted(self) -> "Progress":
        """The same task and cancellation without reports (the other processes of a torchrun training)."""
        return Progress(None, self._should_cancel, self._start, self._end, self.profile)

    def stage(self, name: str) -> ContextManager[None]:
        """``with progress.stage("training"):`` times the block in the profile, if any (see :mod:`weakseg.profiling`)."""
        return self.profile.stage(name) if self.profile is not None else nullcontext()


SILENT = Progress()
