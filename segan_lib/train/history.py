"""What a training run records: the :class:`History` of losses and metrics, the
:class:`LogAccumulator` that averages the per-step losses without a host sync, and
:class:`TrainingDiverged`, raised when a loss or a weight stops being finite.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from segan_lib.train.strategy import unwrap

TRAIN_INDEX_KEYS = ("step", "epoch")
VAL_PREFIX = "val_"


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite. ``step`` and ``loss_name`` say where; the last
    checkpoint written before (if any) is left untouched, since only finite states are saved."""

    def __init__(self, message: str, *, step: int, loss_name: str, value: float) -> None:
        super().__init__(message)
        self.step = step
        self.loss_name = loss_name
        self.value = value


def diverged(message: str, *, step: int, epoch: int, loss_name: str, value: float,
             last_checkpoint: tuple[object, int] | None) -> TrainingDiverged:
    """``TrainingDiverged(message ...)`` naming the epoch and the last good checkpoint ``(path, steps done)``."""
    if last_checkpoint:
        path, steps_done = last_checkpoint
        kept = f"the last good checkpoint {path} (written after {steps_done} steps) is kept"
    else:
        kept = "no checkpoint was written before it"
    return TrainingDiverged(f"{message} (epoch {epoch}); {kept}. Lower the learning rate or check the data",
                            step=step, loss_name=loss_name, value=value)


def nonfinite_nets(nets: Mapping[str, torch.nn.Module]) -> list[str]:
    """Names of the networks (bare modules behind any wrapper) with a NaN/inf parameter (one host sync each)."""
    bad = []
    for name, net in nets.items():
        params = list(unwrap(net).parameters())
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            bad.append(name)
    return bad


class History(dict):
    """``dict[str, list]`` of everything logged during training, ready to plot.

    Two families of aligned lists:

    * training logs, one entry per logging interval (every ``log_every`` steps, and also at
      each epoch end and before each checkpoint, so every saved state was checked finite):
      ``"step"`` (global steps done),
      ``"epoch"`` (fractional epoch, ``step / steps_per_epoch``) and one list per loss that
      the strategy's ``train_step`` returns (the mean over the steps of that interval);
    * validation, one entry per evaluation: ``"val_step"``, ``"val_epoch"`` and the
      metrics with a ``val_`` prefix: ``"val_mean_dice"``, ``"val_mean_iou"``,
      ``"val_pixel_accuracy"`` (floats), ``"val_dice"``, ``"val_iou"`` (per-class lists).

    A key missing from an entry (e.g. a loss logged only every few steps) holds ``nan``
    there, so every list of a family is as long as its ``"step"`` / ``"val_step"`` list.
    """

    def append_train(self, step: int, epoch: float, logs: Mapping[str, float]) -> None:
        """Add one logging interval: ``logs`` maps loss names to their interval means."""
        for name in logs:
            if name in TRAIN_INDEX_KEYS or name.startswith(VAL_PREFIX):
                raise ValueError(
                    f"loss names must not be {TRAIN_INDEX_KEYS} or start with {VAL_PREFIX!r}, got {name!r}"
                )
        self._append("step", {"step": step, "epoch": epoch, **logs}, is_family=lambda k: not k.startswith(VAL_PREFIX))

    def append_val(self, step: int, epoch: int, metrics: Mapping[str, object]) -> None:
        """Add one evaluation: ``metrics`` from ``SegmentationMetrics.compute()`` (tensors become lists)."""
        row: dict[str, object] = {"val_step": step, "val_epoch": epoch}
        for name, value in metrics.items():
            row[VAL_PREFIX + name] = value.tolist() if isinstance(value, Tensor) else value
        self._append("val_step", row, is_family=lambda k: k.startswith(VAL_PREFIX))

    def _append(self, index_key: str, row: Mapping[str, object], is_family: Callable[[str], bool]) -> None:
        done = len(self.get(index_key, []))
        for key, value in row.items():
            self.setdefault(key, [math.nan] * done).append(value)
        for key in self:
            if is_family(key) and key not in row:
                self[key].append(math.nan)

    def last(self, key: str) -> object:
        """The latest value logged under ``key`` (``KeyError`` naming the known keys if absent)."""
        if not self.get(key):
            raise KeyError(f"history has no values for {key!r}; keys: {sorted(self)}")
        return self[key][-1]

    def to_dict(self) -> dict[str, list]:
        """A plain ``dict`` of lists (what checkpoints and ``json.dump`` take)."""
        return {key: list(values) for key, values in self.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, list]) -> History:
        return cls({key: list(values) for key, values in data.items()})


class LogAccumulator:
    """Collects the 0-d loss tensors of each step on their device and reads them back once.

    ``add`` keeps references only (no ``.item()``, so no host sync per step); ``read``
    stacks everything logged since the last read into one ``(steps, losses)`` tensor,
    optionally averages it over processes, copies it to the host with one ``tolist()``,
    checks every value is finite and returns the per-loss means.
    """

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._logs: list[dict[str, Tensor]] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, logs: Mapping[str, object]) -> None:
        """Record the ``logs`` of ``step``: loss name -> detached 0-d tensor (or a number)."""
        if not isinstance(logs, Mapping):
            raise ValueError(f"train_step must return a dict of loss name -> 0-d tensor, got {type(logs).__name__}")
        row = {}
        for name, value in logs.items():
            value = torch.as_tensor(value).detach()
            if value.dim() != 0:
                raise ValueError(f"train_step log {name!r} must be a 0-d tensor, got shape {tuple(value.shape)}")
            row[name] = value
        self._steps.append(step)
        self._logs.append(row)

    def read(self, reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """Means of each loss over the pending steps; raises :class:`TrainingDiverged` on NaN/inf.

        ``reduce`` (e.g. a mean over DDP processes) maps the ``(steps, losses)`` float32
        tensor to one of the same shape before it is read. Clears the pending steps.
        """
        if not self._steps:
            return {}
        steps, logs = self._steps, self._logs
        self._steps, self._logs = [], []
        names = list(dict.fromkeys(name for row in logs for name in row))  # first-seen order
        if not names:
            return {}
        device = next(value.device for row in logs for value in row.values())
        zero = torch.zeros((), device=device)
        table = torch.stack([torch.stack([row.get(n, zero).float().to(device) for n in names]) for row in logs])
        if reduce is not None:
            table = reduce(table)  # (steps, losses)
        values = table.tolist()  # the one host sync per logging interval
        for step, row, row_values in zip(steps, logs, values):  # earliest bad step first
            for name, value in zip(names, row_values):
                if name in row and not math.isfinite(value):
                    raise TrainingDiverged(
                        f"training diverged: loss {name!r} is {value} at step {step}",
                        step=step, loss_name=name, value=value,
                    )
        means: dict[str, float] = {}
        for j, name in enumerate(names):
            present = [row_values[j] for row, row_values in zip(logs, values) if name in row]
            means[name] = sum(present) / len(present)
        return means
