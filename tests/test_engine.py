"""The training engine: config checks, batching, logging, NaN stops, compile fallback,
evaluation and determinism, on the tiny conv net and 8x8 datasets of ``builders``."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from segan_lib.metrics import SegmentationMetrics
from segan_lib.train import (
    METHODS, History, Strategy, SupervisedStrategy, TrainConfig, Trainer, TrainingDiverged, build_strategy,
    load_checkpoint,
)
from segan_lib.train import hardware
from segan_lib.train.batches import TrainBatches, epoch_permutation, eval_batches, steps_in_epoch
from segan_lib.train.history import LogAccumulator

from builders import (
    BatchedPairData, PairData, assert_same_weights, ce, parameters, supervised_trainer, tiny_config, tiny_net,
)


def train(data=None, val=None, seed: int = 0, **overrides) -> tuple[Trainer, History]:
    """A fitted ``supervised_trainer`` (arguments as there) and its history."""
    trainer = supervised_trainer(data, val, seed=seed, **overrides)
    return trainer, trainer.fit()


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("epochs", 0), ("device", "gpu"), ("amp", "fp16"), ("log_every", 0),
    ("steps_per_epoch", 0), ("checkpoint_every", -1), ("num_workers", -1), ("channels_last", "yes"),
    ("eval_every", -1), ("seed", -1), ("compile", "yes"),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_trainer_rejects_bad_setups():
    strategy = SupervisedStrategy(tiny_net(), ce)
    with pytest.raises(ValueError, match="num_classes"):
        Trainer(strategy, PairData(), PairData(), config=tiny_config())
    with pytest.raises(ValueError, match="strategy"):
        Trainer(tiny_net(), PairData(), config=tiny_config())
    with pytest.raises(ValueError, match="batch_size=64"):
        Trainer(strategy, PairData(32), config=tiny_config(batch_size=64))
    with pytest.raises(ValueError, match="steps_per_epoch=5"):
        Trainer(strategy, PairData(32), config=tiny_config(steps_per_epoch=5))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Trainer(strategy, PairData(), config=tiny_config(device="cuda"))


def test_epoch_permutation_is_a_seeded_permutation_per_epoch():
    order = epoch_permutation(50, seed=3, epoch=1)
    assert sorted(order.tolist()) == list(range(50))
    assert torch.equal(order, epoch_permutation(50, seed=3, epoch=1))
    assert not torch.equal(order, epoch_permutation(50, seed=3, epoch=2))
    assert not torch.equal(order, epoch_permutation(50, seed=4, epoch=1))
    assert steps_in_epoch(50, 8) == 6 and steps_in_epoch(50, 8, steps_per_epoch=2) == 2


def test_rank_shards_partition_each_global_batch():
    data = PairData(40)
    whole = TrainBatches(data, batch_size=8, seed=0).index_batches(epoch=0, steps=5)  # (5, 8)
    shards = [TrainBatches(data, batch_size=8, seed=0, rank=r, world_size=2).index_batches(0, 5) for r in (0, 1)]
    assert torch.equal(torch.cat(shards, dim=1), whole)
    with pytest.raises(ValueError, match="divisible"):
        TrainBatches(data, batch_size=7, seed=0, world_size=2)


def test_loader_and_get_batch_paths_yield_the_same_batches_and_weights():
    loader_batches = list(TrainBatches(PairData(), batch_size=8, seed=1).epoch(0, steps=4, start=1))
    direct_batches = list(TrainBatches(BatchedPairData(), batch_size=8, seed=1).epoch(0, steps=4, start=1))
    assert len(loader_batches) == 3
    for (xa, ya), (xb, yb) in zip(loader_batches, direct_batches):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert_same_weights(parameters(train(PairData())[0]), parameters(train(BatchedPairData())[0]))


def test_eval_batches_cover_every_sample_once_including_the_last_partial_batch():
    for data in (PairData(10), BatchedPairData(10)):
        batches = list(eval_batches(data, 4))
        assert [len(x) for x, _ in batches] == [4, 4, 2]
        assert torch.equal(torch.cat([x for x, _ in batches]), data.images)


def test_same_seed_same_weights_and_training_lowers_the_loss():
    first, history = train(epochs=4)
    second, _ = train(epochs=4)
    assert_same_weights(parameters(first), parameters(second))
    assert history["loss"][-1] < history["loss"][0]


def test_history_logs_each_interval_and_epoch_end_and_each_validation():
    trainer, history = train(val=PairData(8, seed=1), epochs=2, log_every=3)  # 4 steps per epoch
    assert history["step"] == [3, 4, 6, 8]
    assert history["epoch"] == [0.75, 1.0, 1.5, 2.0]
    assert len(history["loss"]) == 4
    assert history["val_step"] == [4, 8] and history["val_epoch"] == [1, 2]
    assert len(history["val_dice"][-1]) == 2
    assert history.last("val_mean_dice") == history["val_dice"][-1][1]  # mean over foreground class 1
    assert trainer.step == 8


def test_history_pads_missing_keys_with_nan():
    history = History()
    history.append_train(1, 0.5, {"loss": 1.0})
    history.append_train(2, 1.0, {"loss": 0.5, "loss_discriminator": 2.0})
    history.append_train(3, 1.5, {"loss_discriminator": 1.0})
    assert history["loss"][:2] == [1.0, 0.5] and math.isnan(history["loss"][2])
    assert math.isnan(history["loss_discriminator"][0]) and history["loss_discriminator"][1:] == [2.0, 1.0]
    history.append_val(2, 1, {"mean_dice": 0.5, "dice": torch.tensor([1.0, 0.5])})
    assert history["val_dice"] == [[1.0, 0.5]] and history["val_step"] == [2]
    assert History.from_dict(history.to_dict()) == history
    with pytest.raises(ValueError, match="val_"):
        history.append_train(4, 2.0, {"val_loss": 1.0})
    with pytest.raises(KeyError, match="nope"):
        History().last("nope")


def test_log_accumulator_averages_on_read_and_stops_on_nan():
    logs = LogAccumulator()
    logs.add(0, {"loss": torch.tensor(1.0), "acc": torch.tensor(0.5)})
    logs.add(1, {"loss": torch.tensor(3.0)})
    assert logs.read() == {"loss": 2.0, "acc": 0.5}
    assert len(logs) == 0 and logs.read() == {}
    logs.add(2, {"loss": torch.tensor(1.0)})
    assert logs.read(reduce=lambda t: t * 4) == {"loss": 4.0}
    logs.add(3, {"loss": torch.tensor(1.0), "loss_discriminator": torch.tensor(float("inf"))})
    logs.add(4, {"loss": torch.tensor(float("nan"))})
    with pytest.raises(TrainingDiverged, match="'loss_discriminator' is inf at step 3") as info:
        logs.read()
    assert info.value.step == 3 and info.value.loss_name == "loss_discriminator"
    with pytest.raises(ValueError, match="0-d"):
        logs.add(5, {"loss": torch.ones(2)})


class NaNAfter(SupervisedStrategy):
    """Supervised, but the loss (and then the weights) become NaN from step ``bad_step`` on."""

    def __init__(self, bad_step: int) -> None:
        super().__init__(tiny_net(), ce, lr=1e-2)
        self.bad_step = bad_step

    def train_step(self, images, masks, step):
        if step >= self.bad_step:
            images = images * float("nan")
        return super().train_step(images, masks, step)


def test_nan_loss_raises_and_keeps_the_last_finite_checkpoint(tmp_path):
    trainer = Trainer(NaNAfter(bad_step=6), PairData(), num_classes=2,
                      config=tiny_config(epochs=3, log_every=1, checkpoint_dir=str(tmp_path)))  # 4 steps per epoch
    with pytest.raises(TrainingDiverged, match=r"'loss' is nan at step 6 \(epoch 2\).*last.pt \(written after 4 steps\) is kept") as info:
        trainer.fit()
    assert info.value.step == 6
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["strategy"]["nets"]["segmentor"].values())


def test_callbacks_get_the_averaged_logs_at_each_interval():
    calls = []
    trainer = supervised_trainer(log_every=2, callbacks=[lambda t, step, logs: calls.append((t, step, logs))])
    history = trainer.fit()
    assert [step for _, step, _ in calls] == history["step"] == [2, 4, 6, 8]
    assert [logs["loss"] for _, _, logs in calls] == history["loss"]
    assert calls[0][0] is trainer
    with pytest.raises(ValueError, match="callbacks"):
        Trainer(SupervisedStrategy(tiny_net(), ce), PairData(), config=tiny_config(), callbacks=[3])


class MeanMatcher(Strategy):
    """A non-segmentation strategy (like a toy GAN): one parameter chases the data mean."""

    name = "mean_matcher"

    def __init__(self) -> None:
        super().__init__()
        self.nets["estimator"] = nn.Linear(1, 1, bias=False)
        self.seen_targets = []

    def configure_optimizers(self) -> None:
        self.optimizers["estimator"] = torch.optim.SGD(self.nets["estimator"].parameters(), lr=0.5)

    def train_step(self, points, targets, step):
        self.seen_targets.append(targets)
        loss = ((self.nets["estimator"].weight.squeeze() - points) ** 2).mean()
        self.optimizers["estimator"].zero_grad()
        loss.backward()
        self.optimizers["estimator"].step()
        return {"loss": loss.detach()}


def test_engine_runs_strategies_on_single_tensor_data_without_a_segmentor():
    points = torch.full((32,), 3.0)  # a dataset of lone tensors
    strategy = MeanMatcher()
    Trainer(strategy, points, config=tiny_config(epochs=3)).fit()
    assert set(strategy.seen_targets) == {None}
    assert torch.allclose(strategy.nets["estimator"].weight, torch.tensor([[3.0]]), atol=1e-3)


def test_evaluate_matches_segmentation_metrics_and_restores_train_mode():
    val = PairData(12, seed=2)
    trainer, _ = train(epochs=1)
    net = trainer.strategy.unwrapped("segmentor")
    net.train(True)
    scores = trainer.evaluate(val)
    assert net.training
    reference = SegmentationMetrics(2)
    with torch.no_grad(), trainer.strategy.autocast():  # the engine's numeric path (bf16 on some CPUs)
        reference.update(net(val.images.contiguous(memory_format=torch.channels_last)).float(), val.masks)
    expected = reference.compute()
    assert torch.equal(scores["dice"], expected["dice"]) and scores["mean_dice"] == expected["mean_dice"]
    with pytest.raises(ValueError, match="num_classes"):
        Trainer(SupervisedStrategy(tiny_net(), ce), PairData(), config=tiny_config()).evaluate(val)


def test_device_amp_and_layout_rules(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setenv("SEGAN_CPU_BF16", "0")  # a CPU without native bf16 (tests/test_cpu_fast_path.py: with)
    assert hardware.resolve_amp("auto", cpu) is None and hardware.resolve_amp("auto", cuda) is torch.bfloat16
    assert hardware.resolve_amp("bf16", cpu) is torch.bfloat16 and hardware.resolve_amp("off", cuda) is None
    assert hardware.use_channels_last(None, cuda) and not hardware.use_channels_last(None, cpu, "off")
    assert hardware.use_channels_last(True, cpu)
    assert hardware.resolve_device("cpu") == cpu
    image, mask = hardware.to_device((torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4).long()), cpu, channels_last=True)
    assert image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
    assert mask.is_contiguous()
    trainer = supervised_trainer(amp="bf16", channels_last=True)
    assert trainer.strategy.amp_dtype is torch.bfloat16 and trainer.strategy.device == cpu
    assert trainer.strategy.unwrapped("segmentor")[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(math.isfinite(loss) for loss in trainer.fit()["loss"])  # bf16 autocast on the CPU


def test_compile_errors_are_told_apart_from_user_errors():
    from torch._dynamo.exc import Unsupported

    class InductorError(RuntimeError):  # e.g. a C++ compiler failure raised inside Inductor
        __module__ = "torch._inductor.codecache"

    assert hardware.is_compile_error(Unsupported("graph break"))
    assert hardware.is_compile_error(InductorError("g++ failed"))
    assert not hardware.is_compile_error(ValueError("logits must have shape (B, K, H, W)"))


def test_compile_failure_falls_back_to_eager_with_the_eager_result(monkeypatch):
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(hardware, "compile_module", lambda m: torch.compile(m, backend=failing_backend))
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        compiled, _ = train(compile=True)
    assert not compiled.compiled
    assert_same_weights(parameters(compiled), parameters(train()[0]))


def test_compile_success_keeps_results_and_checkpoints_bare(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "compile_module", lambda m: torch.compile(m, backend="eager"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled, _ = train(compile=True, checkpoint_dir=str(tmp_path))
    assert compiled.compiled and hasattr(compiled.strategy.nets["segmentor"], "_orig_mod")
    assert_same_weights(parameters(compiled), parameters(train()[0]))
    stored = load_checkpoint(tmp_path / "last.pt")["strategy"]["nets"]["segmentor"]
    assert not any("_orig_mod" in key for key in stored)


def test_supervised_strategy_checks_and_step():
    with pytest.raises(ValueError, match="lr"):
        SupervisedStrategy(tiny_net(), ce, lr=0)
    with pytest.raises(ValueError, match="segmentor"):
        SupervisedStrategy("unet")
    with pytest.raises(ValueError, match="name"):
        SupervisedStrategy(tiny_net(), "hinge")
    strategy = SupervisedStrategy(tiny_net(), "ce", lr=1e-2)
    strategy.configure_optimizers()
    data = PairData(8)
    before = strategy.nets["segmentor"][0].weight.clone()
    logs = strategy.train_step(data.images, data.masks, 0)
    assert logs["loss"].dim() == 0 and not logs["loss"].requires_grad
    assert torch.allclose(logs["loss"], ce(tiny_net()(data.images), data.masks))
    assert not torch.equal(before, strategy.nets["segmentor"][0].weight)


def test_cosine_learning_rate_follows_the_formula_and_reaches_the_optimizer():
    strategy = SupervisedStrategy(tiny_net(), ce, lr=0.1, cosine_steps=4)
    assert [strategy.learning_rate(t) for t in (0, 2, 4, 9)] == pytest.approx([0.1, 0.05, 0.0, 0.0])
    assert strategy.learning_rate(1) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert SupervisedStrategy(tiny_net(), ce, lr=0.1).learning_rate(100) == 0.1
    strategy.configure_optimizers()
    data = PairData(8)
    strategy.train_step(data.images, data.masks, 2)
    assert strategy.optimizers["segmentor"].param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="cosine_steps"):
        SupervisedStrategy(tiny_net(), ce, cosine_steps=0)


def test_build_strategy_by_method():
    from segan_lib.models import UNet
    from segan_lib.train.methods import STRATEGIES

    supervised = build_strategy("supervised", tiny_net(), in_channels=3, num_classes=2, lr=0.5, cosine_steps=10)
    assert isinstance(supervised, SupervisedStrategy) and supervised.lr == 0.5 and supervised.cosine_steps == 10
    for method in ("segan", "hybrid"):
        strategy = build_strategy(method, UNet(3, 2, base_channels=4, depth=1), in_channels=3, num_classes=2)
        assert strategy.name == method and "segmentor" in strategy.nets and len(strategy.nets) == 2
        assert type(strategy) is STRATEGIES[method]
    hybrid = build_strategy("hybrid", UNet(3, 2, base_channels=4, depth=1), in_channels=3, num_classes=2,
                            n_critic=2, critic_lr=0.01, loss="ce")
    assert (hybrid.n_critic, hybrid.critic_lr) == (2, 0.01)
    with pytest.raises(ValueError, match="method"):
        build_strategy("gan", tiny_net(), in_channels=3, num_classes=2)
    with pytest.raises(ValueError, match="lr"):
        build_strategy("supervised", tiny_net(), in_channels=3, num_classes=2, lr=-1.0)
    assert METHODS == tuple(STRATEGIES) == ("supervised", "segan", "hybrid", "semi")
