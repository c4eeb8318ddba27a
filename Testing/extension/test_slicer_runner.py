"""The Qt-free process runner (WeakSegExtensionLib.runner): streaming, exit codes, cancel.

Each test runs a few lines of Python with ``sys.executable`` as the child process, so no
WeakSegLib and no slicer-core is needed. Every run takes well under a second except the
cancel tests, which wait for a child that would otherwise sleep for a minute. The Windows
job object is driven through a stand-in kernel32 (``ctypes.WinDLL`` exists only on Windows),
which checks the calls and the limit structure it is handed.
"""

from __future__ import annotations

import ctypes
import os
import sys
import textwrap
import time

import pytest

from WeakSegExtensionLib.runner import CliRunner, LogEvent, ProgressEvent, parseLine


def pythonCommand(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def isAlive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except OSError:
        return True


def waitUntil(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_progress_lines_are_parsed_and_other_lines_are_logs():
    assert parseLine("PROGRESS 42 training epoch 3/10\n", "stdout") == ProgressEvent(42.0, "training epoch 3/10")
    assert parseLine("PROGRESS 12.5\n", "stdout") == ProgressEvent(12.5, "")
    assert parseLine("PROGRESS 140 over\n", "stdout") == ProgressEvent(100.0, "over")
    assert parseLine("PROGRESS 10 from stderr\n", "stderr") == LogEvent("PROGRESS 10 from stderr", "stderr")
    assert parseLine("loading image\n", "stdout") == LogEvent("loading image", "stdout")


def test_poll_returns_progress_while_the_process_is_still_running():
    runner = CliRunner(pythonCommand("""
        import sys, time
        print("PROGRESS 10 reading", flush=True)
        time.sleep(60)
    """))
    runner.start()
    try:
        seen = []
        assert waitUntil(lambda: seen.extend(runner.poll()) or seen)
        assert seen == [ProgressEvent(10.0, "reading")]
        assert not runner.finished
        assert runner.poll() == []  # nothing new, and poll() returned at once
    finally:
        runner.cancel()


def test_wait_streams_every_event_in_order_and_returns_the_exit_code():
    runner = CliRunner(pythonCommand("""
        print("PROGRESS 0 start")
        print("a log line")
        print("PROGRESS 100 done")
    """))
    runner.start()
    events = []
    assert runner.wait(timeout=30, onEvent=events.append) == 0
    assert events == [ProgressEvent(0.0, "start"), LogEvent("a log line", "stdout"), ProgressEvent(100.0, "done")]
    assert runner.finished


def test_error_message_is_taken_from_the_weakseg_error_line():
    runner = CliRunner(pythonCommand("""
        import sys
        print("some warning", file=sys.stderr)
        print("weakseg: error: /tmp/x/scribbles.nrrd: no background scribbles", file=sys.stderr)
        sys.exit(2)
    """))
    runner.start()
    assert runner.wait(timeout=30) == 2
    assert runner.errorMessage() == "/tmp/x/scribbles.nrrd: no background scribbles"


def test_cancel_kills_the_whole_process_tree():
    runner = CliRunner(pythonCommand("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("PROGRESS 1 child", child.pid, flush=True)
        time.sleep(60)
    """))
    runner.start()
    events = []
    assert waitUntil(lambda: events.extend(runner.poll()) or events)
    childPid = int(events[0].message.split()[-1])
    assert isAlive(runner.pid) and isAlive(childPid)

    started = time.monotonic()
    runner.cancel(gracePeriod=2.0)
    assert time.monotonic() - started < 10
    assert runner.cancelled and runner.finished
    assert waitUntil(lambda: not isAlive(childPid), 5.0), "the grandchild survived cancel()"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal semantics")
def test_cancel_lets_the_process_clean_up_before_killing_it(tmp_path):
    marker = tmp_path / "cleaned"
    runner = CliRunner(pythonCommand(f"""
        import signal, sys, time
        def stop(signum, frame):
            open({str(marker)!r}, "w").close()
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print("PROGRESS 5 waiting", flush=True)
        time.sleep(60)
    """))
    runner.start()
    assert waitUntil(lambda: runner.poll() != [])
    runner.cancel(gracePeriod=5.0)
    assert marker.exists()
    assert runner.returncode == 130


def test_children_left_behind_holding_the_pipes_do_not_keep_the_run_open():
    runner = CliRunner(pythonCommand("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("PROGRESS 100 done, child", child.pid, flush=True)
    """))
    runner.start()
    events = []
    started = time.monotonic()
    assert runner.wait(timeout=20, onEvent=events.append) == 0
    assert time.monotonic() - started < 10
    childPid = int(events[0].message.split()[-1])
    assert waitUntil(lambda: not isAlive(childPid), 5.0), "the orphaned child was not stopped"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal semantics")
def test_cancel_without_waiting_returns_at_once_and_kills_a_process_that_ignores_sigterm_later():
    runner = CliRunner(pythonCommand("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("PROGRESS 5 stubborn", flush=True)
        time.sleep(60)
    """))
    runner.start()
    assert waitUntil(lambda: runner.poll() != [])
    started = time.monotonic()
    runner.cancel(gracePeriod=1.0, wait=False)
    assert time.monotonic() - started < 0.5
    assert not runner.finished  # still inside its grace period
    assert waitUntil(lambda: runner.finished, 10.0)
    assert runner.returncode == -9


class FakeKernel32:
    """Records the kernel32 calls of WindowsJob; ``assignWorks`` decides AssignProcessToJobObject's answer."""

    JOB, PROCESS = 11, 22

    def __init__(self, assignWorks: bool = True):
        self.calls = []
        self.limitFlags = None
        outer = self

        def record(name, result):
            def function(*arguments):
                outer.calls.append((name, [getattr(a, "value", a) for a in arguments]))
                return result
            return function

        self.CreateJobObjectW = record("CreateJobObjectW", self.JOB)
        self.OpenProcess = record("OpenProcess", self.PROCESS)
        self.AssignProcessToJobObject = record("AssignProcessToJobObject", 1 if assignWorks else 0)
        self.TerminateJobObject = record("TerminateJobObject", 1)
        self.CloseHandle = record("CloseHandle", 1)

        def setInformation(job, informationClass, pointer, size):
            self.limitFlags = pointer._obj.BasicLimitInformation.LimitFlags
            self.calls.append(("SetInformationJobObject", [job.value, informationClass, size]))
            return 1

        self.SetInformationJobObject = setInformation


def test_windows_job_object_holds_the_process_and_terminate_ends_the_job(monkeypatch):
    from WeakSegExtensionLib import runner

    kernel32 = FakeKernel32()
    monkeypatch.setattr(ctypes, "WinDLL", lambda name, use_last_error=False: kernel32, raising=False)
    job = runner.WindowsJob.holding(4321)
    assert job is not None
    names = [name for name, _ in kernel32.calls]
    assert names == ["CreateJobObjectW", "OpenProcess", "SetInformationJobObject", "AssignProcessToJobObject", "CloseHandle"]
    assert kernel32.calls[1][1][2] == 4321
    assert kernel32.calls[3][1] == [FakeKernel32.JOB, FakeKernel32.PROCESS]
    assert kernel32.limitFlags == runner.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert kernel32.calls[2][1][1:] == [runner.JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                                        ctypes.sizeof(runner._ExtendedLimitInformation)]
    assert job.terminate()
    assert kernel32.calls[-1] == ("TerminateJobObject", [FakeKernel32.JOB, runner.CANCELLED_EXIT_CODE])


def test_windows_job_that_cannot_take_the_process_is_released(monkeypatch):
    from WeakSegExtensionLib import runner

    kernel32 = FakeKernel32(assignWorks=False)
    monkeypatch.setattr(ctypes, "WinDLL", lambda name, use_last_error=False: kernel32, raising=False)
    assert runner.WindowsJob.holding(4321) is None
    closed = [arguments[0] for name, arguments in kernel32.calls if name == "CloseHandle"]
    assert sorted(closed) == [FakeKernel32.JOB, FakeKernel32.PROCESS]


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the sizes below are those of 64-bit Windows")
def test_job_limit_structure_has_the_size_windows_expects():
    from WeakSegExtensionLib import runner

    # JOBOBJECT_EXTENDED_LIMIT_INFORMATION is 144 bytes on 64-bit Windows (basic limits 64, I/O counters 48, 4 sizes)
    assert ctypes.sizeof(runner._BasicLimitInformation) == 64
    assert ctypes.sizeof(runner._ExtendedLimitInformation) == 144
