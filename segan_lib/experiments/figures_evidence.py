"""Figures of the evidence studies, readable at page width (about 9 inches wide at most).

* :func:`plot_plateau`: the reference arms' held-out Dice during training (seed mean, thin
  lines per seed), the last quarter shaded: did the baselines finish learning?
* :func:`plot_dose_response`: for arms with a weight (``lambda_adv`` of the hybrid,
  ``mae_weight`` of SegAN), the paired difference to the baseline with its interval against
  the weight, one line per encoding and regime, one panel per metric.
* :func:`plot_label_curve`: held-out Dice against the labelled fraction, one line per arm,
  with 95 % intervals over seeds and the full-label ceiling marked (like Hung et al.'s Table 1).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from segan_lib.experiments.curves import mean_interval
from segan_lib.experiments.verdicts import BETTER, WORSE, higher_is_better

WEIGHT_OPTIONS = ("lambda_adv", "mae_weight")  # the dose of an adversarial arm
DOSE_METRICS = ("dice", "boundary_f1", "hd95")


def panel_grid(count: int, max_cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``count`` panels in rows of at most ``max_cols``, each ``width`` x ``height`` inches;
    the unused panels of the last row are switched off. Returns ``(fig, axes)`` (a 2-D array)."""
    n_cols = min(max_cols, count)
    n_rows = -(-count // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return fig, axes


def plot_plateau(plateau: Mapping[str, Mapping[str, object]], results: Mapping[str, object], title: str = "") -> Figure:
    """One panel per reference arm of ``plateau`` (:func:`~segan_lib.experiments.curves.plateau_summary`):
    held-out Dice against the step, every seed thin, the seed mean thick, the last quarter shaded."""
    if not plateau:
        raise ValueError("plateau must hold at least one arm (results of a preset with curve_every)")
    fig, axes = panel_grid(len(plateau), 2, 4.4, 2.9)
    for ax, (arm, summary) in zip(axes.flat, plateau.items()):
        for run in results["runs"].get(arm, {}).values():
            if run.get("curve"):
                ax.plot(run["curve"]["step"], run["curve"]["dice"], color="0.7", linewidth=0.8)
        ax.plot(summary["steps"], summary["mean_dice"], color="tab:blue", linewidth=2, label="mean over seeds")
        ax.axvspan(summary["from_step"], summary["to_step"], color="tab:orange", alpha=0.15, label="last quarter")
        state = "plateau" if summary["plateaued"] else "still moving"
        ax.set_title(f"{arm}: {summary['change']:+.3f} in the last quarter ({state})", fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("held-out mean Dice", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _dose(arm: Mapping[str, object]) -> tuple[str, float] | None:
    options = arm.get("options", {})
    for key in WEIGHT_OPTIONS:
        if key in options:
            return key, float(options[key])
    return None


def plot_dose_response(results: Mapping[str, object], metrics: Sequence[str] = DOSE_METRICS,
                       title: str = "") -> Figure:
    """Paired difference (arm - baseline: mean and its interval, from ``results["verdicts"]``)
    against the arm's weight on a log axis; a line per (regime, method and encoding); a panel
    per metric, stacked. Filled markers: a verdict (better or worse); open: no evidence."""
    arms, rows = results["arms"], results["verdicts"]
    lines: dict[str, list[tuple[float, dict]]] = {}
    for row in rows:
        dose = _dose(arms[row["arm"]])
        if dose is None or row["metric"] not in metrics:
            continue
        arm = arms[row["arm"]]
        regime = row["arm"].split("/")[0] if "/" in row["arm"] else arm.get("regime", "")
        label = f"{regime}: {arm['method']}" + (f" {arm['options']['encoding']}" if "encoding" in arm["options"] else "")
        lines.setdefault(f"{label} ({dose[0]})", []).append((dose[1], row))
    if not lines:
        raise ValueError("results hold no arm with a weight option (lambda_adv or mae_weight)")
    shown = [m for m in metrics if any(row["metric"] == m for points in lines.values() for _, row in points)]
    legend_rows = -(-len(lines) // 2)
    height = 2.6 * len(shown) + 0.9 + 0.2 * legend_rows
    fig, axes = plt.subplots(len(shown), 1, figsize=(8.0, height), squeeze=False, sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[:, 0], shown):
        for index, (label, points) in enumerate(sorted(lines.items())):
            points = sorted((dose, row) for dose, row in points if row["metric"] == metric)
            if not points:
                continue
            x = np.array([dose for dose, _ in points]) * (1.0 + 0.06 * (index - len(lines) / 2))  # dodge
            mean = np.array([math.nan if row["mean"] is None else row["mean"] for _, row in points])
            low = np.array([math.nan if row["interval"][0] is None else row["interval"][0] for _, row in points])
            high = np.array([math.nan if row["interval"][1] is None else row["interval"][1] for _, row in points])
            colour = colours[index % len(colours)]
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], color=colour, marker="o", markersize=0,
                        capsize=2, linewidth=1.2, label=label)
            for xi, mi, (_, row) in zip(x, mean, points):
                decided = row["outcome"] in (BETTER, WORSE)
                ax.plot(xi, mi, marker="o", markersize=5, color=colour, markerfacecolor=colour if decided else "white")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        direction = "higher" if higher_is_better(metric) else "lower"
        ax.set_title(f"{metric}: arm - baseline ({direction} is better); bars: the verdict's interval", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("weight of the adversarial term (lambda_adv on the mean CE; l_mae weight for SegAN)",
                           fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, (0.05 + 0.17 * legend_rows) / height, 1, 1))
    return fig


def plot_label_curve(results: Mapping[str, object], metric: str = "dice", title: str = "") -> Figure:
    """Held-out ``metric`` (seed mean, 95 % t interval) against the labelled fraction (log axis), one
    line per arm kind (the part of the arm name after the ``/``), the full-label ceiling dashed."""
    arms = results["arms"]
    kinds: dict[str, list[tuple[float, list[float]]]] = {}
    ceiling = None
    for name, per_seed in results["runs"].items():
        values = [run["scores"]["mean"][metric] for run in per_seed.values()]
        fraction = arms[name].get("labelled_fraction")
        if fraction is None:
            ceiling = (float(np.mean(values)), mean_interval(values))
            continue
        kinds.setdefault(name.split("/")[-1], []).append((fraction, values))
    if not kinds:
        raise ValueError("results hold no arm with a labelled fraction")
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for index, (kind, points) in enumerate(sorted(kinds.items())):
        points.sort()
        x = np.array([f for f, _ in points]) * (1.0 + 0.04 * (index - len(kinds) / 2))
        mean = np.array([np.mean(v) for _, v in points])
        bounds = [mean_interval(v) for _, v in points]
        low = np.array([math.nan if b[0] is None else b[0] for b in bounds])
        high = np.array([math.nan if b[1] is None else b[1] for b in bounds])
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker="o", markersize=4, capsize=2, label=kind)
    if ceiling is not None:
        ax.axhline(ceiling[0], color="black", linestyle="--", linewidth=1, label="all labels (ceiling)")
        if ceiling[1][0] is not None:
            ax.axhspan(ceiling[1][0], ceiling[1][1], color="black", alpha=0.08)
    fractions = sorted({f for points in kinds.values() for f, _ in points})
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"1/{round(1 / f)}" if f < 1 else "1" for f in fractions])
    ax.xaxis.set_minor_formatter(NullFormatter())  # the log axis's own minor labels (3x10^-2, ...) clutter it
    ax.set_xlabel("labelled fraction of the training images", fontsize=9)
    ax.set_ylabel(f"held-out mean {metric}", fontsize=9)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric} against the labelled fraction (mean over seeds, 95 % interval)", fontsize=9)
    fig.tight_layout()
    return fig
