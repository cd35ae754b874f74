"""Checkpoints: plain-data files, atomic writes, clear errors, exact resume (also after SIGKILL)."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from segan_lib import cli
from segan_lib.train import CheckpointError, SupervisedStrategy, Trainer, load_checkpoint, save_checkpoint
from segan_lib.train.checkpoint import (
    atomic_save, capture_rng_state, check_meta_matches, load_strategy_state, restore_rng_state,
)

from builders import HANG_GUARD_S, PairData, ce, tiny_config, tiny_net


def tiny_strategy(channels: int = 4) -> SupervisedStrategy:
    """``tiny_net`` of ``channels`` hidden channels + cross-entropy, optimiser ready."""
    strategy = SupervisedStrategy(tiny_net(channels=channels), ce, lr=1e-2)
    strategy.configure_optimizers()
    return strategy


class DropoutNet(nn.Module):
    """Dropout makes the global RNG part of the result, so a resume must restore it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(4, 2, 1))

    def forward(self, x):
        return self.body(x)


def trainer(tmp_path, epochs: int, **overrides) -> Trainer:
    config = tiny_config(**{"epochs": epochs, "log_every": 3, "checkpoint_dir": str(tmp_path), **overrides})
    return Trainer(SupervisedStrategy(DropoutNet(), ce), PairData(), PairData(8), num_classes=2, config=config)


def test_save_and_load_round_trip_with_weights_only(tmp_path):
    strategy = tiny_strategy()
    path = save_checkpoint(tmp_path / "c.pt", strategy, step=5, epoch=1, history={"loss": [1.0, float("nan")]},
                           meta={"model": {"depth": 2}}, train={"batch_size": 8})
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["step"] == 5 and raw["meta"] == {"method": "supervised", "model": {"depth": 2}}
    loaded = load_checkpoint(path, method="supervised")
    for key, value in strategy.unwrapped("segmentor").state_dict().items():
        assert torch.equal(loaded["strategy"]["nets"]["segmentor"][key], value)
    fresh = tiny_strategy(channels=4)
    load_strategy_state(fresh, loaded, path)
    assert torch.equal(fresh.nets["segmentor"][0].weight, strategy.nets["segmentor"][0].weight)


def test_rng_state_round_trip_restores_every_generator():
    state = capture_rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(2))
    restore_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and np.array_equal(first[2], again[2])


def test_non_plain_data_is_refused_and_the_old_file_survives(tmp_path):
    strategy = tiny_strategy()
    path = save_checkpoint(tmp_path / "c.pt", strategy, step=1, epoch=0)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"checkpoint\['meta'\]\['root'\] is a PosixPath|is a WindowsPath"):
        save_checkpoint(path, strategy, step=2, epoch=0, meta={"root": tmp_path})
    assert path.read_bytes() == before
    with pytest.raises(Exception, match="lambda"):  # pickling fails half-way through the write
        atomic_save({"x": torch.zeros(1000), "f": lambda: 0}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left behind


class SomeOtherProgramsObject:
    """An arbitrary class: unpickling it would run code, so weights-only loading refuses it."""


def _write_not_a_checkpoint(kind: str, path, good) -> None:
    """Write at ``path`` a file that is not a segan checkpoint, of the given ``kind``."""
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(512))
    elif kind == "another program's pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "a pickled class instance":
        path.write_bytes(pickle.dumps(SomeOtherProgramsObject()))
    elif kind == "torch.save of a class instance":
        torch.save({"model": SomeOtherProgramsObject()}, path)
    elif kind == "a truncated checkpoint":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:  # "a torch file without the format tag": loads, but is not ours
        torch.save({"state_dict": {}}, path)


@pytest.mark.parametrize("kind", ["random bytes", "another program's pickle", "a pickled class instance",
                                  "torch.save of a class instance", "a truncated checkpoint",
                                  "a torch file without the format tag"])
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_sentence_naming_it(tmp_path, kind):
    good = save_checkpoint(tmp_path / "good.pt", tiny_strategy(), step=1, epoch=0)
    bad = tmp_path / "bad.pt"
    _write_not_a_checkpoint(kind, bad, good)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(bad)
    message = str(refused.value)
    assert message.startswith(f"{bad} is not a readable segan checkpoint (")
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    assert "weights_only" not in message  # never torch's advice to unpickle arbitrary code


def test_bad_files_give_errors_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    good = save_checkpoint(tmp_path / "good.pt", tiny_strategy(), step=1, epoch=0)
    with pytest.raises(CheckpointError, match="good.pt was written by method 'supervised', not 'segan'"):
        load_checkpoint(good, method="segan")


def test_segan_eval_of_a_bad_file_prints_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "download.pt"
    bad.write_bytes(pickle.dumps({"a": 1}))
    assert cli.main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"segan: error: {bad} is not a readable segan checkpoint (truncated, corrupt, or written by " \
                  "another program)\n"


def test_mismatched_model_or_meta_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", tiny_strategy(channels=4), step=1, epoch=0, meta={"model": {"base": 4}})
    payload = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"c.pt does not fit this supervised model"):
        load_strategy_state(tiny_strategy(channels=6), payload, path)
    with pytest.raises(CheckpointError, match=r"c.pt was written for model=\{'base': 4\}"):
        check_meta_matches(payload, {"model": {"base": 6}}, path)


def test_resume_in_process_matches_an_unbroken_run(tmp_path):
    unbroken = trainer(tmp_path / "a", epochs=3)
    unbroken_history = unbroken.fit()
    first = trainer(tmp_path / "b", epochs=2)
    first.fit()
    resumed = trainer(tmp_path / "b", epochs=3)
    resumed_history = resumed.fit(resume_from=tmp_path / "b" / "last.pt")
    for key, value in unbroken.strategy.state_dict()["nets"]["segmentor"].items():
        assert torch.equal(resumed.strategy.state_dict()["nets"]["segmentor"][key], value)
    assert same_history(resumed_history, unbroken_history)
    assert (tmp_path / "b" / "best.pt").is_file()


def test_resume_refuses_a_different_batch_size_or_method(tmp_path):
    trainer(tmp_path, epochs=1).fit()
    with pytest.raises(ValueError, match="batch_size=8, this run has batch_size=4"):
        trainer(tmp_path, epochs=2, batch_size=4).fit(resume_from=tmp_path / "last.pt")

    class OtherMethod(SupervisedStrategy):
        name = "other"

    other = Trainer(OtherMethod(DropoutNet(), "ce"), PairData(), config=tiny_config())
    with pytest.raises(CheckpointError, match="last.pt was written by method 'supervised', not 'other'"):
        other.fit(resume_from=tmp_path / "last.pt")


TRAIN_ARGS = ["--dataset", "synth", "--samples", "64", "--size", "32", "--base-channels", "8", "--depth", "2",
              "--batch-size", "8", "--epochs", "4", "--device", "cpu", "--no-progress", "--lr", "1e-3"]


def _train(out, *extra, env) -> subprocess.Popen:
    command = [sys.executable, "-m", "segan_lib.cli", "train", *TRAIN_ARGS, "--out", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def test_run_killed_by_sigkill_resumes_to_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: same float sums
    unbroken = _train(tmp_path / "unbroken", env=env)
    killed = _train(tmp_path / "killed", env=env)
    checkpoint = tmp_path / "killed" / "last.pt"
    while not checkpoint.exists() and killed.poll() is None:  # until the first checkpoint (or an early exit)
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, killed.stderr.read()
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert 0 < stopped_at < 4 * 8  # killed mid-run, after at least one checkpoint
    resumed = _train(tmp_path / "killed", "--resume", env=env)
    for process in (unbroken, resumed):
        out, err = process.communicate(timeout=HANG_GUARD_S)
        assert process.returncode == 0, err
        assert "validation mean Dice (foreground):" in out
    final_unbroken = load_checkpoint(tmp_path / "unbroken" / "last.pt")
    final_resumed = load_checkpoint(checkpoint)
    assert final_resumed["step"] == final_unbroken["step"] == 32
    for x, y in zip(_tensors(final_unbroken["strategy"]), _tensors(final_resumed["strategy"]), strict=True):
        assert torch.equal(x, y)  # weights and Adam moments, bit for bit
    assert same_history(final_resumed["history"], final_unbroken["history"])


def same_history(a: dict, b: dict) -> bool:
    """Equal histories, NaN equal to NaN (a class absent from the validation set)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []
