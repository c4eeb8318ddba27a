"""Run a command line process, stream its progress back, and stop it on request.

Training and inference run in a separate Python process so that Slicer stays
responsive and a crash in PyTorch cannot take the application down. This module has
no Qt and no Slicer dependency: the widget calls :meth:`CliRunner.poll` from a
``qt.QTimer``, the console path calls :meth:`CliRunner.wait`, and tests drive it with
any small script.

The process reports progress on stdout as lines ``PROGRESS <percent> <message>``
(``weakseg ... --progress lines``); every other line of stdout or stderr is a log line.
Two reader threads move lines into a queue as they arrive, so neither pipe can fill up
and block the process.

Cancel reaches every process the command started: on macOS and Linux the process leads
its own session (``start_new_session``), so one ``killpg`` reaches its whole group; on
Windows it runs inside a job object, which ``TerminateJobObject`` ends with everything in
it. Windows has no polite signal that reaches a console-less child of a GUI application
(``CTRL_BREAK_EVENT`` needs a shared console, which Slicer does not have), so there
cancel ends the job at once; the command line writes its outputs atomically, so nothing
partial is left behind.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

PROGRESS_PATTERN = re.compile(r"^PROGRESS\s+(?P<percent>\d+(?:\.\d*)?)\s*(?P<message>.*)$")
ERROR_PREFIX = "weakseg: error:"
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130
ERROR_LINES_KEPT = 100
ORPHAN_GRACE_SECONDS = 2.0
CANCEL_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report: ``percent`` in [0, 100] and what the process is doing."""

    percent: float
    message: str


@dataclass(frozen=True)
class LogEvent:
    """One line of output that is not a progress report; ``stream`` is "stdout" or "stderr"."""

    text: str
    stream: str


RunnerEvent = Union[ProgressEvent, LogEvent]


def parseLine(line: str, stream: str) -> RunnerEvent:
    """Turn one output line into a progress report (stdout ``PROGRESS`` lines) or a log line."""
    line = line.rstrip("\r\n")
    match = PROGRESS_PATTERN.match(line) if stream == "stdout" else None
    if match:
        percent = min(100.0, max(0.0, float(match.group("percent"))))
        return ProgressEvent(percent, match.group("message").strip())
    return LogEvent(line, stream)


class CliRunner:
    """One run of a command line process with streamed progress and a process-tree cancel.

    Usage from a GUI timer::

        runner = CliRunner([python, "-m", "weakseg", "segment", ...])
        runner.start()
        ...  # on each timer tick:
        for event in runner.poll(): ...
        if runner.finished: runner.returncode

    Usage from the console or a test: ``runner.start(); runner.wait(onEvent)``.
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None):
        self.command = [str(part) for part in command]
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = cwd
        self.cancelled = False
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue[RunnerEvent] = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._errorLines: deque[str] = deque(maxlen=ERROR_LINES_KEPT)
        self._exitSeenAt: float | None = None
        self._killDeadline: float | None = None
        self._groupKilled = False
        self._windowsJob: WindowsJob | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process; raises ``OSError`` if the executable cannot be started."""
        if self._process is not None:
            raise RuntimeError("CliRunner.start() called twice")
        options: dict = {}
        if sys.platform == "win32":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True  # own process group, so cancel() reaches grandchildren
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=self.env,
            cwd=self.cwd,
            **options,
        )
        if sys.platform == "win32":
            self._windowsJob = WindowsJob.holding(self._process.pid)
        for stream, pipe in (("stdout", self._process.stdout), ("stderr", self._process.stderr)):
            reader = threading.Thread(target=self._read, args=(pipe, stream), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, pipe, stream: str) -> None:
        for line in pipe:
            self._events.put(parseLine(line, stream))
        pipe.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def finished(self) -> bool:
        """True once the process has exited and all of its output has been read.

        Checking also enforces the deadlines: a cancelled process still running after its
        grace period is killed, and children that the process left behind (they would keep
        its pipes open forever) are killed ``ORPHAN_GRACE_SECONDS`` after it exited.
        """
        if self._process is None:
            return False
        self._killIfOverdue()
        if self._process.poll() is None:
            return False
        if self.cancelled and not self._groupKilled:
            self._signalTree(polite=False)  # whatever the cancelled process started goes too
            self._groupKilled = True
        if not any(reader.is_alive() for reader in self._readers):
            self._releaseWindowsJob()
            return True
        if self._exitSeenAt is None:
            self._exitSeenAt = time.monotonic()
        elif time.monotonic() - self._exitSeenAt > ORPHAN_GRACE_SECONDS:
            self._signalTree(polite=False)
            for reader in self._readers:
                reader.join(timeout=1.0)
        if any(reader.is_alive() for reader in self._readers):
            return False
        self._releaseWindowsJob()
        return True

    def _releaseWindowsJob(self) -> None:
        if self._windowsJob is not None:
            self._windowsJob.close()
            self._windowsJob = None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    # -- output ------------------------------------------------------------------------------

    def poll(self) -> list[RunnerEvent]:
        """Return the events that arrived since the last call, without blocking."""
        events: list[RunnerEvent] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._remember(event)
            events.append(event)
        return events

    def _remember(self, event: RunnerEvent) -> None:
        if isinstance(event, LogEvent) and event.stream == "stderr" and event.text.strip():
            self._errorLines.append(event.text.strip())

    def wait(self, timeout: float | None = None, onEvent: Callable[[RunnerEvent], None] | None = None) -> int:
        """Block until the process ends, passing each event to ``onEvent``; returns the exit code.

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the process keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done = self.finished
            for event in self.poll():
                if onEvent:
                    onEvent(event)
            if done:
                return int(self.returncode)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"process {self.command[0]} still running after {timeout} s")
            time.sleep(0.05)

    def errorMessage(self) -> str:
        """The process's own explanation of a failure: its ``weakseg: error:`` line, else its last stderr line."""
        for line in reversed(self._errorLines):
            if line.startswith(ERROR_PREFIX):
                return line[len(ERROR_PREFIX):].strip()
        return self._errorLines[-1] if self._errorLines else ""

    # -- cancel ------------------------------------------------------------------------------

    def cancel(self, gracePeriod: float = CANCEL_GRACE_SECONDS, wait: bool = True) -> None:
        """Stop the process and every process it started.

        On macOS and Linux the process group first gets SIGTERM so that the command line can
        stop at its next progress report and remove partial output; if it is still running
        ``gracePeriod`` seconds later, the group is killed. On Windows the job object holding
        the process tree is terminated at once (see the module's description). With ``wait=False``
        this returns at once and the kill happens in a later :attr:`finished` check (the GUI's
        timer), so that the application never freezes while the process winds down.
        """
        if self._process is None or self.cancelled:
            if wait:
                self._waitUntilFinished()
            return
        self.cancelled = True
        if self._process.poll() is None:
            self._signalTree(polite=True)
            self._killDeadline = time.monotonic() + gracePeriod
        if wait:
            self._waitUntilFinished()

    def _waitUntilFinished(self) -> None:
        while not self.finished:
            time.sleep(0.05)

    def _killIfOverdue(self) -> None:
        if self._killDeadline is not None and self._process.poll() is None and time.monotonic() > self._killDeadline:
            self._signalTree(polite=False)
            self._process.wait()

    def _signalTree(self, polite: bool) -> None:
        process = self._process
        if sys.platform == "win32":
            if self._windowsJob is not None and self._windowsJob.terminate():
                return
            subprocess.run(  # no job object (it could not be made): end the tree the process still leads
                ["taskkill", "/F", "/T", "/PID", str(process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                creationflags=subprocess.CREATE_NO_WINDOW,
            )
            return
        try:
            os.killpg(process.pid, signal.SIGTERM if polite else signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the whole group has already exited


# ---------------------------------------------------------------------------------------------
# Windows job object (kernel32 through ctypes; only ever called on Windows)

JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100
CANCELLED_EXIT_CODE = 1


class _BasicLimitInformation(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
    )]


class _ExtendedLimitInformation(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimitInformation),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class WindowsJob:
    """A Windows job object that holds a process and every process it starts.

    ``terminate()`` ends them all, even children whose parent has already exited (which
    ``taskkill /T`` misses). The job is also set to end its processes when its last handle
    closes, so a crash of Slicer does not leave a training running.
    """

    def __init__(self, kernel32, handle: int):
        self._kernel32 = kernel32
        self._handle = handle

    @classmethod
    def holding(cls, pid: int) -> WindowsJob | None:
        """A new job holding process ``pid``; None where Windows refuses (then cancel uses taskkill)."""
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateJobObjectW.restype = ctypes.c_void_p
        kernel32.OpenProcess.restype = ctypes.c_void_p
        job = kernel32.CreateJobObjectW(None, None)
        if not job:
            return None
        limits = _ExtendedLimitInformation()
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        process = kernel32.OpenProcess(PROCESS_TERMINATE | PROCESS_SET_QUOTA, False, pid)
        assigned = bool(process) and bool(kernel32.SetInformationJobObject(
            ctypes.c_void_p(job), JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS, ctypes.byref(limits), ctypes.sizeof(limits)
        )) and bool(kernel32.AssignProcessToJobObject(ctypes.c_void_p(job), ctypes.c_void_p(process)))
        if process:
            kernel32.CloseHandle(ctypes.c_void_p(process))
        if not assigned:
            kernel32.CloseHandle(ctypes.c_void_p(job))
            return None
        return cls(kernel32, job)

    def terminate(self) -> bool:
        """End every process in the job; True when Windows did."""
        return bool(self._kernel32.TerminateJobObject(ctypes.c_void_p(self._handle), CANCELLED_EXIT_CODE))

    def close(self) -> None:
        """Release the job (any process still in it ends, as the job was set up to do)."""
        self._kernel32.CloseHandle(ctypes.c_void_p(self._handle))
