"""The CPU fast path: channels_last, and bf16 autocast only where the CPU computes bf16 natively;
``amp="off"`` keeps the plain fp32 NCHW path; the path is recorded; bf16 keeps the accuracy."""
from __future__ import annotations

import pytest
import torch

from segan_lib.course import seed_everything
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models.unet import UNet
from segan_lib.train import TrainConfig, Trainer, build_strategy, hardware
from segan_lib.train.checkpoint import load_checkpoint

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16, whatever this machine has."""
    def set_native(native: bool) -> None:
        monkeypatch.delenv("SEGAN_CPU_BF16", raising=False)
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
            monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
        if native:
            monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    return set_native


def test_auto_takes_bf16_only_on_a_cpu_with_native_bf16(native_bf16):
    native_bf16(True)
    assert hardware.cpu_bf16_support() == "avx512_bf16"
    assert hardware.resolve_amp("auto", CPU) == torch.bfloat16
    native_bf16(False)
    assert hardware.cpu_bf16_support() is None
    assert hardware.resolve_amp("auto", CPU) is None  # emulated bf16 is slower than fp32: stay fp32
    assert hardware.resolve_amp("bf16", CPU) == torch.bfloat16  # forced
    assert hardware.resolve_amp("off", CPU) is None


def test_a_failing_or_missing_private_check_means_no_native_bf16(monkeypatch):
    monkeypatch.delenv("SEGAN_CPU_BF16", raising=False)

    def broken() -> bool:
        raise RuntimeError("cpuinfo unavailable")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert hardware.cpu_bf16_support() is None


def test_the_environment_variable_overrides_the_detection(native_bf16, monkeypatch):
    native_bf16(True)
    monkeypatch.setenv("SEGAN_CPU_BF16", "0")
    assert hardware.resolve_amp("auto", CPU) is None
    native_bf16(False)
    monkeypatch.setenv("SEGAN_CPU_BF16", "1")
    assert hardware.resolve_amp("auto", CPU) == torch.bfloat16


def test_channels_last_is_the_cpu_default_except_on_the_plain_fp32_path():
    assert hardware.use_channels_last(None, CPU, "auto") and hardware.use_channels_last(None, CPU, "bf16")
    assert not hardware.use_channels_last(None, CPU, "off")
    assert hardware.use_channels_last(True, CPU, "off") and not hardware.use_channels_last(False, CPU, "auto")
    assert not hardware.use_channels_last(None, torch.device("mps"), "auto")


def test_the_path_is_described_stored_in_checkpoints_and_printed_once(tmp_path, native_bf16, capsys):
    native_bf16(True)
    hardware._ANNOUNCED.clear()
    seed_everything(0)
    strategy = build_strategy("supervised", UNet(3, 3, base_channels=4, depth=1), in_channels=3, num_classes=3)
    config = TrainConfig(epochs=1, batch_size=4, device="cpu", checkpoint_dir=str(tmp_path), progress=True)
    trainer = Trainer(strategy, SynthShapes(8, size=16, num_classes=3), config=config)
    trainer.fit()
    expected = {"device": "cpu", "amp": "bf16", "channels_last": True, "compiled": False, "cpu_bf16": "avx512_bf16"}
    assert trainer.compute == expected
    assert load_checkpoint(tmp_path / "last.pt")["meta"]["compute"] == expected
    hardware.announce_compute(expected)  # a second trainer of the same path prints nothing more
    printed = capsys.readouterr().err
    assert printed.count("training path cpu: bf16 autocast (avx512_bf16) + channels_last, eager") == 1


def test_amp_off_keeps_the_fp32_nchw_path():
    strategy = build_strategy("supervised", UNet(3, 3, base_channels=4, depth=1), in_channels=3, num_classes=3)
    trainer = Trainer(strategy, SynthShapes(8, size=16, num_classes=3),
                      config=TrainConfig(epochs=1, batch_size=4, device="cpu", amp="off", progress=False))
    assert trainer.compute == {"device": "cpu", "amp": "off", "channels_last": False, "compiled": False,
                               "cpu_bf16": hardware.cpu_bf16_support()}


def held_out_dice(amp: str) -> float:
    """A small real run (the shape of ``segan train --quick``, shorter), scored on held-out images."""
    seed_everything(0)
    strategy = build_strategy("supervised", UNet(3, 4, base_channels=8, depth=2), in_channels=3, num_classes=4,
                              loss="dice_ce", lr=5e-3)
    config = TrainConfig(epochs=4, batch_size=16, device="cpu", amp=amp, progress=False, seed=0)
    trainer = Trainer(strategy, SynthShapes(256, size=32, num_classes=4, seed=0), num_classes=4, config=config)
    trainer.fit()
    return float(trainer.evaluate(SynthShapes(128, size=32, num_classes=4, seed=999))["mean_dice"])


@pytest.mark.slow
def test_bf16_training_keeps_the_held_out_dice_of_fp32():
    # The same seed, batches and initial weights; bf16 rounds activations to 8 bits of mantissa, so
    # the runs drift apart, but what they learn must not: held-out mean Dice within 0.05 (both
    # reached 0.40 on the development machine, 0.002 apart; chance, all background, is 0). bf16 is
    # forced, so the test covers it on CPUs without native bf16 too.
    fp32, bf16 = held_out_dice("off"), held_out_dice("bf16")
    assert fp32 > 0.3
    assert abs(bf16 - fp32) < 0.05, (fp32, bf16)
