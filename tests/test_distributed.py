"""DistributedDataParallel on CPU with gloo: 2 processes train like 1 process on the same
global batch; ranks stay identical; only rank 0 reports and writes; resume works; the
adversarial methods run wrapped without unused-parameter errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from segan_lib.train import Trainer, distributed

from builders import (
    HANG_GUARD_S, BatchedPairData, PairData, adversarial_trainer, assert_same_weights, free_port, parameters,
    supervised_trainer,
)


# name -> (method, options of builders.adversarial_trainer): every segmentor term of SegAN,
# the hybrid loss with the image-level and with the batch-norm PatchGAN discriminator.
ADVERSARIAL_RUNS = {
    "segan": ("segan", {"pixel_loss": "ce"}),
    "hybrid": ("hybrid", {"discriminator": "luc", "encoding": "basic"}),
    "patchgan": ("hybrid", {"discriminator": "patchgan", "encoding": "product"}),
}


def validated_trainer(data, checkpoint_dir: Path, epochs: int = 2, callbacks=()) -> Trainer:
    """``builders.supervised_trainer`` validated on ``PairData(8, seed=1)``, checkpoints in ``checkpoint_dir``."""
    return supervised_trainer(data, PairData(8, seed=1), epochs=epochs, checkpoint_dir=str(checkpoint_dir),
                              callbacks=callbacks)


# fp32 on every CPU: one and two processes must agree to 1e-5, which bf16 autocast's rounding (the
# default where the CPU computes bf16 natively) would not give
FP32 = "0"


def run_scenarios(out: Path) -> dict:
    """Everything both ranks do; returns what the parent test compares."""
    import segan_lib.train.engine as engine

    saves = []
    original_save = engine.save_checkpoint
    engine.save_checkpoint = lambda path, *a, **k: (saves.append(Path(path).name), original_save(path, *a, **k))[1]
    callbacks = []
    trainer = validated_trainer(PairData(), out / "ddp", callbacks=[lambda t, step, logs: callbacks.append(step)])
    history = trainer.fit()
    results = {"weights": parameters(trainer), "history": history.to_dict(), "callbacks": callbacks, "saves": saves,
               "wrapped": type(trainer.strategy.nets["segmentor"]).__name__}
    validated_trainer(BatchedPairData(), out / "resume", epochs=1).fit()
    resumed = validated_trainer(BatchedPairData(), out / "resume", epochs=2)
    resumed.fit(resume_from=out / "resume" / "last.pt")
    results["resumed"] = parameters(resumed)
    for name, (method, options) in ADVERSARIAL_RUNS.items():
        adversarial = adversarial_trainer(method, epochs=1, **options)
        adversarial.fit()
        results[name] = parameters(adversarial)
    return results


def worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), SEGAN_CPU_BF16=FP32)
    torch.set_num_threads(1)
    try:
        torch.save(run_scenarios(Path(out)), Path(out) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")


def test_ranks_hold_identical_weights(two_ranks):
    rank0, rank1 = two_ranks
    assert rank0["wrapped"] == "DistributedDataParallel"
    for key in ("weights", "resumed", *ADVERSARIAL_RUNS):
        assert_same_weights(rank0[key], rank1[key])


def test_two_processes_match_one_process_on_the_same_global_batch(two_ranks, tmp_path, monkeypatch):
    rank0, _ = two_ranks
    monkeypatch.setenv("SEGAN_CPU_BF16", FP32)
    single = validated_trainer(PairData(), tmp_path)
    history = single.fit()
    for name, value in parameters(single).items():
        assert torch.allclose(rank0["weights"][name], value, atol=1e-5), name
    assert rank0["history"]["step"] == history["step"]
    assert rank0["history"]["loss"] == pytest.approx(history["loss"], rel=1e-5)  # means over both ranks
    assert rank0["history"]["val_mean_dice"] == pytest.approx(history["val_mean_dice"], abs=1e-2)


def test_only_rank_0_reports_and_writes_checkpoints(two_ranks):
    rank0, rank1 = two_ranks
    assert rank0["callbacks"] == [2, 4, 6, 8] and rank1["callbacks"] == []
    assert "last.pt" in rank0["saves"] and rank1["saves"] == []
    assert rank1["history"] == rank0["history"]  # validation results are shared with every rank


def test_resumed_ddp_run_matches_the_unbroken_one(two_ranks):
    rank0, _ = two_ranks
    assert_same_weights(rank0["resumed"], rank0["weights"])


def test_single_process_helpers(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.launched_with_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched_with_torchrun()
    assert distributed.current_context() == distributed.DistContext(0, 1, 0)
    assert distributed.init_from_env("cpu").world_size == 1  # not launched by torchrun
    context = distributed.DistContext(rank=1, world_size=2)
    assert context.enabled and not context.is_main
    assert distributed.broadcast_from_main({"a": 1}) == {"a": 1}
    nets = nn.ModuleDict({"bn": nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), "frozen": nn.Linear(2, 2)})
    nets["frozen"].requires_grad_(False)
    assert distributed.convert_sync_batchnorm(nets, torch.device("cpu")) == []  # SyncBatchNorm is GPU-only
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        assert distributed.wrap_nets(nets, torch.device("cpu")) == ["bn"]
        assert isinstance(nets["bn"], nn.parallel.DistributedDataParallel) and isinstance(nets["frozen"], nn.Linear)
        assert torch.equal(distributed.mean_over_processes(torch.tensor([1.0, 3.0])), torch.tensor([1.0, 3.0]))
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_torchrun_cli_trains_with_two_processes(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "segan_lib.cli", "train", "--samples", "32", "--size", "32", "--base-channels", "4", "--depth", "2",
               "--batch-size", "8", "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation mean Dice (foreground):") == 1  # printed by rank 0 only
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "history.json").is_file()
