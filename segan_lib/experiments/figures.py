"""The figures of an experiment run, as matplotlib Figures (the runner saves them as PNG).

* :func:`plot_paired_differences`: a grid of panels, one per metric: each pair's ``arm - baseline``
  on every seed (one dot per seed), their mean and its interval, coloured by the computed verdict.
* :func:`plot_player_curves`: per arm, the training loss of each player (segmentor, and the
  critic or discriminator of an adversarial arm), one thin line per seed.
* :func:`plot_predictions`: a few held-out images, their truth and each arm's prediction.

:func:`write_figures` saves all three (one predictions figure per regime) as PNG files, and those
of :mod:`~segan_lib.experiments.figures_evidence` that the results call for (``plateau.png`` when
runs recorded held-out curves, ``dose_response.png`` when arms have a weight, ``label_curve.png``
when arms have a labelled fraction).
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
from matplotlib.lines import Line2D

from segan_lib.experiments.figures_evidence import (
    WEIGHT_OPTIONS, panel_grid, plot_dose_response, plot_label_curve, plot_plateau,
)
from segan_lib.experiments.results import write_atomic
from segan_lib.experiments.spec import Experiment, Preset
from segan_lib.experiments.verdicts import BETTER, PRIMARY, WORSE, Verdict, higher_is_better, verdicts
from segan_lib.viz.segmentation import denormalize, overlay

PLAYER_KEYS = ("loss_segmentor", "loss_critic", "loss_discriminator")  # the game's two players
OUTCOME_COLOURS = {BETTER: "tab:green", WORSE: "tab:red"}  # anything else: grey


def _pair_label(arm: str, baseline: str, shortcut: bool) -> str:
    """Two lines for the y axis: the arm, then what it is compared with (and a shortcut flag)."""
    return f"{arm}\nvs {baseline}" + ("  [shortcut]" if shortcut else "")


def plot_paired_differences(rows: Sequence[Verdict], title: str = "", *,
                            pairs: Sequence[tuple[str, str]] | None = None) -> Figure:
    """A grid of panels, one per metric (primaries first, at most 2 per row): each pair's
    paired differences ``arm - baseline``, its mean and its interval, coloured by the verdict.

    ``rows``: the verdicts of :func:`~segan_lib.experiments.verdicts.verdicts`. ``pairs``:
    the ``(arm, baseline)`` pairs to show, in that order (default: all of ``rows``). In each
    panel a pair is one line: dots are its seeds, the diamond their mean, the bar the interval
    at the confidence printed on the right (primaries: Holm's level; secondaries: 95 %);
    green when the verdict is "better", red "worse", grey "no evidence of a difference". The
    vertical line is zero. Sized to stay readable at page width (about 9 inches wide).
    """
    if not rows:
        raise ValueError("rows must hold at least one verdict (an experiment with matched pairs)")
    known = list(dict.fromkeys((v.arm, v.baseline) for v in rows))
    if pairs is None:
        pairs = known
    else:
        pairs = [tuple(pair) for pair in pairs]
        unknown = [pair for pair in pairs if pair not in known]
        if not pairs or unknown:
            raise ValueError(f"pairs must be a non-empty list of (arm, baseline) pairs of the verdicts {known}, "
                             f"got {unknown or pairs!r}")
    rows = [v for v in rows if (v.arm, v.baseline) in pairs]
    metrics = list(dict.fromkeys([v.metric for v in rows if v.family == PRIMARY]
                                 + [v.metric for v in rows if v.family != PRIMARY]))
    n_cols = min(2, len(metrics))
    n_rows = -(-len(metrics) // n_cols)
    panel_height = 0.42 * len(pairs) + 1.0
    legend_height = 0.8 if n_cols > 1 else 1.0
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(6.0, 4.5 * n_cols), panel_height * n_rows + legend_height),
                             squeeze=False, sharey=True)
    shortcut = {(v.arm, v.baseline): v.shortcut for v in rows}
    for index, (ax, metric) in enumerate(zip(axes.flat, metrics)):
        family = PRIMARY
        for y, pair in enumerate(pairs):
            verdict = next((v for v in rows if v.metric == metric and (v.arm, v.baseline) == pair), None)
            if verdict is None or not verdict.differences:
                continue
            family = verdict.family
            colour = OUTCOME_COLOURS.get(verdict.outcome, "tab:grey")
            values = np.array(verdict.differences, dtype=float)
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(values, y + jitter, color=colour, s=14, alpha=0.6, zorder=3, linewidths=0)
            low, high = verdict.interval
            if not math.isnan(low):
                ax.errorbar(verdict.mean, y, xerr=[[verdict.mean - low], [high - verdict.mean]], fmt="D",
                            color=colour, markersize=5, capsize=3, linewidth=1.6, zorder=4)
                ax.annotate(f"{100 * verdict.confidence:.4g}%", (1.0, y), xycoords=("axes fraction", "data"),
                            xytext=(3, 0), textcoords="offset points", va="center", fontsize=7, color="0.35")
            elif not math.isnan(verdict.mean):
                ax.plot(verdict.mean, y, "D", color=colour, markersize=5, zorder=4)
        ax.axvline(0.0, color="0.2", linewidth=1.0, zorder=2)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_ylim(len(pairs) - 0.5, -0.5)  # first pair on top
        ax.set_yticks(range(len(pairs)), [_pair_label(a, b, shortcut.get((a, b), False)) for a, b in pairs],
                      fontsize=8)
        ax.tick_params(axis="y", labelleft=index % n_cols == 0, length=0)  # pair names once per row
        better = "higher" if higher_is_better(metric) else "lower"
        kind = "primary (Holm)" if family == PRIMARY else "secondary, uncorrected"
        ax.set_title(f"{metric}: {better} is better\n{kind}", fontsize=9)
        ax.set_xlabel("arm - baseline", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles = [Line2D([], [], color=colour, marker="D", markersize=5, label=label)
               for label, colour in (("better", "tab:green"), ("worse", "tab:red"),
                                     ("no evidence of a difference", "tab:grey"))]
    handles.append(Line2D([], [], color="0.5", marker="o", linestyle="", alpha=0.6, markersize=4,
                          label="one seed"))
    fig.legend(handles=handles, loc="lower center", ncol=4 if n_cols > 1 else 2, fontsize=8, frameon=False,
               title="diamond: mean difference, bar: its interval at the confidence on the right", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, (legend_height - 0.2) / fig.get_figheight(), 1, 1))
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
    fig, axes = panel_grid(len(histories), 3, 3.0, 2.4)
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
    plain = denormalize(images.cpu())
    if len(columns) > 7:  # many arms: one row per arm (readable at page width), one column per image
        fig, axes = plt.subplots(len(columns), count, figsize=(1.3 * count + 2.2, 1.3 * len(columns) + 0.4),
                                 squeeze=False)
        for row, (name, labels) in enumerate(columns.items()):
            pictures = plain if labels is None else overlay(images.cpu(), labels.cpu(), num_classes)
            for col in range(count):
                axes[row, col].imshow(pictures[col])
                axes[row, col].set_xticks([])
                axes[row, col].set_yticks([])
            axes[row, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
        return fig
    fig, axes = plt.subplots(count, len(columns), figsize=(1.7 * len(columns), 1.7 * count + 0.4), squeeze=False)
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
    if results.get("plateau"):
        names.append(_save(plot_plateau(results["plateau"], results, title), out / "plateau.png"))
    if any(key in arm.get("options", {}) for arm in results["arms"].values() for key in WEIGHT_OPTIONS):
        names.append(_save(plot_dose_response(results, title=title), out / "dose_response.png"))
    if results.get("label_curve"):
        names.append(_save(plot_label_curve(results, title=title), out / "label_curve.png"))
    first_seed = results["seeds"][0]
    for regime, data in held_out.items():
        images, masks = data.get_batch(torch.arange(preset.n_show))
        shown = {arm.name: torch.from_numpy(labels[arm.name][first_seed]).long()
                 for arm in experiment.arms if arm.regime == regime}
        fig = plot_predictions(images.cpu(), masks.cpu(), shown, preset.num_classes,
                               f"{experiment.name}: held-out images, regime {regime}, seed {first_seed}")
        names.append(_save(fig, out / f"predictions_{regime}.png"))
    return names
