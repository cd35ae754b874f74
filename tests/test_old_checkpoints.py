"""A checkpoint written by an earlier segan_lib still evaluates and resumes.

``tests/data/checkpoint_v0_segan.pt`` was written by the code before the training steps were
rewritten method by method (commit 50e3c14): a SegAN run (U-Net ``UNet(3, 4, base_channels=2,
depth=1, batch_norm=True)`` seeded with ``course.seed_everything(0)``, critic base 2 / depth 1,
``dice_weight=1``) on ``SynthShapes(8, size=16, seed=0)``, batch 4, seed 0, stopped after its
first epoch (2 steps), with the meta ``segan train`` writes (its U-Net description then said
``n_classes``, today ``num_classes``: ``load_checkpoint`` renames it).

It was written on another machine (an AMD EPYC), so the run resumed from it is compared with an
unbroken run computed here to a tolerance, never bit for bit: float32 kernels round differently
on another CPU (vector width, oneDNN's choice of kernel, thread count), and those last bits are
carried through every step after. Bitwise equality of a resumed and an unbroken run made on one
machine is tested in ``test_checkpoint.py``.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from segan_lib import course
from segan_lib.cli import build_unet, main
from segan_lib.data.synthetic import SynthShapes
from segan_lib.train import TrainConfig, Trainer, load_checkpoint
from segan_lib.train.checkpoint import atomic_save
from segan_lib.train.segan import SeganStrategy

OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint_v0_segan.pt"
# The stored history and weights against those computed here: |a - b| <= atol + rtol |b| per value.
# Measured on this run (2 stored steps + 2 resumed, or 4 unbroken): 1 vs 2 or 4 threads,
# channels_last, PyTorch's own convolution instead of oneDNN's, and the checkpoint with every float
# nudged by one ulp change the history by at most 6.2e-7 relative and the weights by at most 1.2e-7
# (1.5e-6 of a tensor's largest value); resumed on an Intel Xeon, this AMD-written checkpoint differed
# by one ulp (8.8e-8) in loss_critic. A real bug is far larger: a resume that loses Adam's first
# moments moves the history by 5e-4 to 9e-2 relative and the weights by up to 1.5e-3.
HISTORY_RTOL, HISTORY_ATOL = 1e-5, 1e-7
WEIGHTS_RTOL, WEIGHTS_ATOL = 1e-5, 1e-6
MODEL = {"name": "unet", "in_channels": 3, "num_classes": 4, "base_channels": 2, "depth": 1, "batch_norm": True}
DATASET = {"name": "synth", "root": None, "size": 16, "num_classes": None, "binary": False, "n": 8}


def trainer(checkpoint_dir: Path, epochs: int) -> Trainer:
    """The run that wrote the old checkpoint, built by today's code, planned for ``epochs`` epochs."""
    course.seed_everything(0)
    segmentor = build_unet(MODEL)  # as segan train builds it
    strategy = SeganStrategy(segmentor, in_channels=3, num_classes=4, critic_base_channels=2, critic_depth=1,
                             dice_weight=1.0)
    config = TrainConfig(epochs=epochs, batch_size=4, log_every=1, progress=False, device="cpu", seed=0,
                         checkpoint_dir=str(checkpoint_dir), compile=False, amp="off")
    meta = {"model": MODEL, "dataset": DATASET, "in_channels": 3, "loss": "dice_ce"}
    return Trainer(strategy, SynthShapes(8, size=16, seed=0), num_classes=4, config=config, meta=meta)


def assert_history_close(got: dict[str, list], want: dict[str, list]) -> None:
    """Same keys and lengths; every number within :data:`HISTORY_RTOL` / :data:`HISTORY_ATOL` (NaN = NaN)."""
    assert got.keys() == want.keys()
    for key, values in want.items():
        assert len(got[key]) == len(values), key
        for step, (have, expected) in enumerate(zip(got[key], values)):
            assert math.isclose(have, expected, rel_tol=HISTORY_RTOL, abs_tol=HISTORY_ATOL) or (
                math.isnan(have) and math.isnan(expected)), f"{key} at entry {step}: {have!r}, expected {expected!r}"


def assert_weights_close(got: Trainer, want: Trainer) -> None:
    for name in ("segmentor", "critic"):
        mine, theirs = got.strategy.unwrapped(name).state_dict(), want.strategy.unwrapped(name).state_dict()
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], rtol=WEIGHTS_RTOL, atol=WEIGHTS_ATOL,
                                       msg=lambda text, key=key: f"{name} {key}: {text}")


def resume(checkpoint: Path, folder: Path) -> tuple[Trainer, dict]:
    """The run of :func:`trainer` continued from a copy of ``checkpoint`` to its second epoch."""
    folder.mkdir()
    shutil.copy(checkpoint, folder / "last.pt")
    resumed = trainer(folder, epochs=2)
    return resumed, resumed.fit(resume_from=folder / "last.pt").to_dict()


@pytest.fixture(scope="module")
def unbroken() -> tuple[Trainer, dict]:
    """The whole run (two epochs, 4 steps) computed here."""
    with tempfile.TemporaryDirectory() as folder:
        run = trainer(Path(folder), epochs=2)
        return run, run.fit().to_dict()


def test_an_old_checkpoint_loads_with_todays_names_and_resumes_like_an_unbroken_run(tmp_path, unbroken):
    payload = load_checkpoint(OLD_CHECKPOINT, method="segan")
    assert payload["step"] == 2 and payload["meta"]["model"] == MODEL  # "n_classes" read as "num_classes"
    resumed, resumed_history = resume(OLD_CHECKPOINT, tmp_path / "old")
    assert resumed.step == unbroken[0].step == 4
    assert resumed_history["step"] == unbroken[1]["step"] == [1, 2, 3, 4]
    assert_history_close(resumed_history, unbroken[1])  # steps 1-2 stored, 3-4 computed here from its weights
    assert_weights_close(resumed, unbroken[0])


def _rewritten(tmp_path: Path, change) -> Path:
    """A copy of the old checkpoint whose payload ``change`` edited in place."""
    payload = torch.load(OLD_CHECKPOINT, weights_only=True)
    change(payload)
    path = tmp_path / "rewritten.pt"
    atomic_save(payload, path)
    return path


def _one_float32_step_up(payload: dict) -> None:
    """Every float of the stored history and networks one float32 step up (zeros stay zero: no CPU's
    kernels turn an exact 0 into another number), as another CPU's rounding could have left them."""
    def up(value):
        if isinstance(value, dict):
            return {key: up(item) for key, item in value.items()}
        if isinstance(value, list):
            return [up(item) for item in value]
        if isinstance(value, float) or (isinstance(value, torch.Tensor) and value.is_floating_point()):
            tensor = torch.as_tensor(value, dtype=torch.float32)
            stepped = torch.where(tensor == 0, tensor, torch.nextafter(tensor, torch.full_like(tensor, math.inf)))
            return stepped.item() if isinstance(value, float) else stepped.to(value.dtype)
        return value

    payload["history"], payload["strategy"] = up(payload["history"]), up(payload["strategy"])


def test_the_tolerance_absorbs_last_bit_differences_and_still_catches_a_wrong_value(tmp_path, unbroken):
    """A checkpoint as another CPU could have written it resumes within the tolerance; one whose
    stored history holds a value 1% off fails the comparison."""
    nudged, nudged_history = resume(_rewritten(tmp_path, _one_float32_step_up), tmp_path / "nudged")
    assert nudged_history["loss_critic"][:2] != load_checkpoint(OLD_CHECKPOINT)["history"]["loss_critic"]
    assert_history_close(nudged_history, unbroken[1])
    assert_weights_close(nudged, unbroken[0])

    def one_value_wrong(payload: dict) -> None:
        payload["history"]["loss_critic"][1] *= 1 + 1e-2

    _, wrong_history = resume(_rewritten(tmp_path, one_value_wrong), tmp_path / "wrong")
    with pytest.raises(AssertionError, match="loss_critic at entry 1"):
        assert_history_close(wrong_history, unbroken[1])


def test_segan_eval_scores_an_old_checkpoint(capsys):
    assert main(["eval", str(OLD_CHECKPOINT), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "method segan, step 2" in out and "validation mean Dice (foreground)" in out


def test_a_gan_checkpoint_with_the_old_log_names_resumes_under_the_new_ones(tmp_path):
    """GAN runs logged ``loss_d``, ``loss_g``, ``d_real_acc``, ``d_fake_acc`` before; a checkpoint
    whose history holds them is read with today's names, so the resumed history has one column each."""
    from segan_lib.data.toy2d import GaussianMixture2D
    from segan_lib.models import ToyDiscriminator, ToyGenerator
    from segan_lib.train.gan import GANStrategy

    def gan_trainer(epochs: int) -> Trainer:
        torch.manual_seed(0)
        strategy = GANStrategy(ToyGenerator(hidden=4, n_hidden=1), ToyDiscriminator(hidden=4, n_hidden=1))
        config = TrainConfig(epochs=epochs, batch_size=8, log_every=1, progress=False, device="cpu",
                             checkpoint_dir=str(tmp_path))
        return Trainer(strategy, GaussianMixture2D.ring(n=16), config=config)

    gan_trainer(1).fit()
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    old_names = {"loss_discriminator": "loss_d", "loss_generator": "loss_g", "d_acc_real": "d_real_acc",
                 "d_acc_fake": "d_fake_acc"}
    payload["history"] = {old_names.get(key, key): value for key, value in payload["history"].items()}
    atomic_save(payload, tmp_path / "last.pt")
    resumed = gan_trainer(2)
    history = resumed.fit(resume_from=tmp_path / "last.pt")
    assert not set(old_names.values()) & set(history)
    assert len(history["loss_discriminator"]) == len(history["step"]) == 4
    assert all(math.isfinite(value) for value in history["loss_generator"])
