"""The exponential moving average of the weights (``--ema-decay``): the arithmetic, and what a model file holds.

The average is recomputed here from the weights the network had after every step (with
the documented rate ``min(decay, (1 + n) / (10 + n))``) and compared with the one
training saved; resuming an averaged run is covered in ``test_resume.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learning_tasks import TWO_BLOBS, write_two_blob_cohort
from weakseg.cases import list_cases
from weakseg.engine import load_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.methods.scribble_settings import CohortConfig
from weakseg.methods.scribble_training import train_cohort
from weakseg.weight_average import WeightAverage


def _rates(decay: float, count: int) -> list[float]:
    return [min(decay, (1 + n) / (10 + n)) for n in range(count)]


def test_average_of_known_weights_follows_the_formula():
    network = torch.nn.Linear(1, 1)
    with torch.no_grad():
        network.weight.fill_(10.0)
    average = WeightAverage(network, decay=0.5)
    expected = 10.0
    for value, rate in zip([2.0, -4.0, 6.0, 1.0], _rates(0.5, 4)):
        with torch.no_grad():
            network.weight.fill_(value)
        average.update(network)
        expected = rate * expected + (1 - rate) * value
    assert average.updates == 4
    assert average.network.weight.item() == pytest.approx(expected)
    assert not average.network.weight.requires_grad


def test_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="decay 1.0"):
        WeightAverage(torch.nn.Linear(1, 1), 1.0)


def test_saved_cohort_model_is_the_average_of_every_step(tmp_path: Path, monkeypatch):
    folder = write_two_blob_cohort(tmp_path, 2)
    initial, seen = {}, []
    original = WeightAverage.update

    def recording_update(self, network):
        if not initial:
            initial.update({name: value.clone() for name, value in self.network.state_dict().items()})
        seen.append({name: value.detach().clone() for name, value in network.state_dict().items()})
        original(self, network)

    monkeypatch.setattr(WeightAverage, "update", recording_update)
    decay, steps = 0.8, 12
    config = CohortConfig(image_size=32, channels=(4, 8, 16), batch_size=4, steps=steps, checkpoint_every=5,
                          ema_decay=decay, seed=1)
    out = tmp_path / "model.pt"
    train_cohort(list_cases(folder, "1-2"), out, config, TWO_BLOBS)
    payload = load_checkpoint(out)
    assert len(seen) == steps and payload["metadata"]["ema"] == {"decay": decay, "updates": steps}
    for name, latest in payload["extra"]["latest_model"].items():
        assert torch.equal(latest, seen[-1][name]), f"{name}: latest_model is not the last step's weights"
    for name, saved in payload["model"].items():
        if not saved.dtype.is_floating_point:
            assert torch.equal(saved, seen[-1][name]), f"{name}: an integer buffer is copied, not averaged"
            continue
        expected = initial[name].double()
        for weights, rate in zip(seen, _rates(decay, steps)):
            expected = rate * expected + (1 - rate) * weights[name].double()
        assert torch.allclose(saved.double(), expected, atol=1e-5), f"{name}: saved weights are not the average"
    assert not torch.equal(payload["model"]["encoders.0.0.weight"], seen[-1]["encoders.0.0.weight"])


def test_paper_variant_refuses_an_average():
    config = CohortConfig(architecture="attention-unet2d", variant="paper", adversarial_weight=0.2, ema_decay=0.99)
    with pytest.raises(WeakSegInputError, match="--ema-decay"):
        config.check()
