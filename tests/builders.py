"""Tiny datasets, networks and trainers shared by the engine, checkpoint, DDP and
adversarial-strategy tests (``import builders``: pytest puts this folder on ``sys.path``;
subprocess scripts insert it themselves).

Everything is seeded, small and CPU-friendly: 8x8 images for the supervised engine tests,
16x16 SynthShapes for SegAN and the hybrid loss.
"""
from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from segan_lib import course
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models import UNet
from segan_lib.train import SupervisedStrategy, TrainConfig, Trainer
from segan_lib.train.hybrid import HybridStrategy
from segan_lib.train.segan import SeganStrategy

# Seconds a test waits for a subprocess before giving up: only a guard against a hung process,
# never a speed check (the tests assert behaviour; speed is measured by `segan bench`).
HANG_GUARD_S = 900


class PairData(torch.utils.data.Dataset):
    """``n`` random images ``(3, 8, 8)`` (from ``seed``) whose mask ``(8, 8)`` is ``channel 0 > 0`` (2 classes)."""

    def __init__(self, n: int = 32, seed: int = 0) -> None:
        self.images = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        self.masks = (self.images[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i]


class BatchedPairData(PairData):
    """The same data with a vectorised ``get_batch`` (the SynthShapes path, no DataLoader)."""

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[indices], self.masks[indices]


def tiny_net(seed: int = 0, channels: int = 4) -> nn.Sequential:
    """``(B, 3, H, W) -> (B, 2, H, W)`` logits: conv3x3(3 -> channels), ReLU, conv1x1(channels -> 2)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 2, 1))


def ce(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Plain ``F.cross_entropy`` (mean over pixels), a pixel loss given as a callable."""
    return nn.functional.cross_entropy(logits, masks)


def tiny_config(**overrides: object) -> TrainConfig:
    """2 epochs of batches of 8 (4 steps per epoch on 32 samples), logs every 2 steps, no progress bar."""
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "progress": False, "log_every": 2, **overrides})


def supervised_trainer(data: object = None, val: object = None, *, seed: int = 0, callbacks: Sequence = (),
                       **overrides: object) -> Trainer:
    """``tiny_net(seed)`` + ``ce`` at lr 1e-2 on ``data`` (default ``PairData()``), validated on ``val``,
    2 classes, config ``tiny_config(**overrides)``."""
    strategy = SupervisedStrategy(tiny_net(seed), ce, lr=1e-2)
    return Trainer(strategy, PairData() if data is None else data, val, num_classes=2,
                   config=tiny_config(**overrides), callbacks=callbacks)


def parameters(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Copies of every parameter of every net, ``"<net>.<name>"`` -> tensor (bare modules, no buffers)."""
    return {f"{name}.{key}": value.detach().clone() for name in trainer.strategy.nets
            for key, value in trainer.strategy.unwrapped(name).named_parameters()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """The same names and bit-identical tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def adversarial_trainer(method: str, checkpoint_dir: str | Path | None = None, *, strategy_class: type | None = None,
                        callbacks: Sequence = (), epochs: int = 2, **options: object) -> Trainer:
    """A tiny SegAN or hybrid run on SynthShapes: 16 images of 16x16, 4 classes, 4 steps per epoch.

    The segmentor is a batch-norm U-Net (base 4, depth 2), seeded, so every process starts
    from the same weights. ``"segan"``: critic base 4, depth 2, ``dice_weight=1`` unless
    ``options`` say otherwise. ``"hybrid"``: a PatchGAN (base 4, 2 layers) on the "product"
    encoding unless ``options`` say otherwise. Checkpoints every 2 steps into ``checkpoint_dir``.
    """
    course.seed_everything(0)  # the same initial weights in every process
    segmentor = UNet(3, 4, base_channels=4, depth=2, batch_norm=True)
    if method == "segan":
        strategy = (strategy_class or SeganStrategy)(
            segmentor, in_channels=3, num_classes=4,
            **{"critic_base_channels": 4, "critic_depth": 2, "dice_weight": 1.0, **options})
    else:
        strategy = (strategy_class or HybridStrategy)(
            segmentor, in_channels=3, num_classes=4,
            **{"critic_base_channels": 4, "critic_depth": 2, "discriminator": "patchgan", "encoding": "product",
               **options})
    config = TrainConfig(epochs=epochs, batch_size=4, log_every=1, checkpoint_every=2, progress=False,
                         device="cpu", checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir))
    return Trainer(strategy, SynthShapes(16, size=16, seed=0), num_classes=4, config=config, callbacks=callbacks)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a gloo process group)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
