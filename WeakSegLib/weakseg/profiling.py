"""Seconds and peak memory per stage of a run (``weakseg segment --profile``, ``bench --profile``).

A :class:`StageProfile` records, for every stage entered with ``with profile.stage(name):``,

* the wall-clock seconds;
* the peak resident memory of the whole process (on Linux the high-water mark is reset at the
  start of each stage through ``/proc/self/clear_refs``, so it is that stage's own peak,
  numpy arrays and torch tensors included; elsewhere it is ``resource.getrusage``'s peak of
  the process so far);
* on CUDA, torch's own peak of allocated device memory.

``tracemalloc`` is not used: it sees numpy but not torch's CPU tensors, and it doubled the
training time it was meant to measure. Stages do not nest; a stage entered twice (one per case in a benchmark) adds up its seconds
and keeps the highest peaks. Library code reaches the profile through its
:class:`~weakseg.progress.Progress` (``progress.stage(name)``), which is a no-op without one.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

STAGES = ("reading", "pseudo labels", "region of interest", "training", "inference", "crf", "writing")
"""The stages WeakSeg reports, in the order they run (a method reports those it has)."""

MEMORY_NOTE = ("peak memory: 'process' is the resident-set high-water mark of the stage (Linux: reset per stage "
               "through /proc/self/clear_refs; elsewhere the process peak so far, via getrusage), 'cuda' "
               "torch.cuda.max_memory_allocated")

_MIB = 1024.0 * 1024.0


@dataclass
class StageRecord:
    """One stage's totals: seconds summed over its runs, peaks in MiB (None: not measurable here)."""

    name: str
    seconds: float = 0.0
    runs: int = 0
    process_mib: float | None = None
    cuda_mib: float | None = None


def _highest(current: float | None, new: float | None) -> float | None:
    if new is None:
        return current
    return new if current is None else max(current, new)


def _reset_process_peak() -> bool:
    """Reset the kernel's resident-set high-water mark of this process; False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _process_peak_mib(reset_worked: bool) -> float | None:
    """The process's peak resident memory in MiB (since the last reset when ``reset_worked``)."""
    if reset_worked:
        try:
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MIB if sys.platform == "darwin" else peak / 1024.0


def _cuda_in_use():
    """torch's CUDA module when torch is already imported and CUDA initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class StageProfile:
    """Collects :class:`StageRecord` per stage name, in the order stages first ran."""

    def __init__(self) -> None:
        self.records: dict[str, StageRecord] = {}
        self._active: str | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the block as stage ``name``; a stage entered inside another is counted in the outer one only."""
        if self._active is not None:
            yield
            return
        self._active = name
        cuda = _cuda_in_use()
        if cuda is not None:
            cuda.synchronize()
            cuda.reset_peak_memory_stats()
        reset_worked = _reset_process_peak()
        started = time.perf_counter()
        try:
            yield
        finally:
            cuda = cuda or _cuda_in_use()
            if cuda is not None:
                cuda.synchronize()
            seconds = time.perf_counter() - started
            record = self.records.setdefault(name, StageRecord(name))
            record.seconds += seconds
            record.runs += 1
            record.process_mib = _highest(record.process_mib, _process_peak_mib(reset_worked))
            if cuda is not None:
                record.cuda_mib = _highest(record.cuda_mib, cuda.max_memory_allocated() / _MIB)
            self._active = None

    def seconds(self) -> dict[str, float]:
        """Seconds per stage name."""
        return {name: record.seconds for name, record in self.records.items()}

    def table(self) -> str:
        """A Markdown table: stage, seconds, peak memory (process, CUDA) in MiB, and a total row."""
        def mib(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        lines = ["| stage | seconds | peak process MiB | peak cuda MiB |", "|---|---|---|---|"]
        for record in self.records.values():
            lines.append(f"| {record.name} | {record.seconds:.2f} | {mib(record.process_mib)} | {mib(record.cuda_mib)} |")
        total = sum(record.seconds for record in self.records.values())
        lines.append(f"| total | {total:.2f} | | |")
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        torch = sys.modules.get("torch")
        used = torch.get_num_threads() if torch is not None else "-"
        lines.append(f"torch threads: {used} (OMP_NUM_THREADS={threads}); {MEMORY_NOTE}")
        return "\n".join(lines)
