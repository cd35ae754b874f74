"""DistributedDataParallel on CPU with gloo: 2 processes train like 1 process on the same
global batch; ranks stay identical; only rank 0 reports and writes; resume works; the
adversarial methods run wrapped without unused-parameter errors."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from segan_lib.train import SupervisedStrategy, TrainConfig, Trainer, build_strategy, distributed


class PairData(torch.utils.data.Dataset):
    """``n`` random images ``(3, 8, 8)`` whose mask is ``channel 0 > 0``."""

    def __init__(self, n: int = 32, seed: int = 0) -> None:
        self.images = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        self.masks = (self.images[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.masks[i]


class BatchedPairData(PairData):
    def get_batch(self, indices: torch.Tensor):
        return self.images[indices], self.masks[indices]


def ce(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, masks)


def supervised_trainer(data, checkpoint_dir: Path, epochs: int = 2, callbacks=()) -> Trainer:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    config = TrainConfig(epochs=epochs, batch_size=8, progress=False, log_every=2, checkpoint_dir=str(checkpoint_dir))
    return Trainer(SupervisedStrategy(net, ce, lr=1e-2), data, PairData(8, seed=1), num_classes=2,
                   config=config, callbacks=callbacks)


def adversarial_trainer(method: str) -> Trainer:
    """SegAN, hybrid (Luc discriminator) or hybrid with a batch-norm PatchGAN, on tiny SynthShapes."""
    from segan_lib.data.synthetic import SynthShapes
    from segan_lib.models import UNet
    from segan_lib.train.hybrid import HybridStrategy

    torch.manual_seed(0)
    segmentor = UNet(3, 3, base_channels=4, depth=1)
    if method == "patchgan":
        strategy = HybridStrategy(segmentor, in_channels=3, num_classes=3, discriminator="patchgan", disc_depth=2)
    else:
        strategy = build_strategy(method, segmentor, in_channels=3, num_classes=3, loss="ce")
    return Trainer(strategy, SynthShapes(16, size=16, num_classes=3), num_classes=3,
                   config=TrainConfig(epochs=1, batch_size=8, progress=False, log_every=1))


def parameters(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone() for name in trainer.strategy.nets
            for key, value in trainer.strategy.unwrapped(name).named_parameters()}


def run_scenarios(out: Path) -> dict:
    """Everything both ranks do; returns what the parent test compares."""
    import segan_lib.train.engine as engine

    saves = []
    original_save = engine.save_checkpoint
    engine.save_checkpoint = lambda path, *a, **k: (saves.append(Path(path).name), original_save(path, *a, **k))[1]
    callbacks = []
    trainer = supervised_trainer(PairData(), out / "ddp", callbacks=[lambda t, step, logs: callbacks.append(step)])
    history = trainer.fit()
    results = {"weights": parameters(trainer), "history": history.to_dict(), "callbacks": callbacks, "saves": saves,
               "wrapped": type(trainer.strategy.nets["segmentor"]).__name__}
    supervised_trainer(BatchedPairData(), out / "resume", epochs=1).fit()
    resumed = supervised_trainer(BatchedPairData(), out / "resume", epochs=2)
    resumed.fit(resume_from=out / "resume" / "last.pt")
    results["resumed"] = parameters(resumed)
    for method in ("segan", "hybrid", "patchgan"):
        adversarial = adversarial_trainer(method)
        adversarial.fit()
        results[method] = parameters(adversarial)
    return results


def worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        torch.save(run_scenarios(Path(out)), Path(out) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")


def test_ranks_hold_identical_weights(two_ranks):
    rank0, rank1 = two_ranks
    assert rank0["wrapped"] == "DistributedDataParallel"
    for key in ("weights", "resumed", "segan", "hybrid", "patchgan"):
        assert rank0[key].keys() == rank1[key].keys()
        for name in rank0[key]:
            assert torch.equal(rank0[key][name], rank1[key][name]), (key, name)


def test_two_processes_match_one_process_on_the_same_global_batch(two_ranks, tmp_path):
    rank0, _ = two_ranks
    single = supervised_trainer(PairData(), tmp_path)
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
    for name, value in rank0["weights"].items():
        assert torch.equal(rank0["resumed"][name], value), name


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
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation mean Dice (foreground):") == 1  # printed by rank 0 only
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "history.json").is_file()
