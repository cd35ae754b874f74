"""Input a model cannot take is refused at the boundary with one clear sentence, before PyTorch
fails deep inside a forward pass: a segmentor whose output channels do not fit the critic it is
trained against, images the U-Net cannot halve ``depth`` times (in training and in
evaluation), unlabelled images of another shape than the labelled ones. None of these checks
changes a number (the fingerprints of ``test_method_fingerprints.py`` guard that)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from segan_lib.data import SynthShapes, split_labelled
from segan_lib.models import UNet
from segan_lib.train import TrainConfig, Trainer, build_strategy
from segan_lib.train.adversarial import check_segmentor_channels


class ThreeChannelNet(nn.Module):
    """A segmentor without a ``num_classes`` attribute that gives 3 logit channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def _config() -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=4, progress=False, device="cpu", compile=False)


def _options(method: str) -> dict:
    options = {"critic_base_channels": 4, "critic_depth": 2}
    if method == "semi":
        _, unlabelled = split_labelled(SynthShapes(16, size=16, seed=0), fraction=0.5, seed=0)
        options.update(unlabelled=unlabelled, semi_start_step=0)
    return options


@pytest.mark.parametrize(("method", "critic"), [("segan", "critic"), ("hybrid", "discriminator"),
                                                ("semi", "discriminator")])
def test_a_segmentor_with_other_output_channels_than_the_critic_expects_is_named(method, critic):
    strategy = build_strategy(method, ThreeChannelNet(), in_channels=3, num_classes=4, **_options(method))
    trainer = Trainer(strategy, SynthShapes(8, size=16, seed=0), config=_config())
    before = {k: v.clone() for k, v in strategy.segmentor.state_dict().items()}
    with pytest.raises(ValueError, match=f"the segmentor returned 3 channels, the {critic} was built for 4"):
        trainer.fit()
    assert trainer.step == 0
    assert all(torch.equal(before[k], v) for k, v in strategy.segmentor.state_dict().items())


def test_the_channel_check_leaves_weights_statistics_and_mode_unchanged():
    torch.manual_seed(0)
    net = UNet(3, 4, base_channels=4, depth=2, batch_norm=True)
    images, state = torch.rand(2, 3, 16, 16), {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    check_segmentor_channels(net, images, 4, "critic")
    assert net.training and torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # BN running stats too


@pytest.mark.parametrize("method", ["supervised", "segan", "hybrid", "semi"])
def test_training_on_images_the_unet_cannot_halve_names_the_divisor(method):
    unet = UNet(3, 4, base_channels=4, depth=4)
    options = {} if method == "supervised" else _options(method)
    if method == "semi":  # unlabelled images of the same (bad) size, so the U-Net's check is the one hit
        _, options["unlabelled"] = split_labelled(SynthShapes(16, size=24, seed=0), fraction=0.5, seed=0)
    strategy = build_strategy(method, unet, in_channels=3, num_classes=4, **options)
    trainer = Trainer(strategy, SynthShapes(8, size=24, seed=0), config=_config())
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth = 16, got a tensor of shape \(4, 3, 24, 24\)"):
        trainer.fit()


def test_evaluating_images_the_unet_cannot_halve_names_the_divisor():
    strategy = build_strategy("supervised", UNet(3, 4, base_channels=4, depth=4), in_channels=3, num_classes=4)
    trainer = Trainer(strategy, SynthShapes(8, size=32, seed=0), num_classes=4, config=_config())
    assert 0.0 <= trainer.evaluate(SynthShapes(4, size=32, seed=1))["mean_dice"] <= 1.0
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth = 16, got a tensor of shape \(4, 3, 24, 24\)"):
        trainer.evaluate(SynthShapes(4, size=24, seed=1))
    with pytest.raises(ValueError, match=r"images must have 3 channels"):
        trainer.evaluate([(torch.rand(1, 32, 32), torch.zeros(32, 32, dtype=torch.long))] * 4)


def test_unlabelled_images_of_another_size_are_refused_before_the_first_step():
    _, unlabelled = split_labelled(SynthShapes(16, size=32, seed=0), fraction=0.5, seed=0)
    strategy = build_strategy("semi", UNet(3, 4, base_channels=4, depth=2), in_channels=3, num_classes=4,
                              critic_base_channels=4, critic_depth=2, unlabelled=unlabelled, semi_start_step=0)
    trainer = Trainer(strategy, SynthShapes(8, size=16, seed=0), config=_config())
    with pytest.raises(ValueError, match=r"unlabelled images must have the labelled images' shape \(C, H, W\) = "
                                         r"\(3, 16, 16\), got \(3, 32, 32\)"):
        trainer.fit()
    assert trainer.step == 0
