"""Validity checks of adversarial runs: discriminator health from the logged history, and the
shortcut probe (hard predictions against soft truth) on every adversarial method."""
from __future__ import annotations

import pytest
import torch

from segan_lib.course import seed_everything
from segan_lib.data.split import split_labelled
from segan_lib.data.synthetic import SynthShapes
from segan_lib.experiments import validity
from segan_lib.models.unet import UNet
from segan_lib.train import build_strategy


def history(acc_real, acc_fake, loss, every=10):
    steps = [every * (i + 1) for i in range(len(loss))]
    return {"step": steps, "d_acc_real": acc_real, "d_acc_fake": acc_fake, "loss_discriminator": loss}


def test_health_counts_overpowered_steps_after_the_warm_up_only():
    # 100 steps, warm-up 10: the first entry (step 10) is not counted. Of the 9 after it, steps
    # 20-50 are overpowered by accuracy (mean 0.975 > 0.95) or by loss (0.01 < 0.05): 4 of 9.
    acc_real = [1.0, 1.0, 1.0, 0.6, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6]
    acc_fake = [1.0, 0.95, 0.95, 0.6, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6]
    loss = [0.001, 0.3, 0.3, 0.01, 0.01, 0.4, 0.4, 0.4, 0.4, 0.4]
    health = validity.discriminator_health(history(acc_real, acc_fake, loss), total_steps=100)
    assert health == {"after_step": 10, "logged_steps": 9, "overpowered_share": pytest.approx(4 / 9), "healthy": True}
    won = validity.discriminator_health(history([1.0] * 10, [1.0] * 10, [0.001] * 10), total_steps=100)
    assert won["overpowered_share"] == 1.0 and won["healthy"] is False


def test_health_is_unknown_for_a_critic_without_accuracy_and_checks_its_arguments():
    health = validity.discriminator_health({"step": [10], "loss_critic": [-0.1]}, total_steps=100)
    assert health["healthy"] is None and health["overpowered_share"] is None
    with pytest.raises(ValueError, match="total_steps"):
        validity.discriminator_health({}, total_steps=0)


def test_probe_maps_are_the_argmax_one_hot_and_the_truth_softened_to_0_9():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]], [[1.0, 1.0]], [[0.0, 0.0]]]])  # (1, 4, 1, 2)
    masks = torch.tensor([[[1, 1]]])
    hard, soft = validity.probe_maps(logits, masks)
    assert hard[0, :, 0, 0].tolist() == [1, 0, 0, 0] and hard[0, :, 0, 1].tolist() == [0, 1, 0, 0]
    assert soft[0, :, 0, 0].tolist() == pytest.approx([0.1 / 3, 0.9, 0.1 / 3, 0.1 / 3])
    binary_hard, binary_soft = validity.probe_maps(torch.tensor([[[[-1.0, 2.0]]]]), torch.tensor([[[0, 1]]]))
    assert binary_hard.flatten().tolist() == [0, 1] and binary_soft.flatten().tolist() == pytest.approx([0.1, 0.9])


def unlabelled_images():
    return split_labelled(SynthShapes(16, size=16, num_classes=3, seed=5), fraction=0.5)[1]


@pytest.mark.parametrize("method", ["hybrid", "segan", "semi"])
def test_every_adversarial_method_is_probed_and_a_critic_less_one_is_not(method):
    seed_everything(0)
    options = {"critic_base_channels": 4, "critic_depth": 1}
    if method == "semi":
        options.update(unlabelled=unlabelled_images(), semi_start_step=0)
    strategy = build_strategy(method, UNet(3, 3, base_channels=4, depth=1), in_channels=3, num_classes=3, **options)
    held_out = SynthShapes(10, size=16, num_classes=3, seed=9)
    record = validity.run_validity(strategy, {"step": []}, 100, held_out)
    probe = record["probe"]
    assert record["discriminator"] == ("critic" if method == "segan" else "discriminator")
    assert probe["images"] == 10 and probe["shortcut"] == (probe["score_hard_predictions"] > probe["score_soft_truth"])
    if method != "segan":  # probabilities of "real"
        assert 0.0 <= probe["score_hard_predictions"] <= 1.0 and 0.0 <= probe["score_soft_truth"] <= 1.0
    self_training = build_strategy("semi", UNet(3, 3, base_channels=4, depth=1), in_channels=3, num_classes=3,
                                   unlabelled=unlabelled_images(),
                                   confidence="softmax", semi_start_step=0)
    assert validity.run_validity(self_training, {}, 100, held_out) is None


def test_a_discriminator_that_scores_softness_is_caught(monkeypatch):
    # A "discriminator" that scores how one-hot a map is (its largest value): hard predictions
    # win however wrong their shapes are, so the run is a shortcut run.
    seed_everything(0)
    strategy = build_strategy("hybrid", UNet(3, 3, base_channels=4, depth=1), in_channels=3, num_classes=3,
                              critic_base_channels=4, critic_depth=1)
    monkeypatch.setattr(validity, "realness", lambda s, images, maps, masks: maps.amax(1).flatten(1).mean(1))
    probe = validity.shortcut_probe(strategy, SynthShapes(8, size=16, num_classes=3, seed=9))
    assert probe["shortcut"] is True and probe["score_hard_predictions"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="held_out"):
        validity.shortcut_probe(strategy, [1, 2, 3])
