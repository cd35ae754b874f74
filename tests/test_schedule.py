"""The cosine learning-rate schedule: every method anneals every optimiser the same way.

A supervised baseline and an adversarial arm compared in an experiment must give their
segmentors the same rate at every step, or the comparison measures the schedule as well as the
adversarial term; and a resumed run must follow the schedule of an unbroken one.
"""
from __future__ import annotations

import math

import pytest
import torch

from segan_lib.data import split_labelled
from segan_lib.models import UNet
from segan_lib.train import SupervisedStrategy
from segan_lib.train.schedule import cosine_rate
from segan_lib.train.semi import SemiStrategy

from builders import adversarial_trainer, assert_same_weights, parameters
from test_semi import PairTensors

STEPS = 4  # cosine_steps of every strategy below: the rate halves at step 2 and is 0 from step 4


def test_cosine_rate_follows_the_formula():
    assert [cosine_rate(0.1, t, STEPS) for t in (0, 2, 4, 9)] == pytest.approx([0.1, 0.05, 0.0, 0.0])
    assert cosine_rate(0.1, 1, STEPS) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_rate(0.1, 1000, None) == 0.1


def _strategies(cosine_steps):
    """name -> (strategy, images, masks): hybrid, SegAN, Hung et al.'s semi and self-training,
    segmentor rate 1e-2, critic rate 1e-3."""
    labelled, unlabelled = split_labelled(PairTensors(), count=8, seed=0)
    images, masks = labelled.get_batch(torch.arange(4))
    out = {}
    for method in ("hybrid", "segan"):
        trainer = adversarial_trainer(method, lr=1e-2, critic_lr=1e-3, cosine_steps=cosine_steps)
        batch = next(trainer.batches.epoch(0, 1))
        out[method] = (trainer.strategy, *batch)
    for confidence in ("discriminator", "softmax"):
        strategy = SemiStrategy(UNet(3, 4, base_channels=4, depth=2), in_channels=3, num_classes=4,
                                unlabelled=unlabelled, semi_start_step=1, lr=1e-2, critic_lr=1e-3,
                                critic_base_channels=4, critic_depth=3, confidence=confidence,
                                cosine_steps=cosine_steps)
        out[f"semi-{confidence}"] = (strategy, images, masks)
    return out


@pytest.mark.parametrize("step, factor", [(0, 1.0), (2, 0.5), (4, 0.0)])
def test_every_optimiser_of_every_method_follows_the_cosine(step, factor):
    for name, (strategy, images, masks) in _strategies(STEPS).items():
        strategy.configure_optimizers()
        strategy.train_step(images, masks, step)
        rates = {k: opt.param_groups[0]["lr"] for k, opt in strategy.optimizers.items()}
        expected = {"segmentor": 1e-2 * factor}
        if len(strategy.optimizers) == 2:
            expected[next(k for k in strategy.optimizers if k != "segmentor")] = 1e-3 * factor
        assert rates == pytest.approx(expected), name
    supervised = SupervisedStrategy(UNet(3, 4, base_channels=4, depth=2), "ce", lr=1e-2, cosine_steps=STEPS)
    assert supervised.learning_rate(step) == pytest.approx(1e-2 * factor)  # the baseline's: the same rate


def test_without_cosine_steps_the_rates_stay_and_bad_values_are_refused():
    for name, (strategy, images, masks) in _strategies(None).items():
        strategy.configure_optimizers()
        strategy.train_step(images, masks, 3)
        assert strategy.optimizers["segmentor"].param_groups[0]["lr"] == 1e-2, name
    _, unlabelled = split_labelled(PairTensors(), count=8, seed=0)
    for bad in (0, -3):  # every method checks it, not only the first one built
        for method in ("hybrid", "segan"):
            with pytest.raises(ValueError, match="cosine_steps must be > 0"):
                adversarial_trainer(method, cosine_steps=bad)
        with pytest.raises(ValueError, match="cosine_steps must be > 0"):
            SemiStrategy(UNet(3, 4, base_channels=4, depth=2), in_channels=3, num_classes=4, unlabelled=unlabelled,
                         semi_start_step=1, cosine_steps=bad)
        with pytest.raises(ValueError, match="cosine_steps must be > 0"):
            SupervisedStrategy(UNet(3, 4, base_channels=4, depth=2), "ce", cosine_steps=bad)


def test_a_resumed_annealed_run_matches_an_unbroken_one(tmp_path):
    unbroken = adversarial_trainer("hybrid", epochs=2, cosine_steps=8)
    unbroken.fit()
    first_half = adversarial_trainer("hybrid", tmp_path, epochs=1, cosine_steps=8)
    first_half.fit()
    resumed = adversarial_trainer("hybrid", tmp_path, epochs=2, cosine_steps=8)
    resumed.fit(resume_from=tmp_path / "last.pt")
    assert resumed.step == unbroken.step == 8
    assert_same_weights(parameters(resumed), parameters(unbroken))
    assert resumed.strategy.optimizers["segmentor"].param_groups[0]["lr"] == pytest.approx(
        cosine_rate(1e-3, 7, 8))
