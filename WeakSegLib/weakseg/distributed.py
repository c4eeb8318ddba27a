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
* normalises with the statistics of the whole global batch: SyncBatchNorm on CUDA, and on
  the CPU (where torch has no SyncBatchNorm) :class:`GlobalBatchNorm2d`;
* normalises each loss term over the global batch (each process's share of the sum, times
  the number of processes, over the global batch's count: DDP's average is then the global loss) and
  drops the channels one process would drop (:class:`GlobalDropout2d`), so on the CPU N
  processes train the weights one process trains with the same ``--batch-size`` (to float
  rounding); on CUDA, where kernels are not deterministic, to within rounding too;
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

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over the processes of a (detached) value; the value itself for one process."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

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


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm over the global batch of all processes, for the CPU, where torch has no SyncBatchNorm.

    The per-channel sums, sums of squares and counts of every process's share are added
    with a differentiable all-reduce, so the forward pass normalises with the statistics one
    process would compute on the whole global batch, and the backward pass carries the
    gradient through them exactly. Running statistics are updated as BatchNorm2d would.
    """

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(batch)
        from torch.distributed.nn.functional import all_reduce

        count = torch.tensor([batch.numel() / batch.shape[1]], dtype=batch.dtype, device=batch.device)
        totals = all_reduce(torch.cat([batch.sum(dim=(0, 2, 3)), batch.pow(2).sum(dim=(0, 2, 3)), count]))
        channels = batch.shape[1]
        number = totals[-1]
        mean = totals[:channels] / number
        variance = totals[channels:2 * channels] / number - mean.pow(2)
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = variance.detach() * number / (number - 1)
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        normalised = (batch - mean[None, :, None, None]) / torch.sqrt(variance[None, :, None, None] + self.eps)
        return normalised * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class GlobalDropout2d(torch.nn.Dropout2d):
    """Channel dropout that draws the masks of the whole global batch and keeps this process's rows.

    Every process holds the same random state, so each draws the masks one process would draw
    for the global batch, in the same order, and all processes together drop exactly what one
    process would (the same draw as :func:`torch.nn.functional.dropout2d`'s).
    """

    def __init__(self, p: float, world_size: int, rank: int) -> None:
        super().__init__(p)
        self.world_size = world_size
        self.rank = rank

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return batch
        share = batch.shape[0]
        noise = batch.new_empty((share * self.world_size, batch.shape[1], 1, 1)).bernoulli_(1 - self.p)
        noise.div_(1 - self.p)
        return batch * noise[self.rank * share:(self.rank + 1) * share]


def _global_layers(module: torch.nn.Module, context: TrainingContext) -> torch.nn.Module:
    """``module`` with every BatchNorm2d and Dropout2d replaced by their global-batch versions (same parameters)."""
    for name, child in module.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        elif type(child) is torch.nn.Dropout2d:
            setattr(module, name, GlobalDropout2d(child.p, context.world_size, context.rank))
        else:
            _global_layers(child, context)
    return module


def for_training(module: torch.nn.Module, context: TrainingContext) -> torch.nn.Module:
    """``module`` ready for data-parallel training; unchanged for one process.

    BatchNorm normalises over the global batch (SyncBatchNorm on CUDA, :class:`GlobalBatchNorm2d`
    on the CPU) and channel dropout draws the global batch's masks (:class:`GlobalDropout2d`).
    """
    if not context.distributed:
        return module
    if context.device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _global_layers(module, context)


def refuse_distributed(method: str) -> None:
    """Refuse to train ``method`` under torchrun (it has no data-parallel loop)."""
    if world_size_from_environment() > 1:
        raise WeakSegInputError(f"method {method} does not train under torchrun (WORLD_SIZE "
                                f"{world_size_from_environment()}); run it as one process, or train cohort, pce or maag")
