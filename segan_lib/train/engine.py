"""The one training engine: every method (supervised, SegAN, hybrid, GAN) runs on it.

A method is a :class:`~segan_lib.train.strategy.Strategy` whose ``train_step`` says what one
step does (read it in the method's own file); the :class:`Trainer` does everything else, as
Lightning's Trainer does, in this order per step (:meth:`Trainer.train_step`)::

    batch = next global batch (this process's shard)  -> device (4-D tensors channels_last)
    first batch only: strategy.check_batch(inputs, targets)  (image size against the nets)
    logs  = strategy.train_step(inputs, targets, step) -> detached 0-d tensors, kept on device
    every log_every steps and at each epoch end: read the logs once, check they are finite,
            append their means to the History, call the callbacks (:meth:`Trainer.flush_logs`)
    each epoch end (every eval_every epochs and after the last): validate -> best.pt
    every checkpoint_every steps / each epoch end / at the end: last.pt (only finite states)

The step itself never waits for the GPU: no value is read back to the host until the next
logging interval. On CUDA the fast path is the default: bf16 autocast, channels_last, fused
Adam (``make_adam``), ``torch.compile`` (``TrainConfig.compile``; training and evaluation
fall back to eager mode the same way, :func:`~segan_lib.train.hardware.with_eager_fallback`)
and ``torch.backends.cudnn.benchmark = True``. On the CPU: channels_last, and bf16 autocast
where the CPU computes bf16 natively (:func:`~segan_lib.train.hardware.cpu_bf16_support`);
``amp="off"`` keeps the plain fp32 NCHW path. The path taken is printed once and stored in
every checkpoint's ``meta["compute"]``.

Example::

    strategy = SupervisedStrategy(UNet(3, 4, base_channels=16, depth=3), loss="dice_ce")
    trainer = Trainer(strategy, SynthShapes(800, size=64), SynthShapes(100, size=64, seed=1), num_classes=4)
    history = trainer.fit()              # history["loss"], history["val_mean_dice"], ...
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from segan_lib._checks import NonFiniteError, value_checks
from segan_lib.course import seed_everything
from segan_lib.train import distributed
from segan_lib.train.batches import TrainBatches, as_tuple, steps_in_epoch
from segan_lib.train.checkpoint import (
    _check_plain, check_meta_matches, load_checkpoint, load_strategy_state, restore_rng_state, save_checkpoint,
)
from segan_lib.train.config import TrainConfig, check_resumable
from segan_lib.train.evaluation import evaluate_segmentation
from segan_lib.train.hardware import (
    announce_compute, describe_compute, enable_cudnn_benchmark, place_nets, resolve_amp, resolve_device, to_device,
    undo_step, use_channels_last, use_compile, with_eager_fallback,
)
from segan_lib.train.history import History, LogAccumulator, TrainingDiverged, diverged, nonfinite_nets
from segan_lib.train.strategy import Strategy
from segan_lib.train.tensorboard import open_tensorboard

Callback = Callable[["Trainer", int, dict], None]


class Trainer:
    """Runs ``strategy`` on ``train_data`` as ``config`` says; see the module docstring.

    Args:
        strategy: the method (nets, optimisers, step); the trainer moves its nets to the
            device, calls ``configure_optimizers()`` and wraps the nets (DDP, compile).
        train_data: a dataset of ``(inputs, targets)`` pairs (or single tensors: then
            ``train_step`` gets ``targets=None``); ``get_batch``/``set_epoch`` are used if present.
        val_data: optional segmentation dataset of ``(image, mask)`` pairs, evaluated with
            ``strategy.predict_logits``; needs ``num_classes``.
        num_classes: label classes for the metrics (2 for a binary sigmoid model).
        config: a :class:`TrainConfig` (default: ``TrainConfig()``).
        callbacks: ``f(trainer, step, logs)`` called on rank 0 at each logging interval with
            the averaged losses (e.g. to draw GAN samples).
        meta: plain data stored in checkpoints to rebuild the model (``"method"`` is added).

    Attributes read by callers: ``step`` (steps done), ``history``, ``device``, ``channels_last``,
    ``compiled`` (False after a fall back to eager mode), ``cudnn_benchmark`` (CUDA only).
    """

    def __init__(self, strategy: Strategy, train_data: object, val_data: object = None, *,
                 num_classes: int | None = None, config: TrainConfig | None = None,
                 callbacks: Sequence[Callback] = (), meta: dict | None = None) -> None:
        config = TrainConfig() if config is None else config
        if not isinstance(strategy, Strategy):
            raise ValueError(f"strategy must be a segan_lib.train.Strategy, got {type(strategy).__name__}")
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not hasattr(train_data, "__len__"):
            raise ValueError(f"train_data must be a Dataset with a length, got {type(train_data).__name__}")
        if val_data is not None and num_classes is None:
            raise ValueError("num_classes is required when val_data is given (label classes for the metrics), got None")
        if any(not callable(cb) for cb in callbacks):
            raise ValueError("callbacks must be callables f(trainer, step, logs)")
        self.strategy, self.train_data, self.val_data = strategy, train_data, val_data
        self.num_classes, self.config, self.callbacks = num_classes, config, list(callbacks)
        self.meta = {"method": strategy.name, **({"num_classes": num_classes} if num_classes else {}), **(meta or {})}
        _check_plain(self.meta, "meta")

        self.dist = distributed.init_from_env(config.device)
        self.device = resolve_device(config.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.cudnn_benchmark = enable_cudnn_benchmark(self.device)
        self.channels_last = use_channels_last(config.channels_last, self.device, config.amp)
        self.steps_per_epoch = steps_in_epoch(len(train_data), config.batch_size, config.steps_per_epoch)
        self.batches = TrainBatches(train_data, batch_size=config.batch_size, seed=config.seed,
                                    rank=self.dist.rank, world_size=self.dist.world_size,
                                    num_workers=config.num_workers, pin_memory=self.device.type == "cuda")
        strategy.device, strategy.amp_dtype = self.device, resolve_amp(config.amp, self.device)
        self.compiled = use_compile(config.compile, self.device)  # False again after a fallback to eager
        place_nets(strategy, self.device, channels_last=self.channels_last, ddp=self.dist.enabled,
                   compile=self.compiled)
        self._compile_proven = self._batch_checked = False
        if config.progress and self.dist.is_main:
            announce_compute(self.compute)

        self.step = 0  # optimisation steps done
        self.history = History()
        self._logs = LogAccumulator()
        self._last_checkpoint: tuple[Path, int] | None = None
        self._bar = None
        self.tensorboard = open_tensorboard(config.tensorboard_dir, is_main=self.dist.is_main)  # None: off
        if self.tensorboard is not None:
            self.callbacks.append(self.tensorboard)

    # ----------------------------------------------------------------- training
    def fit(self, resume_from: str | Path | None = None) -> History:
        """Train until ``config.epochs`` epochs are done; returns the :class:`History`.

        ``resume_from``: a checkpoint of this method and model; training continues at its
        step with its weights, optimiser states, history and RNG states, as an unbroken run
        would. A fresh run seeds every RNG with ``config.seed`` first (the caller seeds model
        initialisation). Calling ``fit`` again after raising ``config.epochs`` continues the run.
        """
        config, spe = self.config, self.steps_per_epoch
        if resume_from is not None:
            self._resume(Path(resume_from))
        elif self.step == 0:
            seed_everything(config.seed)
        total = config.epochs * spe
        self._bar = self._progress_bar(total)
        try:
            while self.step < total:
                epoch, start = divmod(self.step, spe)
                self.strategy.train(True)
                for batch in self.batches.epoch(epoch, spe, start):
                    self.train_step(batch)
                    self._bar.update(1)
                    if self.step % config.log_every == 0:
                        self.flush_logs()
                    if config.checkpoint_every and self.step % config.checkpoint_every == 0 and self.step % spe:
                        self._save("last.pt")  # mid-epoch; epoch ends are saved below, after validation
                self._end_epoch(epoch + 1, last=self.step >= total)
        finally:
            self._bar.close()
            self._bar = None
        distributed.barrier()
        return self.history

    def _end_epoch(self, epochs_done: int, *, last: bool) -> None:
        config = self.config
        self.flush_logs()
        if self.val_data is not None and (last or (config.eval_every and epochs_done % config.eval_every == 0)):
            self._validate(epochs_done)
        if last or config.checkpoint_every == 0 or self.step % config.checkpoint_every == 0:
            self._save("last.pt")

    def train_step(self, batch: Sequence[torch.Tensor] | torch.Tensor) -> None:
        """One optimisation step of the strategy on ``batch``, then ``self.step += 1``.

        ``batch``: ``(inputs, targets)``, ``(inputs,)`` or a lone tensor of inputs, as the
        training data yields it, moved to the trainer's device (4-D tensors to channels_last
        when on). The losses stay on the device until :meth:`flush_logs`, so the step never
        waits for the GPU. :meth:`fit` runs every step through here; to drive training
        yourself, call it, then ``flush_logs()`` now and then (train/eval mode is left as is).
        Raises :class:`TrainingDiverged` when, on the CPU, the losses' value checks find
        NaN/inf logits (on CUDA the checks are off and :meth:`flush_logs` finds the NaN loss).
        """
        batch = to_device(as_tuple(batch), self.device, self.channels_last)
        if not self._batch_checked:  # batches keep their structure and shapes: checked once, here
            if len(batch) not in (1, 2):
                raise ValueError("train_data must yield (inputs, targets) pairs or single tensors, "
                                 f"got {len(batch)} items")
            self.strategy.check_batch(batch[0], batch[1] if len(batch) == 2 else None)
            self._batch_checked = True
        inputs, targets = batch if len(batch) == 2 else (batch[0], None)

        def run() -> dict:  # may run twice (compile fallback). On CUDA no value check would stall the
            # GPU every step: the engine checks the losses itself at each logging interval instead.
            with value_checks(False) if self.device.type == "cuda" else contextlib.nullcontext():
                return self.strategy.train_step(inputs, targets, self.step)

        try:
            if self.compiled and not self._compile_proven:  # compiles now, or falls back to eager
                logs, self.compiled = with_eager_fallback(self.strategy.nets, run, undo=undo_step(self.strategy))
                self._compile_proven = True
            else:
                logs = run()
        except NonFiniteError as error:
            if not self.dist.enabled:  # (a collective read: the other processes may not be here)
                self.flush_logs()  # an earlier NaN loss still pending is reported first
            raise self._diverged(f"training diverged: {error} at step {self.step}", step=self.step,
                                 loss_name=error.name) from error
        self._logs.add(self.step, logs)
        self.step += 1

    def _diverged(self, message: str, *, step: int, loss_name: str, value: float = math.nan) -> TrainingDiverged:
        """``TrainingDiverged`` for a NaN/inf found at ``step``, naming the epoch and the checkpoint kept."""
        return diverged(message, step=step, epoch=step // self.steps_per_epoch + 1, loss_name=loss_name,
                        value=value, last_checkpoint=self._last_checkpoint)

    def flush_logs(self) -> None:
        """Read the losses of the steps since the last read (one host sync), raise
        :class:`TrainingDiverged` if any is NaN/inf, append their means to the History,
        show them on the progress bar and call the callbacks. :meth:`fit` calls it every
        ``log_every`` steps and at each epoch end; nothing happens if no step is pending."""
        if not len(self._logs):
            return
        try:
            means = self._logs.read(distributed.mean_over_processes if self.dist.enabled else None)
        except TrainingDiverged as error:
            raise self._diverged(str(error), step=error.step, loss_name=error.loss_name, value=error.value) from None
        self.history.append_train(self.step, self.step / self.steps_per_epoch, means)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
        if self.dist.is_main:
            for callback in self.callbacks:
                callback(self, self.step, means)

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, data: object) -> dict:
        """``SegmentationMetrics.compute()`` of the segmentor on every sample of ``data``
        (eval mode, ``strategy.predict_logits``, batches of ``config.batch_size``)."""
        if self.num_classes is None:
            raise ValueError("num_classes is required to evaluate (pass it to Trainer), got None")
        if "segmentor" not in self.strategy.nets:
            raise ValueError(f"the {self.strategy.name} strategy has no 'segmentor' net to evaluate")
        was_training = self.strategy.segmentor.training
        self.strategy.train(False)
        try:
            with distributed.bare_nets(self.strategy.nets, self.dist.enabled):
                if not self.compiled:
                    return self._run_evaluation(data)
                scores, self.compiled = with_eager_fallback(self.strategy.nets, lambda: self._run_evaluation(data))
                return scores
        finally:
            self.strategy.train(was_training)

    def _run_evaluation(self, data: object) -> dict:
        return evaluate_segmentation(self.strategy.predict_logits, data, num_classes=self.num_classes,
                                     batch_size=self.config.batch_size, device=self.device,
                                     channels_last=self.channels_last, num_workers=self.config.num_workers,
                                     check_images=self.strategy.check_images)

    def _validate(self, epochs_done: int) -> None:
        try:
            metrics = self.evaluate(self.val_data) if self.dist.is_main else None
        except NonFiniteError as error:  # on the CPU, where the metrics check the logits
            raise self._diverged(f"training diverged: validation {error} after step {self.step - 1}",
                                 step=self.step - 1, loss_name=f"validation {error.name}") from error
        if self.dist.enabled:
            metrics = distributed.broadcast_from_main(metrics)
        previous_best = max((d for d in self.history.get("val_mean_dice", []) if not math.isnan(d)), default=-math.inf)
        self.history.append_val(self.step, epochs_done, metrics)
        if self.tensorboard is not None:
            self.tensorboard.log_validation(self, self.step, metrics)
        if self._bar is not None:
            self._bar.set_postfix({"val_mean_dice": f"{metrics['mean_dice']:.3f}"}, refresh=False)
        if metrics["mean_dice"] > previous_best:
            self._save("best.pt")

    # ----------------------------------------------------------------- checkpoints
    def _save(self, name: str) -> None:
        """Write ``checkpoint_dir/name`` on rank 0, only after checking the state is finite."""
        if self.config.checkpoint_dir is None:
            return
        self.flush_logs()  # raises TrainingDiverged before a NaN state could be written
        bad = nonfinite_nets(self.strategy.nets)
        if bad:
            raise self._diverged(f"training diverged: the weights of {bad[0]!r} hold NaN/inf after step "
                                 f"{self.step - 1}", step=self.step - 1, loss_name=f"{bad[0]} weights")
        path = Path(self.config.checkpoint_dir) / name
        if self.dist.is_main:
            train = {**self.config.to_dict(), "steps_per_epoch": self.steps_per_epoch}
            save_checkpoint(path, self.strategy, step=self.step, epoch=self.step // self.steps_per_epoch,
                            history=self.history.to_dict(), meta={**self.meta, "compute": self.compute},
                            train=train)
        if name == "last.pt":
            self._last_checkpoint = (path, self.step)

    def _resume(self, path: Path) -> None:
        payload = load_checkpoint(path, method=self.strategy.name)
        check_meta_matches(payload, self.meta, path)
        check_resumable(payload["train"], self.config, self.steps_per_epoch, str(path))
        load_strategy_state(self.strategy, payload, path)
        restore_rng_state(payload["rng"])
        self.step = int(payload["step"])
        self.history = History.from_dict(payload["history"])
        self._last_checkpoint = (path, self.step)

    @property
    def compute(self) -> dict[str, object]:
        """The numeric path of this run (``describe_compute``): device, bf16 or fp32, layout, compiled."""
        return describe_compute(self.device, self.strategy.amp_dtype, self.channels_last, self.compiled)

    def _progress_bar(self, total: int):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=min(self.step, total), desc=f"{self.strategy.name}", unit="step",
                    dynamic_ncols=True, disable=not (self.config.progress and self.dist.is_main))
