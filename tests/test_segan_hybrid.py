"""SegAN and hybrid strategies: gradient isolation, loss formulas, clipping, logs, resume, NaN stop.

Both run under two-process DDP in ``test_distributed.py``.
"""
import contextlib
import copy
import math
import pathlib
import signal
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from segan_lib.losses import soft_dice_loss
from segan_lib.models import UNet
from segan_lib.train import TrainingDiverged, distributed, load_checkpoint
from segan_lib.train.adversarial import frozen_view, grad_norm
from segan_lib.train.hybrid import HybridStrategy
from segan_lib.train.segan import SeganStrategy

from builders import HANG_GUARD_S, adversarial_trainer, free_port


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
        _unet(k), in_channels=3, num_classes=max(k, 2), critic_base_channels=4, **kw
    ),
    "hybrid_patch_product": lambda k, **kw: HybridStrategy(
        _unet(k), in_channels=3, num_classes=max(k, 2), critic_base_channels=4, discriminator="patchgan",
        critic_depth=2, encoding="product", gan_mode="lsgan", **kw,
    ),
}


def _make(name: str, k: int, **kw):
    torch.manual_seed(0)
    strategy = STRATEGIES[name](k, **kw)
    strategy.configure_optimizers()
    return strategy


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (batch-norm statistics too)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(net: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def _critic_name(strategy) -> str:
    """The key of the second player: "critic" (SegAN) or "discriminator" (hybrid)."""
    return "critic" if isinstance(strategy, SeganStrategy) else "discriminator"


def _segmentor_step(strategy, logits, masks, real_in, fake_in):
    if isinstance(strategy, SeganStrategy):
        return strategy.segmentor_step(logits, masks, real_in, fake_in)
    return strategy.segmentor_step(logits, masks, fake_in)


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("player", ["critic", "segmentor"])
def test_each_update_moves_only_its_own_player(name, k, player):
    strategy = _make(name, k)
    nets = {"critic": strategy.nets[_critic_name(strategy)], "segmentor": strategy.nets["segmentor"]}
    images, masks = _batch(k)
    logits, real_in, fake_in = strategy.forward_pass(images, masks)
    before = {net_name: _snapshot(net) for net_name, net in nets.items()}
    if player == "critic":
        logs = strategy.critic_step(real_in, fake_in)
    else:
        logs = _segmentor_step(strategy, logits, masks, real_in, fake_in)
    other = "segmentor" if player == "critic" else "critic"
    assert not _same(nets[player], before[player])
    assert _same(nets[other], before[other])
    assert all(p.grad is None for p in nets[other].parameters())
    assert all(p.requires_grad for p in nets["critic"].parameters())  # unfrozen again after the segmentor step
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())


def test_segan_logs_follow_the_multiscale_l1_formula():
    """Critic: -l_mae on true and predicted masked images in ONE batch (its batch norm sees both);
    segmentor: l_mae (critic after its update) + Dice + CE, l_mae = (1/L) sum_i mean|f_i(x o y) - f_i(x o S(x))|."""
    strategy = _make("segan_dice", 4)
    images, masks = _batch(4)
    logits, real_in, fake_in = strategy.forward_pass(images, masks)

    def l_mae(critic):
        features = critic(torch.cat([real_in, fake_in]))  # each (2B, C_i, H_i, W_i)
        return sum((f[:2] - f[2:]).abs().mean() for f in features) / len(features)

    expected_critic = -l_mae(copy.deepcopy(strategy.nets["critic"])).detach()
    logs = strategy.critic_step(real_in, fake_in)
    assert torch.allclose(logs["loss_critic"], expected_critic, rtol=1e-5, atol=0)
    expected_l_mae = l_mae(copy.deepcopy(strategy.nets["critic"])).detach()
    dice = soft_dice_loss(logits.detach(), masks)
    cross_entropy = F.cross_entropy(logits.detach(), masks, ignore_index=255)
    logs = strategy.segmentor_step(logits, masks, real_in, fake_in)
    assert torch.allclose(logs["l_mae"], expected_l_mae, rtol=1e-5, atol=0)
    assert torch.allclose(logs["loss_dice"], dice) and torch.allclose(logs["loss_pixel"], cross_entropy)
    assert torch.allclose(logs["loss_segmentor"], expected_l_mae + dice + cross_entropy, rtol=1e-5, atol=0)


def test_hybrid_logs_follow_the_formulas_of_luc_et_al():
    """Discriminator: -log sigma(a(x, y)) - log(1 - sigma(a(x, s(x)))), accuracies at score 0;
    segmentor: CE + lambda_adv * -log sigma(a(x, s(x))) with the updated discriminator."""
    strategy = _make("hybrid_luc", 4, lambda_adv=0.5)
    images, masks = _batch(4)
    logits, real_in, fake_in = strategy.forward_pass(images, masks)
    with torch.no_grad():
        real, fake = strategy.nets["discriminator"](real_in), strategy.nets["discriminator"](fake_in)
    logs = strategy.critic_step(real_in, fake_in)
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(logs["loss_discriminator"], expected, rtol=1e-5, atol=0)
    assert logs["d_acc_real"] == (real > 0).float().mean() and logs["d_acc_fake"] == (fake <= 0).float().mean()
    with torch.no_grad():
        adv = -torch.log(torch.sigmoid(strategy.nets["discriminator"](fake_in))).mean()
    cross_entropy = F.cross_entropy(logits.detach(), masks, ignore_index=255)
    logs = strategy.segmentor_step(logits, masks, fake_in)
    assert torch.allclose(logs["loss_adv"], adv, rtol=1e-5, atol=0)
    assert torch.allclose(logs["loss_pixel"], cross_entropy)
    assert torch.allclose(logs["loss_segmentor"], cross_entropy + 0.5 * adv, rtol=1e-5, atol=0)


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


@pytest.mark.parametrize("name, critic", [("segan", "critic"), ("hybrid_luc", "discriminator")])
def test_state_dict_holds_both_networks_and_both_optimisers(name, critic):
    strategy = _make(name, 4)
    strategy.train_step(*_batch(4), step=0)
    state = copy.deepcopy(strategy.state_dict())
    assert set(state["nets"]) == {"segmentor", critic} == set(state["optimizers"])  # what checkpoints hold
    other = _make(name, 4)
    other.load_state_dict(state)
    for net in ("segmentor", critic):
        assert _same(other.nets[net], _snapshot(strategy.nets[net]))
    assert other.optimizers[critic].state_dict()["state"][0]["step"] == 1


def test_learning_rates_default_to_lr_and_reach_the_optimisers():
    def rates(strategy):
        strategy.configure_optimizers()
        return {name: opt.param_groups[0]["lr"] for name, opt in strategy.optimizers.items()}

    assert rates(SeganStrategy(_unet(4), in_channels=3, num_classes=4)) == {"segmentor": 1e-3, "critic": 1e-3}
    assert rates(SeganStrategy(_unet(4), in_channels=3, num_classes=4, lr=0.01, critic_lr=0.002)) == {
        "segmentor": 0.01, "critic": 0.002}
    hybrid = HybridStrategy(_unet(4), in_channels=3, num_classes=4, lr=0.01)
    assert hybrid.critic_lr == 0.01 and rates(hybrid) == {"segmentor": 0.01, "discriminator": 0.01}
    hybrid = HybridStrategy(_unet(4), in_channels=3, num_classes=4, critic_lr=0.002)
    assert hybrid.critic_lr == 0.002 and rates(hybrid) == {"segmentor": 1e-3, "discriminator": 0.002}
    assert all(opt.param_groups[0]["betas"] == (0.5, 0.999) for opt in hybrid.optimizers.values())


def test_the_first_batch_is_checked_against_the_critic_once_before_training():
    images, masks = _batch(4)  # 16x16
    segan = SeganStrategy(torch.nn.Conv2d(3, 4, 1), in_channels=3, num_classes=4, critic_depth=3)
    segan.check_batch(images, masks)  # 16 is divisible by 2**3
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth = 8, got spatial size \(12, 12\)"):
        segan.check_batch(images[:, :, :12, :12], masks[:, :12, :12])
    hybrid = HybridStrategy(_unet(4), in_channels=3, num_classes=4, discriminator="patchgan")
    with pytest.raises(ValueError, match="at least 24x24 for a PatchGAN with n_layers=3"):
        hybrid.check_batch(images, masks)
    hybrid.nets["segmentor"] = UNet(3, 4, base_channels=4, depth=3)
    with pytest.raises(ValueError, match=r"images height and width must be divisible by 2\*\*depth = 8"):
        hybrid.check_batch(images[:, :, :12, :12], masks[:, :12, :12])  # the segmentor's own check first
    trainer = adversarial_trainer("hybrid", critic_depth=3)  # PatchGAN n_layers=3 on 16x16 SynthShapes
    with pytest.raises(ValueError, match="at least 24x24"):
        trainer.fit()
    assert trainer.step == 0


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="segmentor must be an nn.Module, got str"):
        SeganStrategy("unet", in_channels=3, num_classes=4)
    with pytest.raises(ValueError, match="encoding must be one of"):
        HybridStrategy(_unet(4), in_channels=3, num_classes=4, encoding="scaled")
    with pytest.raises(ValueError, match="discriminator must be one of"):
        HybridStrategy(_unet(4), in_channels=3, num_classes=4, discriminator="resnet")
    with pytest.raises(ValueError, match="critic_lr must be > 0"):
        HybridStrategy(_unet(4), in_channels=3, num_classes=4, critic_lr=0.0)
    with pytest.raises(ValueError, match="critic_lr must be > 0"):
        SeganStrategy(_unet(4), in_channels=3, num_classes=4, critic_lr=-1.0)
    with pytest.raises(ValueError, match="n_critic must be > 0"):
        SeganStrategy(_unet(4), in_channels=3, num_classes=4, n_critic=0)
    with pytest.raises(ValueError, match="pixel_loss must be one of"):
        SeganStrategy(_unet(4), in_channels=3, num_classes=4, pixel_loss="l2")


# --- on the engine: resume after SIGKILL, NaN stop ------------------------------------------
TESTS_DIR = str(pathlib.Path(__file__).resolve().parent)


_KILLED_RUN = """
import os, signal, sys, torch
sys.path.insert(0, {tests_dir!r})
torch.set_num_threads(1)
from builders import adversarial_trainer

def kill_at_step_7(trainer, step, logs):
    if step == 7:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no final checkpoint

adversarial_trainer({method!r}, {checkpoint_dir!r}, callbacks=[kill_at_step_7]).fit()
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
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == -signal.SIGKILL, result.stderr
    payload = load_checkpoint(killed_dir / "last.pt")
    assert payload["step"] == 6  # killed at step 7, before any later checkpoint
    assert set(payload["strategy"]["optimizers"]) == {"segmentor", "critic" if method == "segan" else "discriminator"}
    with _one_thread():
        resumed = adversarial_trainer(method, killed_dir)
        resumed.fit(resume_from=killed_dir / "last.pt")
        unbroken = adversarial_trainer(method, tmp_path / "unbroken")
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
    trainer = adversarial_trainer("segan", tmp_path, strategy_class=_PoisonedSegan, dice_weight=0.0)
    with pytest.raises(TrainingDiverged, match=r"is nan at step 5.*last good checkpoint .*last\.pt \(written after 4 steps\) is kept"):
        trainer.fit()
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["step"] == 4
    weights = [t for net in payload["strategy"]["nets"].values() for t in net.values() if t.is_floating_point()]
    assert all(bool(torch.isfinite(t).all()) for t in weights)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit
def test_frozen_view_keeps_a_compiled_wrapper_and_never_calls_through_ddp():
    net = torch.nn.Linear(2, 2)
    assert frozen_view(net) is net
    compiled = torch.compile(net)  # nothing is compiled until the first call
    assert frozen_view(compiled) is compiled
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(net)
        assert frozen_view(wrapped) is net
        assert frozen_view(torch.compile(wrapped)) is net  # the engine compiles after wrapping
    finally:
        distributed.shutdown()
