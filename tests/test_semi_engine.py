"""Hung et al.'s semi-supervised strategy on the engine: resume after SIGKILL, the split
checked on resume, NaN stop, DDP (each rank its shard of both streams), build_strategy and the CLI.

The tiny data, strategy and trainer are those of ``test_semi.py``."""
import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from segan_lib import cli
from segan_lib.data import split_labelled
from segan_lib.models import UNet
from segan_lib.train import CheckpointError, TrainConfig, Trainer, TrainingDiverged, build_strategy, distributed
from segan_lib.train import load_checkpoint
from segan_lib.train.semi import SemiStrategy

from builders import assert_same_weights, free_port, parameters
from test_semi import PairTensors, _batch, semi_trainer, tiny_semi

TESTS_DIR = str(pathlib.Path(__file__).resolve().parent)


# --- the engine: resume after SIGKILL, split check, NaN stop ---------------------------------------
_KILLED_RUN = """
import os, signal, sys, torch
sys.path.insert(0, {tests_dir!r})
torch.set_num_threads(1)
from test_semi import semi_trainer

def kill_at_step_7(trainer, step, logs):
    if step == 7:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no final checkpoint

semi_trainer({checkpoint_dir!r}, callbacks=[kill_at_step_7]).fit()
"""


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_unbroken_run(tmp_path):
    killed_dir = tmp_path / "killed"
    script = _KILLED_RUN.format(tests_dir=TESTS_DIR, checkpoint_dir=str(killed_dir))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == -signal.SIGKILL, result.stderr
    payload = load_checkpoint(killed_dir / "last.pt", method="semi")
    assert payload["step"] == 6 and set(payload["strategy"]["optimizers"]) == {"segmentor", "discriminator"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = semi_trainer(killed_dir)
        resumed.fit(resume_from=killed_dir / "last.pt")
        unbroken = semi_trainer(tmp_path / "unbroken")
        unbroken.fit()
    finally:
        torch.set_num_threads(threads)
    assert resumed.step == unbroken.step == 8
    assert_same_weights(parameters(resumed), parameters(unbroken))
    assert resumed.history == unbroken.history


def test_resume_with_another_split_is_refused(tmp_path):
    semi_trainer(tmp_path).fit()
    data = PairTensors()
    labelled, unlabelled = split_labelled(data, count=8, seed=1)
    other = Trainer(tiny_semi(unlabelled), labelled, num_classes=4,
                    config=TrainConfig(epochs=5, batch_size=4, progress=False, device="cpu"))
    with pytest.raises(CheckpointError, match=r"last\.pt .*another labelled/unlabelled split"):
        other.fit(resume_from=tmp_path / "last.pt")


class _PoisonedSemi(SemiStrategy):
    """The sixth batch holds NaN images, as a corrupt sample would."""

    def train_step(self, images, masks, step):
        return super().train_step(images * float("nan") if step == 5 else images, masks, step)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = semi_trainer(tmp_path, strategy_class=_PoisonedSemi)
    with pytest.raises(TrainingDiverged, match=r"step 5.*last good checkpoint .*last\.pt \(written after 4 steps\)"):
        trainer.fit()
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["step"] == 4
    weights = [t for net in payload["strategy"]["nets"].values() for t in net.values() if t.is_floating_point()]
    assert all(bool(torch.isfinite(t).all()) for t in weights)


# --- DDP: each rank its shard of both streams ---------------------------------------------------
# Without batch norm, and with every unlabelled pixel passing (t_semi = 0), each loss is a mean over
# as many pixels on each rank, so two processes take the single-process step on the global batches.
DDP_OPTIONS = {"batch_norm": False, "t_semi": 0.0, "semi_start_step": 0}


def ddp_semi_trainer() -> Trainer:
    """``semi_trainer(**DDP_OPTIONS)`` whose discriminator starts out calling everything real (last bias 1).

    At the N(0, 0.02) initialisation its scores are ~0, so the gradient of its last bias,
    ``0.5 (mean sigma(d_real) - 1 + mean sigma(d_fake))``, cancels to the level of float32
    rounding and Adam (which steps by about ``lr * sign(g)``) would turn that rounding into
    differences of a whole step between one and two processes.
    """
    trainer = semi_trainer(**DDP_OPTIONS)
    with torch.no_grad():
        trainer.strategy.unwrapped("discriminator").model[-1].bias.fill_(1.0)
    return trainer


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        trainer = ddp_semi_trainer()
        history = trainer.fit()
        torch.save({"weights": parameters(trainer), "history": history.to_dict()}, pathlib.Path(out) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert_same_weights(rank0["weights"], rank1["weights"])
    single = ddp_semi_trainer()
    history = single.fit()
    for name, value in parameters(single).items():
        assert torch.allclose(rank0["weights"][name], value, atol=1e-5), name
    for key in ("loss_segmentor", "loss_discriminator", "loss_semi", "semi_pass_fraction"):
        assert rank0["history"][key] == pytest.approx(history[key], rel=1e-4), key


# --- build_strategy and the CLI ------------------------------------------------------------------
TINY = ["--dataset", "synth", "--samples", "32", "--size", "32", "--base-channels", "4", "--depth", "2",
        "--batch-size", "4", "--epochs", "1", "--device", "cpu", "--no-progress"]


def test_build_strategy_knows_semi():
    _, _, unlabelled = _batch()
    strategy = build_strategy("semi", UNet(3, 4, base_channels=4, depth=2), in_channels=3, num_classes=4,
                              loss="ce", unlabelled=unlabelled, semi_start_step=0, critic_base_channels=4)
    assert isinstance(strategy, SemiStrategy) and set(strategy.nets) == {"segmentor", "discriminator"}


def test_cli_trains_semi_on_a_labelled_fraction_and_checks_the_split_on_resume(tmp_path, capsys):
    out = tmp_path / "semi"
    assert cli.main(["train", *TINY, "--method", "semi", "--labelled-fraction", "0.25", "--t-semi", "0.3",
                     "--out", str(out)]) == 0
    saved = load_checkpoint(out / "last.pt", method="semi")
    assert saved["step"] == 2  # 8 labelled images, batches of 4
    assert saved["meta"]["loss"] == "ce" and len(saved["meta"]["split"]["labelled_indices"]) == 8
    assert len(saved["strategy"]["split"]["unlabelled_indices"]) == 24
    history = json.loads((out / "history.json").read_text())
    assert {"loss_discriminator", "loss_semi", "semi_pass_fraction", "d_acc_real"} <= set(history)
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--method", "semi", "--labelled", "8", "--seed", "0", "--out", str(out),
                     "--resume"]) == 0  # the same split, asked for by count
    assert cli.main(["train", *TINY, "--method", "semi", "--labelled-fraction", "0.5", "--out", str(out),
                     "--resume"]) == 2
    assert "last.pt" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--method", "semi"], "--method semi needs --labelled-fraction"),
    (["--method", "hybrid", "--lambda-semi", "0.1"], "--lambda-semi is only for --method semi"),
    (["--method", "segan", "--lambda-adv", "0.1"], "--lambda-adv is only for --method hybrid or semi"),
    (["--method", "semi", "--labelled", "32"], "count=32"),
])
def test_cli_refuses_semi_options_that_do_not_fit(args, message, capsys):
    assert cli.main(["train", *TINY, *args]) == 2
    assert message in capsys.readouterr().err
