"""Diagnostics of the adversarial game: the gradient ratio against a hand computation, class shares,
and the recorder that logs them during a real run without changing it."""
from __future__ import annotations

import pytest
import torch

from segan_lib.course import seed_everything
from segan_lib.data.synthetic import SynthShapes
from segan_lib.experiments.diagnostics import GameRecorder, class_shares, gradient_ratio, truth_shares
from segan_lib.models.unet import UNet
from segan_lib.train import TrainConfig, Trainer, build_strategy


def hybrid(lambda_adv=0.1):
    seed_everything(0)
    return build_strategy("hybrid", UNet(3, 3, base_channels=4, depth=1), in_channels=3, num_classes=3,
                          lambda_adv=lambda_adv, critic_base_channels=4, critic_depth=1)


def test_gradient_ratio_matches_autograd_by_hand_and_scales_with_lambda():
    images, masks = SynthShapes(4, size=16, num_classes=3).get_batch(torch.arange(4))
    strategy = hybrid(0.1)
    ratio = gradient_ratio(strategy, images, masks)
    # by hand: the same two losses on one set of logits, each differentiated on its own
    logits, _, fake_pairs = strategy.forward_pass(images, masks)
    pixel_grad, = torch.autograd.grad(strategy.pixel_loss(logits, masks), logits, retain_graph=True)
    adv = strategy.gan_loss.generator(strategy.nets["discriminator"](fake_pairs))
    adv_grad, = torch.autograd.grad(adv, logits)
    assert ratio == pytest.approx(0.1 * adv_grad.norm().item() / pixel_grad.norm().item(), rel=1e-4)
    assert gradient_ratio(hybrid(1.0), images, masks) == pytest.approx(10 * ratio, rel=1e-4)
    with pytest.raises(ValueError, match="HybridStrategy"):
        gradient_ratio(build_strategy("supervised", UNet(3, 3, base_channels=4, depth=1), in_channels=3,
                                      num_classes=3), images, masks)


def test_gradient_ratio_leaves_weights_and_batch_norm_statistics_alone():
    images, masks = SynthShapes(4, size=16, num_classes=3).get_batch(torch.arange(4))
    strategy = hybrid()
    before = {k: v.clone() for k, v in strategy.state_dict()["nets"]["segmentor"].items()}
    gradient_ratio(strategy, images, masks)
    after = strategy.state_dict()["nets"]["segmentor"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_class_shares_sum_to_one_and_truth_shares_count_pixels():
    images, masks = SynthShapes(4, size=16, num_classes=3).get_batch(torch.arange(4))
    shares = class_shares(hybrid(), images)
    assert len(shares) == 3 and sum(shares) == pytest.approx(1.0)
    assert truth_shares(torch.tensor([[[0, 1], [1, 2]]]), 3) == [0.25, 0.5, 0.25]
    binary = build_strategy("supervised", UNet(3, 1, base_channels=4, depth=1), in_channels=3, num_classes=2)
    shares = class_shares(binary, images)  # one logit channel: background and foreground shares
    assert len(shares) == 2 and sum(shares) == pytest.approx(1.0)


def test_the_recorder_logs_the_game_and_does_not_change_the_run():
    data = SynthShapes(16, size=16, num_classes=3)
    images, masks = data.get_batch(torch.arange(4))
    config = TrainConfig(epochs=2, batch_size=4, device="cpu", log_every=2, progress=False, amp="off")
    recorder = GameRecorder(images, masks, every=4)
    recorded = Trainer(hybrid(), data, config=config, callbacks=[recorder]).fit()
    plain = Trainer(hybrid(), data, config=config).fit()
    assert recorded.to_dict() == plain.to_dict()  # same machine, same process: bit for bit
    steps, ratios = recorder.series("gradient_ratio")
    assert steps == [4, 8] and all(r > 0 for r in ratios)
    assert all(0.0 <= a <= 1.0 for a in recorder.series("d_accuracy")[1])
    with pytest.raises(ValueError, match="every"):
        GameRecorder(images, masks, every=0)
