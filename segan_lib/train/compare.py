"""A controlled comparison of pixel losses: same U-Net, same data, same seed; only the loss differs.

:func:`compare_pixel_losses` trains one :class:`~segan_lib.models.unet.UNet` per loss on
:class:`~segan_lib.data.synthetic.SynthShapes` with the shared engine
(:class:`~segan_lib.train.Trainer` + :class:`~segan_lib.train.SupervisedStrategy`) and
scores each on a held-out split with per-class Dice and IoU. Every run starts from the same
initial weights (the global seed is reset before each model is built) and sees the same
batches in the same order (the engine's data order depends only on ``config.seed``), so the
loss is the only thing that changes.

SynthShapes is imbalanced by construction: background covers most pixels, shapes range from
about 1 % to 12 % of the image, and the later kinds (ring, cross) are rarer and smaller. At
32 x 32 pixels the smallest shapes are only a few pixels across.

Used by notebook 03 (class-imbalance experiment); quick mode there is tiny and noisy.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from segan_lib import course
from segan_lib.data.synthetic import SynthShapes
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss
from segan_lib.models.unet import UNet
from segan_lib.train import SupervisedStrategy, TrainConfig, Trainer
from segan_lib.train.hardware import resolve_device


@dataclass(frozen=True)
class LossSpec:
    """One contestant: a table ``label``, a ``PIXEL_LOSSES`` name and its keyword ``options``."""

    label: str
    name: str
    options: Mapping[str, object] = field(default_factory=dict)


# The notebook's line-up: CE, Dice, Dice + CE, focal with gamma 2 and 4 (softmax, alpha=None).
DEFAULT_LOSSES: tuple[LossSpec, ...] = (
    LossSpec("CE", "ce"),
    LossSpec("Dice", "dice"),
    LossSpec("Dice+CE", "dice_ce"),
    LossSpec("focal g=2", "focal", {"gamma": 2.0}),
    LossSpec("focal g=4", "focal", {"gamma": 4.0}),
)


def as_loss_spec(spec: str | LossSpec | tuple) -> LossSpec:
    """A ``LossSpec`` from itself, a loss name (``"dice"``) or ``(label, name[, options])``."""
    if isinstance(spec, LossSpec):
        result = spec
    elif isinstance(spec, str):
        result = LossSpec(spec, spec)
    elif isinstance(spec, tuple) and len(spec) in (2, 3):
        result = LossSpec(*spec)
    else:
        raise ValueError(f"losses entries must be a loss name, a LossSpec or (label, name[, options]), got {spec!r}")
    if result.name not in PIXEL_LOSSES:
        raise ValueError(f"loss name must be one of {tuple(PIXEL_LOSSES)}, got {result.name!r}")
    get_pixel_loss(result.name, **result.options)  # raises on an option the loss does not take
    return result


def compare_pixel_losses(
    losses: Sequence[str | LossSpec | tuple] = DEFAULT_LOSSES, *, size: int = 48, num_classes: int = 4,
    n_train: int = 256, n_eval: int = 64, eval_seed: int = 1, base_channels: int = 16, depth: int = 3,
    lr: float = 1e-3, config: TrainConfig | None = None,
) -> list[dict[str, float | str]]:
    """Train the same U-Net once per loss and score each on held-out data.

    Args:
        losses: the contestants (see :func:`as_loss_spec`); labels must be distinct.
        size, num_classes: SynthShapes image side (a multiple of ``2**depth`` and of 8) and
            number of classes incl. background. Training samples use ``config.seed``; the
            held-out ones ``eval_seed`` (``n_train`` and ``n_eval`` samples).
        base_channels, depth: U-Net width and number of poolings (``UNet(3, num_classes, ...)``).
        lr: Adam learning rate of :class:`SupervisedStrategy`.
        config: the engine settings (epochs, batch size, device, ...); default ``TrainConfig()``
            with the progress bar off. Evaluation happens once, after training.

    Returns:
        One row per loss, in order: ``{"loss": label, "dice/<class>": float, ...,
        "iou/<class>": float, ..., "mean_dice": float, "mean_iou": float,
        "pixel_accuracy": float, "train_seconds": float}`` with per-class scores for every
        class of ``SynthShapes.CLASS_NAMES`` (NaN for a class absent from both prediction
        and held-out masks) and means over the foreground classes (``SegmentationMetrics``).
    """
    specs = [as_loss_spec(spec) for spec in losses]
    labels = [spec.label for spec in specs]
    if not specs or len(set(labels)) != len(labels):
        raise ValueError(f"losses must be non-empty with distinct labels, got {labels}")
    config = TrainConfig(progress=False, eval_every=0) if config is None else config
    if eval_seed == config.seed:
        raise ValueError(f"eval_seed must differ from config.seed ({config.seed}) to hold data out, got {eval_seed}")
    device = resolve_device(config.device)
    train_data = SynthShapes(n_train, size=size, num_classes=num_classes, seed=config.seed, device=device)
    eval_data = SynthShapes(n_eval, size=size, num_classes=num_classes, seed=eval_seed, device=device)
    rows = []
    for spec in specs:
        course.seed_everything(config.seed)  # identical initial weights for every loss
        model = UNet(3, num_classes, base_channels=base_channels, depth=depth)
        strategy = SupervisedStrategy(model, loss=get_pixel_loss(spec.name, **spec.options), lr=lr)
        trainer = Trainer(strategy, train_data, None, num_classes=num_classes, config=config)
        start = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - start
        scores = trainer.evaluate(eval_data)
        row: dict[str, float | str] = {"loss": spec.label}
        for metric in ("dice", "iou"):
            for name, value in zip(train_data.CLASS_NAMES, scores[metric].tolist()):
                row[f"{metric}/{name}"] = float(value)
        row.update(mean_dice=float(scores["mean_dice"]), mean_iou=float(scores["mean_iou"]),
                   pixel_accuracy=float(scores["pixel_accuracy"]), train_seconds=seconds)
        rows.append(row)
    return rows


def format_comparison_table(rows: Sequence[Mapping[str, float | str]], metric: str = "dice") -> str:
    """Rows of :func:`compare_pixel_losses` as an aligned text table of one metric.

    One line per loss: the per-class ``metric`` (``"dice"`` or ``"iou"``) with 3 decimals
    (``nan`` where undefined), then the mean over foreground classes.
    """
    if metric not in ("dice", "iou"):
        raise ValueError(f"metric must be 'dice' or 'iou', got {metric!r}")
    if not rows:
        raise ValueError("rows must hold at least one row of compare_pixel_losses")
    classes = [key.split("/", 1)[1] for key in rows[0] if key.startswith(metric + "/")]
    headers = ["loss"] + classes + [f"mean fg {metric}"]
    lines = [[str(row["loss"])] + [f"{row[f'{metric}/{name}']:.3f}" for name in classes]
             + [f"{row[f'mean_{metric}']:.3f}"] for row in rows]
    widths = [max(len(line[j]) for line in [headers] + lines) for j in range(len(headers))]

    def render(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(cells, widths)))
    return "\n".join([render(headers), render(["-" * w for w in widths])] + [render(line) for line in lines])


def best_loss(rows: Sequence[Mapping[str, float | str]], key: str = "mean_dice") -> Mapping[str, float | str]:
    """The row with the largest ``key`` (NaN counts as worst; the first row wins a tie)."""
    if not rows:
        raise ValueError("rows must hold at least one row of compare_pixel_losses")
    if key not in rows[0]:
        raise ValueError(f"key must be one of {sorted(rows[0])}, got {key!r}")

    def score(row: Mapping[str, float | str]) -> float:
        value = float(row[key])
        return -math.inf if math.isnan(value) else value
    return max(rows, key=score)


def _check_runs(runs: Mapping[int, Sequence[Mapping[str, float | str]]]) -> list[str]:
    """The loss labels shared by every run of ``runs`` (seed -> rows), in order; ``ValueError`` otherwise."""
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(f"runs must be a non-empty mapping seed -> rows of compare_pixel_losses, got {runs!r}"[:200])
    labels = None
    for seed, rows in runs.items():
        these = [str(row["loss"]) for row in rows]
        if labels is None:
            labels = these
        elif these != labels:
            raise ValueError(f"runs must hold the same losses in the same order for every seed: seed {seed} has "
                             f"{these}, expected {labels}")
    return labels


def mean_over_seeds(runs: Mapping[int, Sequence[Mapping[str, float | str]]]) -> list[dict[str, float | str]]:
    """One row per loss with every score averaged over training seeds.

    ``runs`` maps a seed to the rows :func:`compare_pixel_losses` returned for it (the same
    losses in the same order). Each number of the result is the plain mean over the seeds;
    a NaN score in any seed (a class absent from prediction and masks) makes the mean NaN.
    """
    labels = _check_runs(runs)
    rows = []
    for j, label in enumerate(labels):
        same_loss = [seed_rows[j] for seed_rows in runs.values()]  # this loss, one row per seed
        rows.append({key: label if key == "loss" else sum(float(row[key]) for row in same_loss) / len(same_loss)
                     for key in same_loss[0]})
    return rows


def per_seed(runs: Mapping[int, Sequence[Mapping[str, float | str]]], label: str,
             key: str = "mean_dice") -> list[float]:
    """``key`` of the loss ``label`` in each run of ``runs`` (seed -> rows), in the seeds' order."""
    labels = _check_runs(runs)
    if label not in labels:
        raise ValueError(f"label must be one of {labels}, got {label!r}")
    first = next(iter(runs.values()))[labels.index(label)]
    if key not in first:
        raise ValueError(f"key must be one of {sorted(first)}, got {key!r}")
    return [float(rows[labels.index(label)][key]) for rows in runs.values()]
