"""The process a job runs in: the ``weakseg`` command line's ``main``, forked from a preloaded server.

Starting ``python -m weakseg`` afresh costs seconds of imports (torch, SimpleITK) before any
work; the queue instead forks each job from multiprocessing's *forkserver*, which imported
torch and the command line once. The child then makes itself a new session (so cancel
reaches everything it starts), enters the job's folder, sends its stdout (``PROGRESS``
lines) and stderr to files there, and runs ``entry`` (the command line's ``main``, handed
down by :mod:`weakseg.cli`), exactly what ``python -m weakseg <arguments>`` runs. Its exit
status is the command line's.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Callable, Optional

PROGRESS_NAME = "progress.txt"
LOG_NAME = "log.txt"


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
    os._exit(status)


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
