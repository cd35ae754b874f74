"""The strategy contract of ``segan_lib.train.strategy`` called directly: ``unwrap`` through
DDP and ``torch.compile`` wrappers, the ``Strategy`` base class (its defaults, autocast,
eval-mode prediction, the first-batch check, checkpoints of bare modules), the engine's
``bare_nets``/``barrier`` around evaluation, and the small functions the two-player steps
share (``set_requires_grad``, ``frozen``, ``judge``, ``logit_channels``, ``like_images``,
``clip_weights_``)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from builders import free_port
from torch import nn

from segan_lib.models import UNet
from segan_lib.train import distributed
from segan_lib.train.adversarial import frozen, judge, like_images, logit_channels, set_requires_grad
from segan_lib.train.segan import clip_weights_
from segan_lib.train.strategy import Strategy, unwrap

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit


@pytest.fixture
def process_group():
    """A one-process gloo group on 127.0.0.1, so DDP wrappers can be built on the CPU."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    distributed.shutdown()


class TwoNets(Strategy):
    """A segmentor ``(B, 2, H, W) -> (B, 3, H, W)`` (1x1 conv) and a critic, each with its own SGD."""

    name = "two-nets"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.nets["segmentor"] = nn.Conv2d(2, 3, 1)
        self.nets["critic"] = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))

    def configure_optimizers(self) -> None:
        self.optimizers = {name: torch.optim.SGD(self.unwrapped(name).parameters(), lr=0.1, momentum=0.9)
                           for name in self.nets}


# ------------------------------------------------------------------------------------ unwrap
def test_unwrap_returns_a_bare_module_itself_and_the_module_inside_a_compiled_wrapper():
    net = nn.Linear(2, 2)
    assert unwrap(net) is net
    assert unwrap(torch.compile(net, backend="eager")) is net  # nothing compiles before the first call


def test_unwrap_sees_through_ddp_and_compile_in_either_order(process_group):
    net = nn.Linear(2, 2)
    wrapped = nn.parallel.DistributedDataParallel(net)
    assert unwrap(wrapped) is net
    assert unwrap(torch.compile(wrapped, backend="eager")) is net  # the engine's order: DDP, then compile
    assert unwrap(nn.parallel.DistributedDataParallel(torch.compile(net, backend="eager"))) is net


def test_state_dict_of_ddp_wrapped_nets_holds_bare_keys(process_group):
    strategy = TwoNets()
    bare_keys = {name: set(net.state_dict()) for name, net in strategy.nets.items()}
    for name in list(strategy.nets):
        strategy.nets[name] = torch.compile(nn.parallel.DistributedDataParallel(strategy.nets[name]), backend="eager")
    assert {name: set(nets) for name, nets in strategy.state_dict()["nets"].items()} == bare_keys


def test_bare_nets_swaps_the_wrappers_out_only_meanwhile_and_only_when_enabled(process_group):
    segmentor, critic = nn.Conv2d(3, 2, 1), nn.Sequential(nn.Conv2d(2, 1, 1), nn.BatchNorm2d(1))
    wrapped = torch.compile(nn.parallel.DistributedDataParallel(segmentor), backend="eager")
    nets = nn.ModuleDict({"segmentor": wrapped, "critic": critic})
    with distributed.bare_nets(nets, enabled=False):
        assert nets["segmentor"] is wrapped  # one process: nothing to avoid
    with pytest.raises(RuntimeError, match="evaluation failed"):
        with distributed.bare_nets(nets, enabled=True):
            assert nets["segmentor"] is segmentor and nets["critic"] is critic
            distributed.barrier()  # one process: returns at once
            raise RuntimeError("evaluation failed")
    assert nets["segmentor"] is wrapped and nets["critic"] is critic  # put back, even after the error
    assert distributed.has_batch_norm(critic) and not distributed.has_batch_norm(segmentor)
    assert distributed.has_batch_norm(nn.Sequential(nn.Sequential(nn.BatchNorm1d(2))))  # nested, any dimension


def test_barrier_without_a_process_group_is_a_no_op():
    if dist.is_initialized():
        pytest.skip("another test left a process group in this process")
    distributed.barrier()


# ------------------------------------------------------------------------------ set_requires_grad
def test_set_requires_grad_freezes_and_unfreezes_every_parameter_of_nested_modules():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.BatchNorm2d(2), nn.Linear(2, 1)))
    set_requires_grad(net, False)
    assert not any(p.requires_grad for p in net.parameters())
    assert net[1][0].running_mean.requires_grad is False  # buffers are never touched
    set_requires_grad(net, True)
    assert all(p.requires_grad for p in net.parameters())
    assert sum(1 for _ in net.parameters()) == 6


def test_a_frozen_critic_passes_gradients_to_its_input_but_gets_none_itself():
    critic = nn.Linear(3, 1)
    fake = torch.randn(4, 3, requires_grad=True)  # stands for the segmentor's output
    set_requires_grad(critic, False)
    critic(fake).sum().backward()
    assert all(p.grad is None for p in critic.parameters())
    assert torch.allclose(fake.grad, critic.weight.detach().expand(4, 3))  # d(sum w.x + b)/dx = w
    set_requires_grad(critic, True)
    critic(fake.detach()).sum().backward()
    assert torch.equal(critic.bias.grad, torch.tensor([4.0]))  # one per sample


def test_frozen_freezes_the_bare_module_inside_the_block_only_even_after_an_error():
    critic = nn.Linear(3, 1)
    wrapped = torch.compile(critic, backend="eager")
    with frozen(wrapped) as to_call:
        assert to_call is wrapped  # no DDP: the compiled wrapper is the one to call
        assert not any(p.requires_grad for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())
    with pytest.raises(RuntimeError, match="inside"):
        with frozen(critic):
            raise RuntimeError("inside")
    assert all(p.requires_grad for p in critic.parameters())


def test_judge_runs_one_batch_of_2b_and_splits_it_back():
    calls = []
    scorer = nn.Conv2d(2, 1, 1)
    scorer.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    real_out, fake_out = judge(scorer, real, fake)
    assert calls == [6]  # one forward pass on both halves
    assert torch.allclose(real_out, scorer(real)) and torch.allclose(fake_out, scorer(fake))

    def features(x):  # a critic that returns a list of feature maps (SegAN's)
        return [x, 2 * x]

    real_f, fake_f = judge(features, real, fake)
    assert [f.shape for f in real_f] == [(3, 2, 4, 4)] * 2 and torch.equal(fake_f[1], 2 * fake)


# ------------------------------------------------------------------------------ Strategy base class
def test_the_base_class_defaults_and_the_methods_a_subclass_must_define():
    strategy = Strategy()
    assert isinstance(strategy.nets, nn.ModuleDict) and len(strategy.nets) == 0
    assert strategy.optimizers == {} and strategy.amp_dtype is None and strategy.device == torch.device("cpu")
    with pytest.raises(NotImplementedError):
        strategy.configure_optimizers()
    with pytest.raises(NotImplementedError):
        strategy.train_step(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), 0)
    with pytest.raises(KeyError, match="segmentor"):
        strategy.segmentor  # noqa: B018  (the property is the thing under test)


def test_segmentor_and_unwrapped():
    strategy = TwoNets()
    segmentor = strategy.nets["segmentor"]
    strategy.nets["segmentor"] = torch.compile(segmentor, backend="eager")
    assert strategy.segmentor is strategy.nets["segmentor"]  # the (wrapped) net to call
    assert strategy.unwrapped("segmentor") is segmentor  # the bare module for anything else


def test_check_batch_runs_the_segmentors_own_input_check():
    strategy = TwoNets()
    strategy.check_batch(torch.zeros(2, 2, 3, 3), None)  # a bare conv has no check_input: the shape only
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        strategy.check_batch(torch.zeros(2, 3, 3), None)
    strategy.nets["segmentor"] = UNet(2, 3, base_channels=2, depth=2)
    strategy.check_batch(torch.zeros(2, 2, 8, 8), None)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth = 4"):
        strategy.check_batch(torch.zeros(2, 2, 6, 8), None)


def test_autocast_is_off_by_default_and_bf16_when_the_engine_sets_it():
    strategy, x = TwoNets(), torch.randn(1, 2, 4, 4)
    with strategy.autocast():
        assert strategy.segmentor(x).dtype == torch.float32
    strategy.amp_dtype = torch.bfloat16
    with strategy.autocast():
        assert strategy.segmentor(x).dtype == torch.bfloat16
    logits = strategy.predict_logits(x)  # under bf16 autocast, handed back as float32
    assert logits.dtype == torch.float32 and logits.shape == (1, 3, 4, 4)


def test_predict_logits_records_no_graph_and_train_switches_every_net():
    strategy, x = TwoNets(), torch.randn(2, 2, 4, 4)
    logits = strategy.predict_logits(x)
    assert not logits.requires_grad and logits.grad_fn is None
    assert torch.equal(logits, strategy.segmentor(x).detach())
    strategy.train(False)
    assert not any(module.training for net in strategy.nets.values() for module in net.modules())
    strategy.train()
    assert all(module.training for net in strategy.nets.values() for module in net.modules())


def sgd_step(strategy: TwoNets) -> None:
    """One SGD step of both nets on ``critic(segmentor(ones (2, 2, 3, 3)))``, so the momentum buffers are non-zero."""
    logits = strategy.segmentor(torch.ones(2, 2, 3, 3))  # (2, 3, 3, 3)
    strategy.nets["critic"](logits).square().mean().backward()
    for opt in strategy.optimizers.values():
        opt.step()


def test_state_dict_round_trip_restores_weights_and_optimiser_states_through_a_compile_wrapper():
    trained = TwoNets(seed=0)
    trained.configure_optimizers()
    sgd_step(trained)
    trained.nets["segmentor"] = torch.compile(trained.nets["segmentor"], backend="eager")
    state = trained.state_dict()
    assert not any("_orig_mod" in key for nets in state["nets"].values() for key in nets)
    fresh = TwoNets(seed=1)
    fresh.configure_optimizers()
    fresh.load_state_dict(state)
    for name in ("segmentor", "critic"):
        for key, value in trained.unwrapped(name).state_dict().items():
            assert torch.equal(fresh.unwrapped(name).state_dict()[key], value), (name, key)
        momentum = [s["momentum_buffer"] for s in fresh.optimizers[name].state_dict()["state"].values()]
        expected = [s["momentum_buffer"] for s in trained.optimizers[name].state_dict()["state"].values()]
        assert len(momentum) == len(expected) > 0 and all(torch.equal(a, b) for a, b in zip(momentum, expected))


def test_load_state_dict_names_the_missing_network_or_optimiser():
    source = TwoNets()
    source.configure_optimizers()
    state = source.state_dict()
    target = TwoNets()
    target.configure_optimizers()
    without_critic = {"nets": {"segmentor": state["nets"]["segmentor"]}, "optimizers": state["optimizers"]}
    with pytest.raises(ValueError, match=r"checkpoint lacks networks \['critic'\] needed by the two-nets method"):
        target.load_state_dict(without_critic)
    without_opt = {"nets": state["nets"], "optimizers": {"segmentor": state["optimizers"]["segmentor"]}}
    with pytest.raises(ValueError, match="lacks the state of optimiser 'critic' of the two-nets method"):
        target.load_state_dict(without_opt)


# ------------------------------------------------------------------------------ adversarial helpers
def test_clip_weights_clamps_every_parameter_in_place_without_autograd():
    net = nn.Linear(4, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[-2.0, -0.005, 0.003, 0.5]]))
        net.bias.fill_(-1.0)
    weight = net.weight
    clip_weights_(net, 0.01)
    assert torch.equal(net.weight.detach(), torch.tensor([[-0.01, -0.005, 0.003, 0.01]]))
    assert torch.equal(net.bias.detach(), torch.tensor([-0.01]))  # biases too
    assert net.weight is weight and weight.requires_grad and weight.grad_fn is None  # same leaf, still trainable


def test_logit_channels_reads_num_classes_through_wrappers(process_group):
    unet = UNet(3, 1, base_channels=4, depth=1)
    assert logit_channels(unet, num_classes=2) == 1  # binary: one sigmoid channel
    assert logit_channels(nn.parallel.DistributedDataParallel(unet), num_classes=2) == 1
    assert logit_channels(nn.Conv2d(3, 5, 1), num_classes=5) == 5  # no attribute: num_classes


def test_like_images_copies_the_channels_last_layout_only():
    images = torch.randn(2, 3, 4, 4)
    x = torch.randn(2, 6, 4, 4)
    assert like_images(x, images) is x
    moved = like_images(x, images.contiguous(memory_format=torch.channels_last))
    assert moved.is_contiguous(memory_format=torch.channels_last) and not moved.is_contiguous()
    assert torch.equal(moved, x)  # same values, other strides
    one_channel = torch.randn(2, 1, 4, 4).contiguous(memory_format=torch.channels_last)  # both layouts at once
    assert like_images(x, one_channel) is x
