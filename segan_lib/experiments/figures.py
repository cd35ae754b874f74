"""The figures of an experiment run, as matplotlib Figures (the runner saves them as PNG).

* :func:`plot_paired_differences`: per metric, each pair's ``arm - baseline`` on every seed
  (one dot per seed, a bar at their mean, a line at zero) and the computed verdict.
* :func:`plot_player_curves`: per arm, the training loss of each player (segmentor, and the
  critic or discriminator of an adversarial arm), one thin line per seed.
* :func:`plot_predictions`: a few held-out images, their truth and each arm's prediction.

:func:`write_figures` saves all three (one predictions figure per regime) as PNG files.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from segan_lib.experiments.results import write_atomic
from segan_lib.experiments.spec import Experiment, Preset
from segan_lib.experiments.verdicts import BETTER, WORSE, Verdict, verdicts
from segan_lib.viz.segmentation import denormalize, overlay

PLAYER_KEYS = ("loss_segmentor", "loss_critic", "loss_discriminator")  # the game's two players
OUTCOME_COLOURS = {BETTER: "tab:green", WORSE: "tab:red"}  # anything else: grey


def plot_paired_differences(rows: Sequence[Verdict], title: str = "") -> Figure:
    """One panel per metric: for each pair, the paired differences ``arm - baseline`` per seed.

    ``rows``: the verdicts of :func:`~segan_lib.experiments.verdicts.verdicts`. Dots are
    seeds, the short bar their mean; green when the arm beats its baseline on every seed,
    red when the baseline does, grey otherwise. The panel title says which way is better.
    """
    if not rows:
        raise ValueError("rows must hold at least one verdict (an experiment with matched pairs)")
    metrics = list(dict.fromkeys(v.metric for v in rows))
    pairs = list(dict.fromkeys((v.arm, v.baseline) for v in rows))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 0.9 * len(pairs) + 1.5) * len(metrics), 3.8),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for x, pair in enumerate(pairs):
            verdict = next((v for v in rows if v.metric == metric and (v.arm, v.baseline) == pair), None)
            if verdict is None or not verdict.differences:
                continue
            colour = OUTCOME_COLOURS.get(verdict.outcome, "tab:grey")
            values = np.array(verdict.differences, dtype=float)
            ax.scatter(np.full(len(values), x), values, color=colour, s=18, zorder=3)
            if not math.isnan(verdict.mean):
                ax.hlines(verdict.mean, x - 0.25, x + 0.25, color=colour, linewidth=2)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(pairs)), [f"{arm}\n- {base}" for arm, base in pairs], rotation=60, ha="right",
                      fontsize=7)
        better = "higher" if next(v for v in rows if v.metric == metric).higher_is_better else "lower"
        ax.set_title(f"{metric} ({better} is better)", fontsize=9)
        ax.set_ylabel("arm - baseline")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_player_curves(histories: Mapping[str, Mapping[int, Mapping[str, Sequence[float]]]],
                       title: str = "") -> Figure:
    """One panel per arm: each player's training loss against the step, one line per seed.

    ``histories``: arm -> seed -> a ``History`` dict (``"step"`` and the logged losses). The
    players' losses are ``loss_segmentor`` and ``loss_critic`` / ``loss_discriminator`` for
    an adversarial arm, ``loss`` for a supervised one.
    """
    if not histories:
        raise ValueError("histories must hold at least one arm")
    n_cols = min(4, len(histories))
    n_rows = -(-len(histories) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.8 * n_rows), squeeze=False)
    for ax, (arm, per_seed) in zip(axes.flat, histories.items()):
        for index, (seed, history) in enumerate(per_seed.items()):
            keys = [k for k in PLAYER_KEYS if k in history] or ["loss"]
            for colour, key in zip(("tab:blue", "tab:orange"), keys):
                steps = np.asarray(history["step"], dtype=float)
                values = np.array([math.nan if v is None else v for v in history[key]], dtype=float)
                ax.plot(steps, values, color=colour, linewidth=1, alpha=0.8,
                        label=key.removeprefix("loss_") if index == 0 else None)
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(histories):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_predictions(images: torch.Tensor, masks: torch.Tensor, predictions: Mapping[str, torch.Tensor],
                     num_classes: int, title: str = "") -> Figure:
    """Rows: held-out images ``(N, 3, H, W)``; columns: the image, its truth ``(N, H, W)``
    overlaid, then each arm's predicted labels ``(N, H, W)`` overlaid (PASCAL VOC colours)."""
    if images.dim() != 4 or masks.shape != images.shape[:1] + images.shape[2:]:
        raise ValueError(f"images must be (N, C, H, W) and masks (N, H, W) of the same N, H, W, got "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}")
    for arm, labels in predictions.items():
        if tuple(labels.shape) != tuple(masks.shape):
            raise ValueError(f"predictions[{arm!r}] must have shape {tuple(masks.shape)}, got {tuple(labels.shape)}")
    columns = {"image": None, "truth": masks, **predictions}
    count = images.shape[0]
    fig, axes = plt.subplots(count, len(columns), figsize=(1.7 * len(columns), 1.7 * count + 0.4), squeeze=False)
    plain = denormalize(images.cpu())
    for col, (name, labels) in enumerate(columns.items()):
        pictures = plain if labels is None else overlay(images.cpu(), labels.cpu(), num_classes)
        for row in range(count):
            axes[row, col].imshow(pictures[row])
            axes[row, col].axis("off")
        axes[0, col].set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically, close it; returns the file name."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path.name


def write_figures(out: Path, experiment: Experiment, preset: Preset, results: dict,
                  records: dict[str, dict[int, dict]], labels: dict[str, dict[int, np.ndarray]],
                  held_out: dict[str, object]) -> list[str]:
    """Save the PNG figures of :mod:`~segan_lib.experiments.figures` into ``out``; returns their names."""
    title = f"{experiment.name}, preset {results['preset']}, seeds {results['seeds']}"
    names = []
    rows = verdicts(results)
    if rows:
        names.append(_save(plot_paired_differences(rows, title), out / "paired_differences.png"))
    histories = {arm: {seed: record["history"] for seed, record in per_seed.items()}
                 for arm, per_seed in records.items()}
    names.append(_save(plot_player_curves(histories, title), out / "curves.png"))
    first_seed = results["seeds"][0]
    for regime, data in held_out.items():
        images, masks = data.get_batch(torch.arange(preset.n_show))
        shown = {arm.name: torch.from_numpy(labels[arm.name][first_seed]).long()
                 for arm in experiment.arms if arm.regime == regime}
        fig = plot_predictions(images.cpu(), masks.cpu(), shown, preset.num_classes,
                               f"{experiment.name}: held-out images, regime {regime}, seed {first_seed}")
        names.append(_save(fig, out / f"predictions_{regime}.png"))
    return names
