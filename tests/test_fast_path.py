"""The fast path of the engine: compile on by default on CUDA (and working on the CPU for the
supervised and SegAN strategies, evaluation included), cuDNN benchmarking, the public
``Trainer.train_step`` / ``flush_logs``, fused Adam for every strategy, NaN logits ending a CPU
run with ``TrainingDiverged``, and (on a GPU) training steps without a host sync."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from segan_lib._checks import NonFiniteError, check_logits
from segan_lib.course import seed_everything
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models.toy import ToyDiscriminator, ToyGenerator
from segan_lib.models.unet import UNet
from segan_lib.train import Strategy, SupervisedStrategy, TrainConfig, Trainer, TrainingDiverged, build_strategy
from segan_lib.train import hardware
from segan_lib.train.gan import GANStrategy

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny tensors: one thread, as a second one only waits for the first on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_data(n: int = 16, seed: int = 0, device: str | torch.device = "cpu") -> SynthShapes:
    return SynthShapes(n, size=16, num_classes=NUM_CLASSES, seed=seed, device=device)


def tiny_strategy(method: str) -> Strategy:
    """``method``'s strategy around a one-level U-Net (4 channels); SegAN's critic one layer deep."""
    seed_everything(0)
    options = {"critic_depth": 1, "critic_base_channels": 4} if method == "segan" else {}
    return build_strategy(method, UNet(3, NUM_CLASSES, base_channels=4, depth=1), in_channels=3,
                          num_classes=NUM_CLASSES, **options)


def config(**changes) -> TrainConfig:
    settings = {"epochs": 1, "batch_size": 4, "device": "cpu", "log_every": 1, "progress": False}
    return TrainConfig(**{**settings, **changes})


def segmentor_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.strategy.unwrapped("segmentor").state_dict().items()}


# ----------------------------------------------------------------------------- defaults
def test_compile_is_on_by_default_for_cuda_only_and_can_be_forced():
    assert TrainConfig().compile is None
    assert hardware.use_compile(None, CUDA) and not hardware.use_compile(None, CPU)
    assert hardware.use_compile(True, CPU) and not hardware.use_compile(False, CUDA)
    trainer = Trainer(tiny_strategy("supervised"), tiny_data(), config=config())
    assert trainer.compiled is False and not hasattr(trainer.strategy.nets["segmentor"], "_orig_mod")
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="auto")


def test_cudnn_benchmark_is_switched_on_for_cuda_unless_determinism_is_asked(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert hardware.enable_cudnn_benchmark(CPU) is False and torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    assert hardware.enable_cudnn_benchmark(CUDA) is False and torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    assert hardware.enable_cudnn_benchmark(CUDA) is True and torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize("method", ["supervised", "segan", "hybrid", "gan"])
def test_every_strategy_gets_fused_adam_on_cuda_and_the_default_elsewhere(method):
    if method == "gan":
        strategy = GANStrategy(ToyGenerator(z_dim=2, hidden=8), ToyDiscriminator(hidden=8))
    else:
        strategy = tiny_strategy(method)
    strategy.device = CUDA  # only the choice of kernel is read here; fused Adam accepts CPU tensors too
    strategy.configure_optimizers()
    assert len(strategy.optimizers) >= 1 and all(opt.defaults["fused"] for opt in strategy.optimizers.values())
    strategy.device = CPU
    strategy.configure_optimizers()
    assert all(not opt.defaults["fused"] for opt in strategy.optimizers.values())


# ----------------------------------------------------------------------------- public step API
def test_driving_train_step_and_flush_logs_by_hand_equals_fit():
    fitted = Trainer(tiny_strategy("supervised"), tiny_data(), config=config(epochs=2, log_every=2))
    history = fitted.fit()
    manual = Trainer(tiny_strategy("supervised"), tiny_data(), config=config(epochs=2, log_every=2))
    seed_everything(0)  # what fit does before a fresh run
    for epoch in range(2):
        for batch in manual.batches.epoch(epoch, manual.steps_per_epoch):
            manual.train_step(batch)  # CPU batches: moved to the trainer's device by train_step
            if manual.step % 2 == 0:
                manual.flush_logs()
    assert manual.step == fitted.step == 8
    assert manual.history["step"] == history["step"] == [2, 4, 6, 8]
    assert manual.history["loss"] == history["loss"]
    manual_weights, fitted_weights = segmentor_weights(manual), segmentor_weights(fitted)
    assert all(torch.equal(manual_weights[k], fitted_weights[k]) for k in fitted_weights)


# ----------------------------------------------------------------------------- NaN on the CPU
class NaNLogitsFrom(SupervisedStrategy):
    """Supervised with the library's Dice + CE loss; from step ``bad_step`` on the logits are NaN."""

    def __init__(self, bad_step: int) -> None:
        seed_everything(0)
        super().__init__(UNet(3, NUM_CLASSES, base_channels=4, depth=1), "dice_ce")
        self.bad_step = bad_step

    def train_step(self, images, masks, step):
        return super().train_step(images * math.nan if step >= self.bad_step else images, masks, step)


def test_nan_logits_on_the_cpu_end_training_with_training_diverged(tmp_path):
    with pytest.raises(NonFiniteError) as direct:  # still a ValueError for code that expects one
        check_logits("logits", torch.full((1, 2, 2, 2), math.nan))
    assert isinstance(direct.value, ValueError) and direct.value.count == 8
    trainer = Trainer(NaNLogitsFrom(bad_step=6), tiny_data(), config=config(
        epochs=3, log_every=10, checkpoint_dir=str(tmp_path)))  # 4 steps per epoch
    with pytest.raises(TrainingDiverged, match=r"logits holds .* NaN .* at step 6 \(epoch 2\); "
                                               r"the last good checkpoint .*last.pt \(written after 4 steps\) is kept") as info:
        trainer.fit()
    assert info.value.step == 6 and info.value.loss_name == "logits"
    assert isinstance(info.value.__cause__, NonFiniteError)
    assert trainer.history["step"] == [4, 6]  # the finite steps 4 and 5 before it were still recorded


class LossNaNThenLogitsNaN(Strategy):
    """One parameter; the logged loss is NaN at step 1 (unchecked), the logits NaN at step 2 (checked)."""

    name = "nan_order"

    def __init__(self) -> None:
        super().__init__()
        self.nets["segmentor"] = nn.Conv2d(3, NUM_CLASSES, 1)

    def configure_optimizers(self) -> None:
        self.optimizers["segmentor"] = torch.optim.SGD(self.nets["segmentor"].parameters(), lr=0.0)

    def train_step(self, images, masks, step):
        logits = self.nets["segmentor"](images)
        if step == 2:
            check_logits("logits", logits * math.nan)
        return {"loss": logits.mean().detach() * (math.nan if step == 1 else 1.0)}


def test_the_earliest_non_finite_step_is_the_one_reported():
    trainer = Trainer(LossNaNThenLogitsNaN(), tiny_data(), config=config(log_every=10))
    with pytest.raises(TrainingDiverged, match=r"'loss' is nan at step 1 \(epoch 1\); no checkpoint") as info:
        trainer.fit()
    assert info.value.step == 1


class NaNPredictions(SupervisedStrategy):
    @torch.no_grad()
    def predict_logits(self, images):
        return super().predict_logits(images) * math.nan


def test_nan_validation_logits_on_the_cpu_end_training_with_training_diverged():
    seed_everything(0)
    strategy = NaNPredictions(UNet(3, NUM_CLASSES, base_channels=4, depth=1))
    trainer = Trainer(strategy, tiny_data(), tiny_data(8, seed=1), num_classes=NUM_CLASSES, config=config())
    with pytest.raises(TrainingDiverged, match=r"validation logits holds .* after step 3 \(epoch 1\)"):
        trainer.fit()


# ----------------------------------------------------------------------------- torch.compile on the CPU
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit
@pytest.mark.parametrize("method", ["supervised", "segan"])
def test_compiled_training_and_evaluation_match_eager_on_the_cpu(method):
    """Inductor (C++ kernels, gcc) compiles the segmentor (and SegAN's critic, called frozen in
    the segmentor step): same losses, weights and scores as eager mode, up to float rounding."""
    torch._dynamo.reset()  # compile afresh, so the counters below see this run's graphs

    def run(compile: bool) -> tuple[Trainer, dict]:
        trainer = Trainer(tiny_strategy(method), tiny_data(12), tiny_data(8, seed=1), num_classes=NUM_CLASSES,
                          config=config(steps_per_epoch=3, compile=compile))
        trainer.fit()  # 3 steps, then a validation (compiled nets in eval mode, no_grad)
        return trainer, trainer.evaluate(tiny_data(8, seed=2))

    eager, eager_scores = run(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled, compiled_scores = run(True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert compiled.compiled and all(hasattr(net, "_orig_mod") for net in compiled.strategy.nets.values())
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= len(compiled.strategy.nets)
    assert not torch._dynamo.utils.counters["graph_break"]  # each net compiles whole
    assert compiled.history.keys() == eager.history.keys()
    for key in eager.history:  # per-class lists (val_dice, val_iou) flattened
        flat = [torch.tensor(compiled.history[key], dtype=torch.float64).flatten(),
                torch.tensor(eager.history[key], dtype=torch.float64).flatten()]
        torch.testing.assert_close(*flat, rtol=1e-4, atol=1e-5, equal_nan=True, msg=key)
    eager_weights, compiled_weights = segmentor_weights(eager), segmentor_weights(compiled)
    for key, value in eager_weights.items():
        torch.testing.assert_close(compiled_weights[key], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_scores["dice"], eager_scores["dice"])
    assert compiled_scores["mean_dice"] == pytest.approx(eager_scores["mean_dice"], nan_ok=True)


# ----------------------------------------------------------------------------- GPU only
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["supervised", "segan", "hybrid"])
def test_training_steps_on_cuda_never_synchronise_with_the_host(method):
    data = SynthShapes(64, size=32, num_classes=NUM_CLASSES, device="cuda")
    trainer = Trainer(tiny_strategy(method), data, config=config(device="cuda", batch_size=8, compile=False))
    batches = trainer.batches.epoch(0, trainer.steps_per_epoch)
    for batch in [next(batches), next(batches)]:  # warm-up: cuDNN benchmarking, caches, lazy inits
        trainer.train_step(batch)
    trainer.flush_logs()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches:  # batch rendering on the GPU included
            trainer.train_step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.flush_logs()
    assert trainer.step == 8 and math.isfinite(trainer.history["loss"][-1])
