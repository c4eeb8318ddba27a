"""An exponential moving average (EMA) of a network's weights during training.

Late in a run the weights of single steps wander (on ACDC the val Dice of a cohort model
moved by about ±0.01 between checkpoints 1000 steps apart); their running average does
not. The average keeps its own copy of the network, updated after every optimiser step:

    average <- rate * average + (1 - rate) * weights,  rate = min(decay, (1 + n) / (10 + n))

where ``n`` counts the updates so far. The second term (the warm-up of TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``) keeps the random initial weights from
lingering in the average of a short run: after ``n`` updates it spans roughly the last
``n / 9`` steps, up to ``1 / (1 - decay)`` steps. Every floating-point tensor of the state
dict is averaged (BatchNorm's running statistics too); integer ones (BatchNorm's batch
counter) are copied.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """The running average of ``network``'s weights (a copy of the network holds it).

    Args:
        network: the network being trained; its current weights start the average.
        decay: the largest weight of the old average in an update, in [0, 1).

    A resumed run restores its average and update count with :meth:`load`.
    """

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay {decay}: expected 0 <= decay < 1")
        self.decay = decay
        self.updates = 0
        self.network = copy.deepcopy(network).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    def rate(self) -> float:
        """The weight of the old average in the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        """Move the average towards ``network``'s current weights (call after each optimiser step)."""
        rate = self.rate()
        current = network.state_dict()
        for name, averaged in self.network.state_dict().items():
            value = current[name].detach()
            if averaged.dtype.is_floating_point:
                averaged.mul_(rate).add_(value.to(averaged.dtype), alpha=1.0 - rate)
            else:
                averaged.copy_(value)
        self.updates += 1

    def load(self, state: dict, updates: int) -> None:
        """Restore an average saved as a state dict after ``updates`` updates (resuming a run)."""
        self.network.load_state_dict(state)
        self.updates = updates


def restored_average(stored: dict | None, network: torch.nn.Module, decay: float) -> WeightAverage:
    """The running average of ``network``'s weights: fresh, or the one a resumed run's file holds.

    A trainer that keeps an average saves it as the file's ``model``, its update count as
    ``metadata["ema"]["updates"]`` and the latest weights beside it (``extra["latest_model"]``).
    """
    average = WeightAverage(network, decay)
    record = ((stored or {}).get("metadata") or {}).get("ema")
    if record is not None:
        average.load(stored["model"], int(record["updates"]))
    return average
