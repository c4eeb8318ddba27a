"""A long action: a ``weakseg`` command line run, its working folder, and what to do with its output.

The GUI and the console drive the same object. The GUI starts it, calls :meth:`WeakSegJob.poll`
from a timer (progress bar, status text), offers Cancel, and calls :meth:`WeakSegJob.result`
once :attr:`WeakSegJob.finished` is true. The console calls :meth:`WeakSegJob.wait`, which does
all of that in a loop. Either way the result is computed on the caller's thread, so MRML is
only ever touched from the thread that owns the scene.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from WeakSegExtensionLib.errors import WeakSegCancelledError, WeakSegError, WeakSegInputError, WeakSegProcessError
from WeakSegExtensionLib.runner import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, CliRunner, LogEvent, ProgressEvent

ProgressCallback = Callable[[float, str], None]
LogCallback = Callable[[str], None]


class WeakSegJob:
    """One run of the ``weakseg`` command line and the conversion of its output.

    Args:
        title: what the job does, for status text ("Segmenting 'MRHead'").
        command: the full command line.
        workDirectory: temporary folder holding the inputs and outputs; removed when the job ends.
        finish: called once, after a successful run, on the caller's thread; its return
            value is the job's result.
        fileDescriptions: file path -> words for it ("volume 'MRHead'"); used to rewrite
            error messages of the command line so they name nodes instead of temporary files.
        logCallback: receives every log line of the process.
        runner: what runs the command (a :class:`~WeakSegExtensionLib.remote.RemoteRunner` for a
            server); a local :class:`CliRunner` of ``command`` by default.
    """

    def __init__(
        self,
        title: str,
        command: Sequence[str],
        workDirectory: Path,
        finish: Callable[[], Any],
        fileDescriptions: dict[str, str] | None = None,
        logCallback: LogCallback | None = None,
        keepWorkDirectory: bool = False,
        runner=None,
    ):
        self.title = title
        self.workDirectory = Path(workDirectory)
        self.runner = runner if runner is not None else CliRunner(command)
        self.percent = 0.0
        self.message = "starting"
        self._finish = finish
        self._fileDescriptions = dict(fileDescriptions or {})
        self._logCallback = logCallback
        self._keepWorkDirectory = keepWorkDirectory
        self._done = False
        self._result: Any = None

    def start(self) -> "WeakSegJob":
        """Start the process; returns self so that ``job = logic.startX(...).start()`` reads naturally."""
        logging.info("WeakSeg: %s: %s", self.title, " ".join(self.runner.command))
        try:
            self.runner.start()
        except OSError as error:
            self._cleanup()
            raise WeakSegProcessError(f"{self.title}: cannot start {self.runner.command[0]} ({error})") from None
        except WeakSegError:
            self._cleanup()
            raise
        return self

    @property
    def finished(self) -> bool:
        """True once the process has ended and all its output has been read."""
        return self.runner.finished

    def poll(self) -> list[ProgressEvent | LogEvent]:
        """Take the new output of the process, update :attr:`percent` and :attr:`message`, and return it."""
        events = self.runner.poll()
        for event in events:
            if isinstance(event, ProgressEvent):
                self.percent, self.message = event.percent, event.message
            elif self._logCallback and event.text.strip():
                self._logCallback(event.text)
        return events

    def cancel(self, wait: bool = True) -> None:
        """Stop the process tree; :meth:`result` then raises :class:`WeakSegCancelledError`.

        ``wait=False`` returns at once (for the GUI); keep polling until :attr:`finished`.
        """
        self.runner.cancel(wait=wait)

    def wait(self, progressCallback: ProgressCallback | None = None) -> Any:
        """Block until the process ends, reporting progress, then return :meth:`result`.

        Ctrl+C in the console cancels the process before re-raising.
        """
        try:
            while not self.finished:
                for event in self.poll():
                    if isinstance(event, ProgressEvent) and progressCallback:
                        progressCallback(event.percent, event.message)
                time.sleep(0.05)
        except KeyboardInterrupt:
            self.cancel()
            self._cleanup()
            raise
        for event in self.poll():
            if isinstance(event, ProgressEvent) and progressCallback:
                progressCallback(event.percent, event.message)
        return self.result()

    def result(self) -> Any:
        """Check how the process ended and convert its output (once); raises on failure.

        Raises:
            WeakSegCancelledError: the job was cancelled (or the process was interrupted).
            WeakSegInputError: the command line rejected its input (exit code 2).
            WeakSegProcessError: any other failure; the message ends with the process's own words.
        """
        if self._done:
            return self._result
        if not self.finished:
            raise RuntimeError(f"{self.title}: result() called before the process finished")
        self.poll()
        try:
            code = self.runner.returncode
            if self.runner.cancelled or code == EXIT_CANCELLED:
                raise WeakSegCancelledError(f"{self.title}: cancelled")
            if code == EXIT_BAD_INPUT:
                raise WeakSegInputError(self._explain(self.runner.errorMessage() or "input rejected"))
            if code != EXIT_OK:
                detail = self._explain(self.runner.errorMessage() or "no error message")
                raise WeakSegProcessError(f"{self.title} failed (exit code {code}): {detail}")
            self._result = self._finish()
            self._done = True
            return self._result
        finally:
            self._cleanup()

    def _explain(self, message: str) -> str:
        for path, description in self._fileDescriptions.items():
            message = message.replace(path, description)
        return message

    def _cleanup(self) -> None:
        if not self._keepWorkDirectory:
            shutil.rmtree(self.workDirectory, ignore_errors=True)
