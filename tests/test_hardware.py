"""``segan_lib.train.hardware`` called directly, beyond ``test_engine.py`` and ``test_fast_path.py``:
the device rules with CUDA faked present or absent, ``to_device`` on mixed batches, and the
compile helpers (``compile_nets``, ``decompile_nets``, ``with_eager_fallback`` with ``undo_step``)
without a real compiler: the first step's failure is raised by hand and must leave no trace."""
from __future__ import annotations

import warnings

import pytest
import torch
from builders import ce, tiny_net
from torch import nn
from torch._dynamo.exc import Unsupported

from segan_lib.train import SupervisedStrategy, hardware

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """CUDA reported available with 2 devices (nothing is ever allocated on them here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_auto_is_cuda_of_the_local_rank_when_available(two_fake_gpus):
    assert hardware.resolve_device("auto") == torch.device("cuda", 0)
    assert hardware.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # one GPU per torchrun process
    assert hardware.resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert hardware.resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)  # an explicit index wins
    assert hardware.resolve_device("cpu") == CPU


def test_a_cuda_index_beyond_the_devices_is_a_clear_error(two_fake_gpus):
    with pytest.raises(ValueError, match=r"^device='cuda:2' but only 2 CUDA device\(s\) exist$"):
        hardware.resolve_device("cuda:2")
    with pytest.raises(ValueError, match=r"^device='cuda' but only 2 CUDA device\(s\) exist$"):
        hardware.resolve_device("cuda", local_rank=2)


def test_auto_is_the_cpu_and_cuda_is_a_clear_error_without_a_gpu(no_gpu):
    assert hardware.resolve_device("auto") == CPU
    assert hardware.resolve_device("auto", local_rank=3) == CPU
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=f"device='{name}' but CUDA is not available on this machine; use "
                                             "device='cpu' or 'auto'"):
            hardware.resolve_device(name)


def test_mps_is_a_clear_error_where_it_is_missing(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='mps' but MPS is not available"):
        hardware.resolve_device("mps")


def test_an_explicit_channels_last_setting_wins_over_the_device_default():
    assert hardware.use_channels_last(False, CUDA) is False
    assert hardware.use_channels_last(None, CUDA) is True and hardware.use_channels_last(None, CPU, "off") is False


def test_to_device_moves_tensors_keeps_other_items_and_converts_only_4d_tensors():
    images, masks, points, name = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4).long(), torch.randn(5, 2), "sample"
    volume = torch.randn(1, 2, 3, 4, 4)  # 5-D: left as it is
    moved = hardware.to_device((images, masks, points, name, volume), CPU, channels_last=True)
    assert isinstance(moved, tuple) and len(moved) == 5 and moved[3] is name
    assert moved[0].is_contiguous(memory_format=torch.channels_last) and torch.equal(moved[0], images)
    assert all(t.is_contiguous() for t in (moved[1], moved[2], moved[4]))
    plain = hardware.to_device([images, masks], CPU, channels_last=False)  # a list batch comes back as a tuple
    assert isinstance(plain, tuple) and plain[0].is_contiguous() and plain[0] is images  # nothing to copy


# ------------------------------------------------------------------------------- compile helpers
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit
def test_compile_nets_wraps_each_net_and_decompile_nets_gives_the_same_modules_back(monkeypatch):
    monkeypatch.setattr(hardware, "compile_module", lambda m: torch.compile(m, backend="eager"))
    segmentor, critic = nn.Conv2d(3, 2, 1), nn.Conv2d(2, 1, 1)
    nets = nn.ModuleDict({"segmentor": segmentor, "critic": critic})
    hardware.compile_nets(nets)
    assert list(nets) == ["segmentor", "critic"]
    assert nets["segmentor"]._orig_mod is segmentor and nets["critic"]._orig_mod is critic
    error = Unsupported("graph break in forward\nfull stack follows\n...")
    with pytest.warns(RuntimeWarning, match=r"^torch.compile failed \(Unsupported: graph break in forward\); "
                                            r"training continues in eager mode$"):
        hardware.decompile_nets(nets, error)
    assert nets["segmentor"] is segmentor and nets["critic"] is critic


def test_decompile_nets_leaves_bare_nets_alone_and_warns_on_an_empty_message():
    net = nn.Linear(2, 2)
    nets = nn.ModuleDict({"segmentor": net})
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: \)"):
        hardware.decompile_nets(nets, RuntimeError())
    assert nets["segmentor"] is net


def ready_strategy() -> SupervisedStrategy:
    strategy = SupervisedStrategy(tiny_net(0), ce, lr=0.1)
    strategy.configure_optimizers()
    return strategy


def adam_step(strategy: SupervisedStrategy) -> torch.Tensor:
    """One real update (weights, Adam moments and gradients all change); returns the loss."""
    images = torch.randn(2, 3, 4, 4)  # drawn from the global RNG
    loss = ce(strategy.segmentor(images), torch.zeros(2, 4, 4).long())
    loss.backward()
    strategy.optimizers["segmentor"].step()
    return loss.detach()


def test_a_failed_first_compiled_step_is_undone_and_run_again_in_eager_mode():
    strategy = ready_strategy()
    start = {k: v.clone() for k, v in strategy.unwrapped("segmentor").state_dict().items()}
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    calls = []

    def run_step() -> dict:
        calls.append({"weights": {k: v.clone() for k, v in strategy.segmentor.state_dict().items()},
                      "adam": dict(strategy.optimizers["segmentor"].state),
                      "grads": [p.grad for p in strategy.segmentor.parameters()],
                      "draw": torch.rand(3)})
        loss = adam_step(strategy)
        if len(calls) == 1:  # compilation fails after a partial update
            raise Unsupported("graph break")
        return {"loss": loss}

    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        logs, compiled = hardware.with_eager_fallback(strategy.nets, run_step, undo=hardware.undo_step(strategy))
    assert compiled is False and len(calls) == 2 and set(logs) == {"loss"}
    retry = calls[1]
    assert all(torch.equal(retry["weights"][k], start[k]) for k in start)  # weights restored
    assert retry["adam"] == {}  # optimiser state restored (no moments before the first step)
    assert all(grad is None for grad in retry["grads"])  # gradients cleared
    assert torch.equal(retry["draw"], expected_draw)  # the RNG replays the same draws


def test_a_successful_first_step_runs_once_and_other_errors_propagate():
    strategy = ready_strategy()
    calls = []

    def run_step() -> dict:
        calls.append(1)
        return {"loss": adam_step(strategy)}

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        logs, compiled = hardware.with_eager_fallback(strategy.nets, run_step, undo=hardware.undo_step(strategy))
    assert compiled is True and len(calls) == 1 and set(logs) == {"loss"}

    def user_error() -> dict:
        calls.append(1)
        raise ValueError("logits must have shape (B, K, H, W)")

    with pytest.raises(ValueError, match="logits must have shape"):
        hardware.with_eager_fallback(strategy.nets, user_error, undo=hardware.undo_step(strategy))
    assert len(calls) == 2  # not retried: the user's error is not a compile failure
