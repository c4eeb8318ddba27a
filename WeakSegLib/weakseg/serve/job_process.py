"""The process a job runs in: the ``weakseg`` command line's ``main``, forked from a preloaded server.

Starting ``python -m weakseg`` afresh costs seconds of imports (torch, SimpleITK) before any
work; the queue instead forks each job from multiprocessing's *forkserver*, which imported
torch and the command line once. The child then makes itself a new session (so cancel
reaches everything it starts), enters the job's folder, sends its stdout (``PROGRESS``
lines) and stderr to files there, and runs ``entry`` (the command line's ``main``, handed
down by :mod:`weakseg.cli`), exactly what ``python -m weakseg <arguments>`` runs. Its exit
status is the command line's; it is also left in the folder (:data:`STATUS_NAME`), so that a
server restarted after the job ended, unseen, can settle it (:func:`recorded_status`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Callable, Optional

PROGRESS_NAME = "progress.txt"
LOG_NAME = "log.txt"
STATUS_NAME = "exit-status.txt"


# Imported once by the forkserver, so that each job starts without importing them again.
PRELOADED = ["torch", "SimpleITK", "weakseg.cli", "weakseg.commands", "weakseg.apply", __name__]


def run(entry: Callable[[list], Optional[int]], arguments: list, folder: str, environment: dict) -> None:
    """Run ``entry(arguments)`` (``weakseg <arguments>``) in ``folder`` with ``environment`` added; exits with its
    status."""
    os.setsid()
    os.chdir(folder)
    os.environ.update(environment)
    for number, name in ((1, PROGRESS_NAME), (2, LOG_NAME)):
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(descriptor, number)
        os.close(descriptor)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)
    try:
        status = entry(list(arguments))
    except SystemExit as error:  # argparse refuses arguments with status 2
        status = error.code if isinstance(error.code, int) else 1
    except BaseException as error:  # an unexpected failure: report it as the command line would crash
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    _record_status(status)
    os._exit(status)


def _record_status(status: int) -> None:
    """Write the exit status to :data:`STATUS_NAME` in the job's folder (the working directory), atomically."""
    partial = STATUS_NAME + ".part"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(str(status))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, STATUS_NAME)


def recorded_status(folder: str | os.PathLike) -> Optional[int]:
    """The exit status a job's process left in ``folder``, or None when it did not end (or never ran)."""
    try:
        with open(os.path.join(folder, STATUS_NAME), encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def torchrun(processes: int, arguments: list) -> int:
    """``torchrun --standalone --nproc-per-node <processes> -m weakseg <arguments>`` (a data-parallel training)."""
    from torch.distributed.run import main as launch

    launch(["--standalone", "--nproc-per-node", str(processes), "-m", "weakseg", *arguments])
    return 0


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context, preloading torch, SimpleITK and the command line (:data:`PRELOADED`)."""
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(PRELOADED)
    return forkserver
