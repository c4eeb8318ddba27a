"""The job queue: each slot (a GPU, or one of N CPU workers) runs one job at a time.

A job runs the command line itself, ``weakseg <command> ... --progress lines``, in a process
of its own forked from a preloaded forkserver (:mod:`weakseg.serve.job_process`), in the
job's own folder (its working directory; every path in its command is relative to it and
was chosen by the server). Its ``PROGRESS`` lines become the job's percent and message;
cancel sends SIGTERM to the job's process group (the command line stops at its next
progress report and writes nothing), then SIGKILL after a grace period. The queue itself
lives in the :class:`~weakseg.serve.store.JobStore`, so jobs wait across a restart.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from weakseg.contract import ERROR_PREFIX, EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK
from weakseg.serve import job_process
from weakseg.serve.job_process import LOG_NAME, PROGRESS_NAME
from weakseg.serve.store import CANCELLED, DONE, FAILED, JobStore
from weakseg.errors import WeakSegInputError
from weakseg.serve.submission import MODEL_NAME, data_parallel_training

PROGRESS_LINE = re.compile(r"^PROGRESS\s+(?P<percent>\d+(?:\.\d*)?)\s*(?P<message>.*)$")
CANCEL_GRACE_SECONDS = 10.0
PROGRESS_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True)
class Slot:
    """Where a job runs: its name, the CUDA devices its process sees, ``--device``, and how many
    data-parallel processes a training of cohort, pce or maag runs as (torchrun, one per GPU)."""

    name: str
    visible_devices: str
    device: str
    train_processes: int = 1


def make_slots(gpus: Optional[str], workers: int, train_processes: int = 1) -> list[Slot]:
    """One slot per group of ``train_processes`` GPUs of ``gpus`` (``"0,1,2,3"``), else ``workers`` CPU slots.

    Raises:
        WeakSegInputError: the GPUs do not split into groups of ``train_processes``.
    """
    if not gpus:
        return [Slot(f"cpu{number}", "", "cpu", train_processes) for number in range(1, workers + 1)]
    ids = [item.strip() for item in gpus.split(",") if item.strip()]
    if not ids or len(ids) % train_processes:
        raise WeakSegInputError(f"--gpus {gpus}: {len(ids)} GPU(s) do not split into groups of --train-processes "
                                f"{train_processes}")
    groups = [ids[start:start + train_processes] for start in range(0, len(ids), train_processes)]
    return [Slot("gpu" + "-".join(group), ",".join(group), "cuda", train_processes) for group in groups]


class JobQueue:
    """Worker threads, one per slot, taking queued jobs from the store.

    Args:
        store: the job table.
        jobs_folder: holds one folder per job id.
        slots: from :func:`make_slots`.
        entry: the command line's ``main`` (``weakseg.cli.main``), run in each job's process.
    """

    def __init__(self, store: JobStore, jobs_folder: Path, slots: list[Slot], entry: Callable) -> None:
        self.store = store
        self.entry = entry
        self.jobs_folder = Path(jobs_folder)
        self.slots = slots
        self._wake = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._processes = job_process.context()

    def start(self) -> None:
        for slot in self.slots:
            thread = threading.Thread(target=self._work, args=(slot,), name=f"weakseg-{slot.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Tell idle workers that a job was queued."""
        with self._wake:
            self._wake.notify_all()

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def _work(self, slot: Slot) -> None:
        while not self._stopping:
            job = self.store.claim_next(slot.name)
            if job is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            try:
                self._run(job, slot)
            except Exception as error:  # a job must never take its worker down
                self.store.finish(job["id"], FAILED, None, f"the server could not run the job ({error})")

    def _run(self, job: dict, slot: Slot) -> None:
        folder = self.jobs_folder / job["id"]
        arguments = [job["command"], *job["arguments"], "--progress", "lines", "--device", slot.device]
        entry = self.entry
        if slot.train_processes > 1 and job["command"] == "train" and data_parallel_training(job["arguments"]):
            entry = functools.partial(job_process.torchrun, slot.train_processes)
        process = self._processes.Process(target=job_process.run, name=f"weakseg-job-{job['id']}",
                                          args=(entry, arguments, str(folder), {"CUDA_VISIBLE_DEVICES": slot.visible_devices}))
        process.start()
        self.store.set_pid(job["id"], process.pid)
        cancelled = self._supervise(job["id"], process, folder / PROGRESS_NAME)
        settle(self.store, job["id"], process.exitcode, folder, cancelled)

    def _supervise(self, job_id: str, process, progress_path: Path) -> bool:
        """Wait for the process, passing on its progress; on a cancel request stop its group.

        Returns True when the job was cancelled.
        """
        kill_at = None
        progress = _ProgressFile(progress_path)
        while process.is_alive():
            latest = progress.latest()
            if latest:
                self.store.set_progress(job_id, *latest)
            if kill_at is None and (self.store.cancel_requested(job_id) or self._stopping):
                _signal_group(process.pid, signal.SIGTERM)
                kill_at = time.monotonic() + CANCEL_GRACE_SECONDS
            elif kill_at is not None and time.monotonic() > kill_at:
                _signal_group(process.pid, signal.SIGKILL)
            process.join(timeout=PROGRESS_INTERVAL_SECONDS)
        process.join()
        return kill_at is not None


class _ProgressFile:
    """The newest ``PROGRESS <percent> <message>`` line a job's process has written to its stdout file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def latest(self) -> Optional[tuple]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self._offset)
                text = handle.read()
                self._offset = handle.tell()
        except OSError:
            return None
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        found = None
        for line in lines:
            match = PROGRESS_LINE.match(line.strip())
            if match:
                found = (min(100.0, float(match.group("percent"))), match.group("message"))
        return found


def _signal_group(pid: int, number: int) -> None:
    """Signal the process group ``pid`` leads; the process alone if it has not made its group yet."""
    try:
        os.killpg(pid, number)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, number)
        except (ProcessLookupError, PermissionError):
            pass


def _error_line(log_path: Path) -> str:
    """The command line's ``weakseg: error:`` line from the job's log, else its last line."""
    try:
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):].strip()
    return lines[-1] if lines else "no error message"


def settle(store: JobStore, job_id: str, code: Optional[int], folder: Path, cancelled: bool = False) -> None:
    """Record how a job's process ended: cancelled, done (exit 0) or failed with the error line of its log."""
    if cancelled or code == EXIT_CANCELLED:
        store.finish(job_id, CANCELLED, code, "cancelled")
    elif code == EXIT_OK:
        store.finish(job_id, DONE, code)
    else:
        reason = _error_line(folder / LOG_NAME)
        kind = "bad input" if code == EXIT_BAD_INPUT else f"exit code {code}"
        store.finish(job_id, FAILED, code, f"{kind}: {reason}")


def stop_leftover_process(pid: Optional[int], folder: Path) -> None:
    """Kill the process group a stopped server left running for the job in ``folder`` (Linux: checked by its cwd)."""
    if not pid or not sys.platform.startswith("linux"):
        return
    try:
        if os.path.realpath(f"/proc/{pid}/cwd") != os.path.realpath(folder):
            return
    except OSError:
        return
    _signal_group(pid, signal.SIGKILL)


def recover(store: JobStore, jobs_folder: Path) -> None:
    """Settle the jobs a stopped server left running: a job whose process ended meanwhile by the exit
    status it left (:func:`job_process.recorded_status`); a training with a checkpoint is queued again
    with ``--resume``; every other is marked failed, saying why. No partial result is ever served
    (only ``done`` jobs are)."""
    for job in store.running():
        folder = Path(jobs_folder) / job["id"]
        stop_leftover_process(job.get("pid"), folder)
        status = job_process.recorded_status(folder)
        if status is not None:
            settle(store, job["id"], status, folder)
        elif job["resumable"] and (folder / "out" / MODEL_NAME).is_file():
            arguments = job["arguments"] if "--resume" in job["arguments"] else job["arguments"] + ["--resume"]
            store.requeue(job["id"], arguments)
        else:
            store.finish(job["id"], FAILED, None, f"the server stopped while the job was running (at "
                                                  f"{job['percent']:.0f} %); submit it again")
