"""Variant ``paper`` of method maag: the published loss weighting, critic, schedule and checkpoint selection.

Tiny networks on synthetic blob cases (32 px slices), so the file runs in seconds.
"""

from __future__ import annotations

import copy

import pytest
import torch

from synthetic_data import CLASSES, write_case
from weakseg.cases import list_cases
from weakseg.engine import load_checkpoint
from weakseg.errors import WeakSegInputError
from weakseg.losses import dynamically_weighted_loss
from weakseg.methods.adversarial import paper_learning_rate
from weakseg.methods.registry import method_named, training_options
from weakseg.methods.scribble_training import _load_training_data, train_cohort
from weakseg.methods.scribble_unet import load_cohort_model
from weakseg.methods.scribble_validation import scribble_dice
from weakseg.models import SqueezeMultiScaleDiscriminator
from weakseg.progress import SILENT
from weakseg.unpaired_masks import list_mask_files


def test_supervised_loss_is_rescaled_to_the_critic_loss_by_a_ratio_without_gradient():
    supervised = torch.tensor(2.0, requires_grad=True)
    critic = torch.tensor(0.5, requires_grad=True)
    adversarial = torch.tensor(0.3, requires_grad=True)
    total = dynamically_weighted_loss(supervised, critic, adversarial)
    assert total.item() == pytest.approx(0.5 + 0.1 * 0.5 + 0.2 * 0.3)
    total.backward()
    assert supervised.grad.item() == pytest.approx(0.5 / 2.0)  # the ratio only scales the supervised gradient
    assert critic.grad.item() == pytest.approx(0.1)  # no gradient flows through the ratio
    assert adversarial.grad.item() == pytest.approx(0.2)
    doubled = dynamically_weighted_loss(torch.tensor(2.0, requires_grad=True), torch.tensor(1.0),
                                        torch.tensor(0.3))
    assert doubled.item() == pytest.approx(1.0 + 0.1 + 0.06)  # the weight moves with the critic's loss


def pyramid(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(count, 2, 32 // 2**scale, 32 // 2**scale, generator=generator) for scale in range(4)]


def test_critic_input_noise_acts_in_training_only():
    torch.manual_seed(0)
    critic = SqueezeMultiScaleDiscriminator(2, 4, 32, flip_probability=0.0)
    maps = pyramid()
    critic.eval()
    assert torch.equal(critic(maps), critic(maps))
    critic.train()
    assert not torch.allclose(critic(maps), critic(maps))


def test_critic_label_flip_acts_in_training_only_and_passes_the_gradient_unchanged():
    torch.manual_seed(0)
    critic = SqueezeMultiScaleDiscriminator(2, 4, 32, input_noise=0.0, flip_probability=1.0)
    unflipping = copy.deepcopy(critic)
    unflipping.flip_probability = 0.0
    critic.eval(), unflipping.eval()
    assert torch.equal(critic(pyramid()), unflipping(pyramid()))
    critic.train(), unflipping.train()
    gradients = []
    for network in (critic, unflipping):
        maps = [level.requires_grad_() for level in pyramid()]
        scores = network(maps)
        scores.sum().backward()
        gradients.append((scores.detach(), maps[0].grad))
    (flipped, flipped_gradient), (clean, clean_gradient) = gradients
    assert torch.allclose(flipped, -clean)
    assert torch.allclose(flipped_gradient, clean_gradient)


def test_paper_schedule_cycles_between_zero_and_the_base_rate_over_the_run():
    total, per_epoch = 450, 1  # one step per epoch: the published 450 epochs
    rates = [paper_learning_rate(1e-4, step, total, per_epoch) for step in range(total)]
    assert rates[0] == 0.0
    assert rates[20] == pytest.approx(1e-4 / (1 + 1e-4 * 20))
    assert rates[40] == pytest.approx(0.0, abs=1e-12)
    short = [paper_learning_rate(1e-4, step, 45, 1) for step in range(45)]
    assert max(short) == pytest.approx(1e-4, rel=1e-2)  # a short run keeps the cycles' shape


def test_variant_defaults_come_from_the_paper_and_the_default_variant_is_unchanged():
    spec = method_named("maag")
    default, paper = spec.make_settings(), spec.make_settings(variant="paper")
    assert (default.variant, default.learning_rate, default.adversarial_weight) == ("weakseg", 1e-3, 1.0)
    assert (paper.variant, paper.learning_rate, paper.adversarial_weight) == ("paper", 1e-4, 0.2)
    assert spec.make_settings(variant="paper", learning_rate=5e-4).learning_rate == 5e-4
    assert "--variant" not in [item.option for item in method_named("pce").option_fields()]


def test_each_variant_lists_the_option_defaults_it_changes():
    takers = dict(training_options()["--adversarial-weight"])
    assert [item.default for item in takers["maag"]] == [1.0]
    assert [item.default for item in takers["maag --variant paper"]] == [0.2]
    assert "maag --variant paper" not in dict(training_options()["--steps"])  # same default: no entry of its own


@pytest.fixture(scope="module")
def blob_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper")
    for index in range(5):
        write_case(folder, f"case{index:02d}", seed=index)
    return folder


def test_the_model_file_holds_the_best_validation_weights(blob_cases, tmp_path):
    settings = method_named("maag").make_settings(variant="paper", image_size=32, channels=(4, 8, 16), steps=16,
                                                  batch_size=4, validation_fraction=0.34, learning_rate=3e-3, seed=2)
    cases = list_cases(str(blob_cases), "case00,case01,case02")
    train_cohort(cases, tmp_path / "paper.pt", settings, CLASSES.split(","),
                 unpaired_masks=list_mask_files(str(blob_cases), "case03,case04"))
    record = load_checkpoint(tmp_path / "paper.pt")["metadata"]["validation"]
    assert record["cases"] == ["case02"]
    steps = [step for step, _ in record["history"]]
    assert steps and min(steps) >= 8 and steps[-1] == 16  # from the second half of the run to its end
    best_step, best = max(record["history"], key=lambda item: (item[1], -item[0]))
    assert (record["selected_step"], record["dice"]) == (best_step, best)
    model = load_cohort_model(tmp_path / "paper.pt")
    images, labels, *_ = _load_training_data(cases[2:], CLASSES.split(","), 32, SILENT)
    scribbled = (labels != 255).flatten(1).any(dim=1)
    assert scribble_dice(model.network, images[scribbled], labels[scribbled], 3, model.device) == pytest.approx(best)


def test_paper_variant_needs_a_case_to_hold_out(blob_cases, tmp_path):
    settings = method_named("maag").make_settings(variant="paper", image_size=32, channels=(4, 8, 16), steps=2)
    with pytest.raises(WeakSegInputError, match="holds out 1 of the 1 training case"):
        train_cohort(list_cases(str(blob_cases), "case00"), tmp_path / "p.pt", settings, CLASSES.split(","),
                     unpaired_masks=list_mask_files(str(blob_cases), "case03"))
