"""SegAN and hybrid strategies: gradient isolation, clipping, logs, resume, NaN stop, DDP."""
import contextlib
import copy
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest
import torch

from segan_lib import course
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models import UNet
from segan_lib.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint
from segan_lib.train.hybrid import HybridStrategy
from segan_lib.train.segan import SeganStrategy, frozen_view, grad_norm


def _unet(k: int) -> UNet:
    return UNet(3, k, base_channels=4, depth=2)


def _batch(k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 16, 16, generator=g)
    masks = torch.randint(0, max(k, 2), (2, 16, 16), generator=g)
    masks[0, 0, :3] = 255  # a few ignored pixels
    return images, masks


STRATEGIES = {
    "segan": lambda k, **kw: SeganStrategy(
        _unet(k), in_channels=3, num_classes=max(k, 2), critic_base_channels=4, **kw
    ),
    "segan_dice": lambda k, **kw: SeganStrategy(
        _unet(k), in_channels=3, num_classes=max(k, 2), critic_base_channels=4, dice_weight=1.0, pixel_loss="ce", **kw
    ),
    "hybrid_luc": lambda k, **kw: HybridStrategy(
        _unet(k), in_channels=3, num_classes=max(k, 2), disc_base_channels=4, **kw
    ),
    "hybrid_patch_product": lambda k, **kw: HybridStrategy(
        _unet(k), in_channels=3, num_classes=max(k, 2), disc_base_channels=4, discriminator="patchgan",
        disc_depth=2, encoding="product", gan_mode="lsgan", **kw,
    ),
}


def _make(name: str, k: int, **kw):
    torch.manual_seed(0)
    strategy = STRATEGIES[name](k, **kw)
    strategy.configure_optimizers()
    return strategy


def _critic_name(strategy) -> str:
    return "critic" if isinstance(strategy, SeganStrategy) else "discriminator"


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (batch-norm statistics too)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(net: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def _critic_update(strategy, real_in, fake_in):
    step = strategy.critic_step if isinstance(strategy, SeganStrategy) else strategy.discriminator_step
    return step(real_in, fake_in)


def _segmentor_update(strategy, logits, masks, real_in, fake_in):
    if isinstance(strategy, SeganStrategy):
        return strategy.segmentor_step(logits, masks, real_in, fake_in)
    return strategy.segmentor_step(logits, masks, fake_in)


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("k", [1, 4])
def test_segmentor_step_does_not_touch_the_critic(name, k):
    strategy = _make(name, k)
    critic, segmentor = strategy.nets[_critic_name(strategy)], strategy.nets["segmentor"]
    images, masks = _batch(k)
    logits, real_in, fake_in = strategy.forward_pass(images, masks)
    critic_before, seg_before = _snapshot(critic), _snapshot(segmentor)
    _segmentor_update(strategy, logits, masks, real_in, fake_in)
    assert _same(critic, critic_before)
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())  # unfrozen again afterwards
    assert not _same(segmentor, seg_before)


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("k", [1, 4])
def test_critic_step_does_not_touch_the_segmentor(name, k):
    strategy = _make(name, k)
    critic, segmentor = strategy.nets[_critic_name(strategy)], strategy.nets["segmentor"]
    images, masks = _batch(k)
    _, real_in, fake_in = strategy.forward_pass(images, masks)
    critic_before, seg_before = _snapshot(critic), _snapshot(segmentor)
    logs = _critic_update(strategy, real_in, fake_in)
    assert _same(segmentor, seg_before)
    assert all(p.grad is None for p in segmentor.parameters())
    assert not _same(critic, critic_before)
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())


def test_segan_critic_maximises_the_multiscale_l1_and_is_clipped():
    strategy = _make("segan", 4, clip_value=0.02, critic_lr=0.01)
    images, masks = _batch(4)
    _, real_in, fake_in = strategy.forward_pass(images, masks)
    strategy.critic_step(real_in, fake_in)  # the first clip shrinks the batch-norm scales (init 1)
    losses = [strategy.critic_step(real_in, fake_in)["loss_critic"] for _ in range(6)]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))  # -l_mae falls each step
    assert all(p.abs().max() <= 0.02 for p in strategy.nets["critic"].parameters())


def test_spectral_norm_critic_is_not_clipped():
    strategy = _make("segan", 1, spectral_norm=True)
    assert strategy.clip_value is None
    assert any("parametrizations" in n for n, _ in strategy.nets["critic"].named_parameters())


@pytest.mark.parametrize("name", ["segan", "hybrid_luc"])
def test_n_critic_critic_updates_per_segmentor_update(name):
    strategy = _make(name, 4, n_critic=3)
    strategy.train_step(*_batch(4), step=0)
    critic_opt, seg_opt = strategy.optimizers[_critic_name(strategy)], strategy.optimizers["segmentor"]
    first = lambda opt: opt.state[opt.param_groups[0]["params"][0]]["step"]  # noqa: E731
    assert int(first(critic_opt)) == 3 and int(first(seg_opt)) == 1


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_train_step_logs_detached_scalars_and_both_players(name):
    strategy = _make(name, 4)
    logs = strategy.train_step(*_batch(4), step=0)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in logs.values())
    assert all(math.isfinite(v.item()) for v in logs.values())
    critic = _critic_name(strategy)
    assert {"loss", "loss_segmentor", f"loss_{critic}", "grad_norm_segmentor", f"grad_norm_{critic}"} <= set(logs)
    if critic == "discriminator":
        assert {"d_acc_real", "d_acc_fake", "loss_pixel", "loss_adv"} <= set(logs)
        assert 0.0 <= logs["d_acc_real"].item() <= 1.0


def test_bf16_autocast_step_runs_on_cpu():
    for name in ("segan", "hybrid_luc"):
        strategy = _make(name, 4)
        strategy.amp_dtype = torch.bfloat16
        logs = strategy.train_step(*_batch(4), step=0)
        assert all(math.isfinite(v.item()) for v in logs.values())


def test_grad_norm_matches_the_formula():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0, 12.0])
    assert grad_norm([a, b]).item() == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert grad_norm([torch.nn.Parameter(torch.zeros(1))]).item() == 0.0


def test_state_dict_holds_both_networks_and_both_optimisers():
    strategy = _make("hybrid_luc", 4)
    strategy.train_step(*_batch(4), step=0)
    state = copy.deepcopy(strategy.state_dict())
    assert set(state["nets"]) == {"segmentor", "discriminator"} == set(state["optimizers"])
    other = _make("hybrid_luc", 4)
    other.load_state_dict(state)
    for name in ("segmentor", "discriminator"):
        assert _same(other.nets[name], _snapshot(strategy.nets[name]))


def test_wrong_segmentor_width_and_bad_options_are_clear_errors():
    strategy = SeganStrategy(_unet(4), in_channels=3, num_classes=4)
    strategy.nets["segmentor"] = _unet(2)
    with pytest.raises(ValueError, match="segmentor returned 2 channels, the critic was built for 4"):
        strategy.forward_pass(*_batch(4))
    with pytest.raises(ValueError, match="encoding must be one of"):
        HybridStrategy(_unet(4), in_channels=3, num_classes=4, encoding="scaled")
    with pytest.raises(ValueError, match="discriminator must be one of"):
        HybridStrategy(_unet(4), in_channels=3, num_classes=4, discriminator="resnet")
    with pytest.raises(ValueError, match="n_critic must be > 0"):
        SeganStrategy(_unet(4), in_channels=3, num_classes=4, n_critic=0)
    with pytest.raises(ValueError, match="pixel_loss must be one of"):
        SeganStrategy(_unet(4), in_channels=3, num_classes=4, pixel_loss="l2")


# --- on the engine: resume after SIGKILL, NaN stop, two-process DDP -----------------------
TESTS_DIR = str(pathlib.Path(__file__).resolve().parent)


def build_trainer(method: str, checkpoint_dir, *, strategy_class=None, callbacks=(), epochs: int = 2,
                  **options) -> Trainer:
    """A tiny SegAN or hybrid run on SynthShapes: 16 images of 16x16, 4 steps per epoch."""
    course.seed_everything(0)  # the same initial weights in every process
    segmentor = UNet(3, 4, base_channels=4, depth=2, batch_norm=True)
    if method == "segan":
        cls = strategy_class or SeganStrategy
        strategy = cls(segmentor, in_channels=3, num_classes=4, critic_base_channels=4, critic_depth=2,
                       **{"dice_weight": 1.0, **options})
    else:
        cls = strategy_class or HybridStrategy
        strategy = cls(segmentor, in_channels=3, num_classes=4, disc_base_channels=4, disc_depth=2,
                       discriminator="patchgan", encoding="product", **options)
    config = TrainConfig(epochs=epochs, batch_size=4, log_every=1, checkpoint_every=2, progress=False,
                         device="cpu", checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir))
    return Trainer(strategy, SynthShapes(16, size=16, seed=0), num_classes=4, config=config, callbacks=callbacks)


_KILLED_RUN = """
import os, signal, sys, torch
sys.path.insert(0, {tests_dir!r})
torch.set_num_threads(1)
from test_segan_hybrid import build_trainer

def kill_at_step_7(trainer, step, logs):
    if step == 7:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no final checkpoint

build_trainer({method!r}, {checkpoint_dir!r}, callbacks=[kill_at_step_7]).fit()
"""


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _states_equal(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_states_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("method", ["segan", "hybrid"])
def test_resume_after_sigkill_matches_an_unbroken_run(method, tmp_path):
    killed_dir = tmp_path / "killed"
    script = _KILLED_RUN.format(tests_dir=TESTS_DIR, method=method, checkpoint_dir=str(killed_dir))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    payload = load_checkpoint(killed_dir / "last.pt")
    assert payload["step"] == 6  # killed at step 7, before any later checkpoint
    assert set(payload["strategy"]["optimizers"]) == {"segmentor", "critic" if method == "segan" else "discriminator"}
    with _one_thread():
        resumed = build_trainer(method, killed_dir)
        resumed.fit(resume_from=killed_dir / "last.pt")
        unbroken = build_trainer(method, tmp_path / "unbroken")
        unbroken.fit()
    assert resumed.step == unbroken.step == 8
    assert _states_equal(resumed.strategy.state_dict(), unbroken.strategy.state_dict())
    assert resumed.history == unbroken.history


class _PoisonedSegan(SeganStrategy):
    """SegAN whose sixth batch holds NaN images, as a corrupt sample would.

    Without a pixel loss: on CPU the pixel losses' own input checks would raise a
    ValueError on NaN logits first; here the NaN reaches the engine's loss check.
    """

    def train_step(self, images, masks, step):
        if step == 5:
            images = images * float("nan")
        return super().train_step(images, masks, step)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = build_trainer("segan", tmp_path, strategy_class=_PoisonedSegan, dice_weight=0.0)
    with pytest.raises(TrainingDiverged, match=r"is nan at step 5.*last good checkpoint .*last\.pt \(step 4\) is kept"):
        trainer.fit()
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["step"] == 4
    weights = [t for net in payload["strategy"]["nets"].values() for t in net.values() if t.is_floating_point()]
    assert all(bool(torch.isfinite(t).all()) for t in weights)


_DDP_RUN = """
import os, sys, torch
sys.path.insert(0, {tests_dir!r})
torch.set_num_threads(1)
from test_segan_hybrid import build_trainer
from segan_lib.train import distributed

for method in ("segan", "hybrid"):
    trainer = build_trainer(method, None, epochs=1)
    trainer.fit()
    torch.save(trainer.strategy.state_dict(), os.path.join({out!r}, method + "_rank" + os.environ["RANK"] + ".pt"))
distributed.shutdown()
"""


@pytest.mark.slow
def test_two_process_gloo_ddp_runs_and_keeps_the_processes_in_step(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = _DDP_RUN.format(tests_dir=TESTS_DIR, out=str(tmp_path))
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True))
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    for method in ("segan", "hybrid"):
        rank0 = torch.load(tmp_path / f"{method}_rank0.pt", weights_only=True)
        rank1 = torch.load(tmp_path / f"{method}_rank1.pt", weights_only=True)
        # DDP kept both players' weights identical. Batch-norm running statistics are left
        # out: on CPU each process keeps its own shard's (see segan_lib.train.distributed).
        for net in rank0["nets"]:
            weights = [k for k in rank0["nets"][net] if "running_" not in k and "num_batches" not in k]
            assert weights and all(torch.equal(rank0["nets"][net][k], rank1["nets"][net][k]) for k in weights)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit
def test_frozen_view_keeps_a_compiled_wrapper_and_never_calls_through_ddp():
    net = torch.nn.Linear(2, 2)
    assert frozen_view(net) is net
    compiled = torch.compile(net)  # nothing is compiled until the first call
    assert frozen_view(compiled) is compiled
