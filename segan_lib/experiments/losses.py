"""Experiment ``losses``: a controlled comparison of pixel losses, on the experiment runner.

The same U-Net, the same data, the same initial weights and batch order; only the loss
differs (every arm is ``supervised``). The arms are notebook 03's line-up: CE (the
baseline), soft Dice, Dice + CE, focal with gamma 2 and 4 (softmax, ``alpha=None``).

SynthShapes is imbalanced by construction: background covers most pixels, shapes range from
about 1 % to 12 % of the image, and the later kinds (ring, cross) are rarer and smaller. At
32 x 32 pixels the smallest shapes are only a few pixels across.

:func:`compare_pixel_losses` runs any line-up for one training seed and returns one row per
loss (what notebook 03 tabulates); :func:`mean_over_seeds` and :func:`per_seed` combine the
rows of several seeds; :func:`format_comparison_table` and :func:`best_loss` read them.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from segan_lib.experiments.results import as_float
from segan_lib.experiments.runner import run_experiment
from segan_lib.experiments.spec import Arm, Experiment, Preset
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss
from segan_lib.train import TrainConfig


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


def arm_name(label: str) -> str:
    """A folder-safe arm name for a table label: ``"focal g=2"`` -> ``"focal_g=2"``."""
    name = re.sub(r"[^A-Za-z0-9_.+=-]", "_", label.strip())
    return name if name[:1].isalnum() else f"loss_{name}"


def loss_arms(specs: Sequence[LossSpec], baseline: str | None) -> tuple[Arm, ...]:
    """One supervised arm per loss; each but the baseline arm (the label ``baseline``) is paired with it."""
    names = [arm_name(spec.label) for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"losses must have distinct labels (also once made folder-safe), got {names}")
    base = None if baseline is None else arm_name(baseline)
    return tuple(Arm(name, "supervised", spec.name, loss_options=dict(spec.options),
                     baseline=base if name != base else None) for name, spec in zip(names, specs))


PRESETS = {  # quick and full are notebook 03's settings; no batch norm (the U-Net of notebook 02)
    "quick": Preset(size=32, num_classes=4, n_train=128, n_eval=64, epochs=4, batch_size=8, base_channels=8,
                    depth=2, lr=5e-3, batch_norm=False, seeds=3, threads=1),
    "reference": Preset(size=48, num_classes=4, n_train=1000, n_eval=200, epochs=10, batch_size=16,
                        base_channels=16, depth=3, lr=1e-3, batch_norm=False, seeds=3),
    "full": Preset(size=64, num_classes=6, n_train=4000, n_eval=1000, epochs=25, batch_size=32, base_channels=32,
                   depth=3, lr=1e-3, batch_norm=False, log_every=50, seeds=3),
}

LOSSES = Experiment(name="losses", description=__doc__, arms=loss_arms(DEFAULT_LOSSES, "CE"), presets=PRESETS)


def compare_pixel_losses(
    losses: Sequence[str | LossSpec | tuple] = DEFAULT_LOSSES, *, size: int = 48, num_classes: int = 4,
    n_train: int = 256, n_eval: int = 64, eval_seed: int = 1, base_channels: int = 16, depth: int = 3,
    lr: float = 1e-3, config: TrainConfig | None = None,
) -> list[dict[str, float | str]]:
    """Train the same U-Net once per loss (on the experiment runner) and score each on held-out data.

    Args:
        losses: the contestants (see :func:`as_loss_spec`); labels must be distinct.
        size, num_classes: SynthShapes image side (a multiple of ``2**depth`` and of 8) and
            number of classes incl. background. Training samples use ``config.seed`` (also the
            seed of the initial weights and of the batch order); the held-out ones ``eval_seed``
            (``n_train`` and ``n_eval`` samples).
        base_channels, depth: U-Net width and number of poolings (``UNet(3, num_classes, ...)``,
            no batch norm).
        lr: Adam learning rate of the supervised strategy.
        config: epochs, batch size, seed, device, amp, compile, log_every and progress of the
            runs; default ``TrainConfig()`` with the progress bar off.

    Returns:
        One row per loss, in order: ``{"loss": label, "<metric>/<class>": float, ...,
        "mean_<metric>": float, ..., "pixel_accuracy": float, "train_seconds": float}`` for every
        per-class metric the evaluation returns (Dice and IoU at least) and every class of
        ``SynthShapes.CLASS_NAMES`` (NaN for a class absent from both prediction and held-out
        masks); means over the foreground classes.
    """
    specs = [as_loss_spec(spec) for spec in losses]
    labels = [spec.label for spec in specs]
    if not specs or len(set(labels)) != len(labels):
        raise ValueError(f"losses must be non-empty with distinct labels, got {labels}")
    config = TrainConfig(progress=False, eval_every=0) if config is None else config
    if eval_seed == config.seed:
        raise ValueError(f"eval_seed must differ from config.seed ({config.seed}) to hold data out, got {eval_seed}")
    if config.steps_per_epoch is not None:
        raise ValueError(f"config.steps_per_epoch must be None (whole epochs), got {config.steps_per_epoch}")
    preset = Preset(size=size, num_classes=num_classes, n_train=n_train, n_eval=n_eval, epochs=config.epochs,
                    batch_size=config.batch_size, base_channels=base_channels, depth=depth, lr=lr, batch_norm=False,
                    log_every=config.log_every, n_show=min(4, n_eval), compile=config.compile, amp=config.amp)
    experiment = Experiment("losses", __doc__, loss_arms(specs, None), {}, held_out_seed=eval_seed)
    results = run_experiment(experiment, preset, seeds=[config.seed], device=config.device,
                             progress=config.progress, command="segan experiment losses (library call)")
    rows = []
    for arm, spec in zip(experiment.arms, specs):
        run = results["runs"][arm.name][str(config.seed)]
        row: dict[str, float | str] = {"loss": spec.label}
        for metric, per_class in run["scores"]["per_class"].items():
            row.update({f"{metric}/{name}": as_float(value) for name, value in per_class.items()})
        row.update({f"mean_{metric}": as_float(value) for metric, value in run["scores"]["mean"].items()})
        row.update({key: as_float(value) for key, value in run["scores"]["overall"].items()})
        row["train_seconds"] = run["train_seconds"]
        rows.append(row)
    return rows


def format_comparison_table(rows: Sequence[Mapping[str, float | str]], metric: str = "dice") -> str:
    """Rows of :func:`compare_pixel_losses` as an aligned text table of one per-class metric.

    One line per loss: the per-class ``metric`` (``"dice"``, ``"iou"``, or any other the rows
    hold) with 3 decimals (``nan`` where undefined), then the mean over foreground classes.
    """
    if not rows:
        raise ValueError("rows must hold at least one row of compare_pixel_losses")
    available = sorted({key.split("/", 1)[0] for key in rows[0] if "/" in key})
    if metric not in available:
        raise ValueError(f"metric must be one of {available}, got {metric!r}")
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
