"""How many CPU threads torch uses: ``OMP_NUM_THREADS`` when set, else the cores that are free.

torch's own default is the number of physical cores of the machine. On a machine busy with
other work that is much slower than one thread: torch's threads wait for each other at
every operation, and a descheduled thread stalls them all (on a 2-core machine with a load
of 6.6, 20 training steps of the interactive method took 44.4 s with 2 threads and 5.1 s
with 1). So, unless ``OMP_NUM_THREADS`` says otherwise, WeakSeg uses the cores this process
may run on (its affinity mask) minus the one-minute load average of the machine, at least
one. WeakSeg commands call :func:`configure_torch_threads` once before any work; the Slicer
module runs the same commands, so it follows the same rule (set ``OMP_NUM_THREADS`` in
Slicer's environment to fix the number).
"""

from __future__ import annotations

import os

from weakseg.errors import WeakSegInputError


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def free_cores(cores: int, load: float | None) -> int:
    """``cores`` minus the rounded ``load`` (None: unknown, all of them), at least one."""
    if load is None:
        return cores
    return max(1, min(cores, cores - int(round(load))))


def thread_count() -> int:
    """``OMP_NUM_THREADS`` if set, else :func:`free_cores` of :func:`available_cores` and the load average.

    Raises:
        WeakSegInputError: ``OMP_NUM_THREADS`` is set but not a positive integer.
    """
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested:
        if not requested.isdigit() or int(requested) < 1:
            raise WeakSegInputError(f"OMP_NUM_THREADS={requested!r}: expected a positive integer")
        return int(requested)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return free_cores(available_cores(), load)


def configure_torch_threads() -> int:
    """Set torch's intra-op thread count by :func:`thread_count`; returns it."""
    import torch

    count = thread_count()
    torch.set_num_threads(count)
    return count
