"""Data-parallel training under ``torchrun``: one process per GPU (or per CPU worker), one model.

``torchrun --nproc-per-node N -m weakseg train ...`` starts N copies of the command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. :func:`training_context` then joins them
into one process group (NCCL on CUDA, gloo on the CPU), and the training loop:

* draws the same global batch on every process (the batch sampler is seeded alike) and
  keeps only this process's contiguous share of it (:meth:`TrainingContext.shard`), so N
  processes together see exactly the batch one process would see with the same
  ``--batch-size``;
* runs the network through :class:`torch.nn.parallel.DistributedDataParallel`, which
  averages the gradients over the processes before every optimiser step, so every copy
  of the model stays identical;
* on CUDA converts BatchNorm to SyncBatchNorm (statistics over the whole global batch);
  on the CPU torch has no SyncBatchNorm, so each process normalises with its share's
  statistics, which is why a CPU run matches a single-process run only within a tolerance;
* writes checkpoints and the model from rank 0 only.

Without ``WORLD_SIZE`` > 1 the context is a single process and changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import distributed as dist

from weakseg.errors import WeakSegInputError


@dataclass
class TrainingContext:
    """Where this process stands in a (possibly single-process) training run.

    Attributes:
        world_size: processes training together (1 without torchrun).
        rank: this process's number, 0 .. world_size - 1; rank 0 writes files and reports progress.
        device: the device this process trains on (``cuda:<LOCAL_RANK>`` under torchrun on CUDA).
    """

    world_size: int
    rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch ``(N, ...)``; the whole batch for one process."""
        if not self.distributed:
            return batch
        share = batch.shape[0] // self.world_size
        return batch[self.rank * share:(self.rank + 1) * share]

    def gather(self, shares: list[torch.Tensor]) -> list[torch.Tensor]:
        """The global batch of each (detached) tensor from every process's share, in rank order."""
        if not self.distributed:
            return shares
        gathered = []
        for share in shares:
            parts = [torch.empty_like(share) for _ in range(self.world_size)]
            dist.all_gather(parts, share.detach().contiguous())
            gathered.append(torch.cat(parts))
        return gathered

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` inside DistributedDataParallel (gradients averaged over processes); itself for one process."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def barrier(self) -> None:
        """Wait until every process arrives here (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (no-op for one process)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def world_size_from_environment() -> int:
    """``WORLD_SIZE`` as torchrun sets it; 1 when not started by torchrun."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(text))
    except ValueError:
        raise WeakSegInputError(f"WORLD_SIZE={text!r}: expected a whole number (set by torchrun)") from None


def training_context(device: torch.device, batch_size: int) -> TrainingContext:
    """Join torchrun's process group when there is one; the single-process context otherwise.

    On CUDA each process takes GPU ``LOCAL_RANK`` and NCCL; on the CPU, gloo.

    Raises:
        WeakSegInputError: a global ``batch_size`` that does not split evenly over the processes
            (checked before joining, so every process refuses alike).
    """
    world_size = world_size_from_environment()
    if batch_size % world_size:
        raise WeakSegInputError(f"--batch-size {batch_size}: does not split evenly over {world_size} processes; "
                                f"use a multiple of {world_size}")
    if world_size == 1:
        return TrainingContext(1, 0, device)
    rank = int(os.environ.get("RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return TrainingContext(world_size, rank, device)


def for_training(module: torch.nn.Module, context: TrainingContext) -> torch.nn.Module:
    """``module`` ready for data-parallel training: SyncBatchNorm on CUDA when distributed, else unchanged."""
    if context.distributed and context.device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def refuse_distributed(method: str) -> None:
    """Refuse to train ``method`` under torchrun (it has no data-parallel loop)."""
    if world_size_from_environment() > 1:
        raise WeakSegInputError(f"method {method} does not train under torchrun (WORLD_SIZE "
                                f"{world_size_from_environment()}); run it as one process, or train cohort, pce or maag")
