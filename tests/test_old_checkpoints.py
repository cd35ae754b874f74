"""A checkpoint written by an earlier segan_lib still evaluates and resumes.

``tests/data/checkpoint_v0_segan.pt`` was written by the code before the training steps were
rewritten method by method (commit 50e3c14): a SegAN run (U-Net ``UNet(3, 4, base_channels=2,
depth=1, batch_norm=True)`` seeded with ``course.seed_everything(0)``, critic base 2 / depth 1,
``dice_weight=1``) on ``SynthShapes(8, size=16, seed=0)``, batch 4, seed 0, stopped after its
first epoch (2 steps), with the meta ``segan train`` writes (its U-Net description then said
``n_classes``, today ``num_classes``: ``load_checkpoint`` renames it).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch

from segan_lib import course
from segan_lib.cli import build_unet, main
from segan_lib.data.synthetic import SynthShapes
from segan_lib.train import TrainConfig, Trainer, load_checkpoint
from segan_lib.train.segan import SeganStrategy

OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint_v0_segan.pt"
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


def test_an_old_checkpoint_loads_with_todays_names_and_resumes_like_an_unbroken_run(tmp_path):
    payload = load_checkpoint(OLD_CHECKPOINT, method="segan")
    assert payload["step"] == 2 and payload["meta"]["model"] == MODEL  # "n_classes" read as "num_classes"
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(OLD_CHECKPOINT, old / "last.pt")
    resumed = trainer(old, epochs=2)
    resumed_history = resumed.fit(resume_from=old / "last.pt")
    unbroken = trainer(tmp_path / "unbroken", epochs=2)
    unbroken_history = unbroken.fit()
    assert resumed.step == unbroken.step == 4
    assert resumed_history.to_dict() == unbroken_history.to_dict()
    for name in ("segmentor", "critic"):
        mine, theirs = resumed.strategy.unwrapped(name).state_dict(), unbroken.strategy.unwrapped(name).state_dict()
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs), name


def test_segan_eval_scores_an_old_checkpoint(capsys):
    assert main(["eval", str(OLD_CHECKPOINT), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "method segan, step 2" in out and "validation mean Dice (foreground)" in out


def test_a_gan_checkpoint_with_the_old_log_names_resumes_under_the_new_ones(tmp_path):
    """GAN runs logged ``loss_d``, ``loss_g``, ``d_real_acc``, ``d_fake_acc`` before; a checkpoint
    whose history holds them is read with today's names, so the resumed history has one column each."""
    from segan_lib.data.toy2d import GaussianMixture2D
    from segan_lib.models import ToyDiscriminator, ToyGenerator
    from segan_lib.train.checkpoint import atomic_save
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
