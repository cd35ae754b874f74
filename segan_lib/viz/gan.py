"""Plots for GANs, each returning a matplotlib Figure: real vs generated 2-D samples, samples
over training, grids of generated masks, the losses of both players, and one training
snapshot (the picture behind :func:`segan_lib.gan_widgets.snapshot_scrubber`).

New figures are pyplot figures (``plt.show()`` draws them in a notebook);
:func:`plot_snapshot` also draws into a given ``fig`` (a widget's own pyplot-free Figure).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

LOSS_LABELS = {"loss_discriminator": "discriminator loss", "loss_generator": "generator loss"}
PLAYER_LOSSES = ("loss_discriminator", "loss_generator")  # what GANStrategy logs
REAL_STYLE = {"s": 4, "c": "tab:blue", "alpha": 0.25, "label": "real"}
FAKE_STYLE = {"s": 4, "c": "tab:orange", "alpha": 0.5, "label": "generated"}


def _points(name: str, x: torch.Tensor | np.ndarray) -> np.ndarray:
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got shape {x.shape}")
    return x


def _masks(name: str, x: torch.Tensor | np.ndarray) -> np.ndarray:
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]  # (N, 1, H, W) -> (N, H, W)
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got shape {x.shape}")
    return x


def draw_points(ax: Axes, real: torch.Tensor | None, fake: torch.Tensor | None, *, extent: float = 3.0,
                title: str | None = None) -> None:
    """Scatter ``real (N, 2)`` (blue) and ``fake (M, 2)`` (orange) on ``ax``, square limits ``±extent``."""
    if real is not None:
        ax.scatter(*_points("real", real).T, **REAL_STYLE)
    if fake is not None:
        ax.scatter(*_points("fake", fake).T, **FAKE_STYLE)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_real_vs_generated(real: torch.Tensor, fake: torch.Tensor, *, extent: float = 3.0,
                           title: str = "real vs generated") -> Figure:
    """One panel: real points ``(N, 2)`` and generated points ``(M, 2)``."""
    fig = plt.figure(figsize=(4, 4))
    ax = fig.add_subplot()
    draw_points(ax, real, fake, extent=extent, title=title)
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


def plot_samples_over_training(snapshots: Sequence[Mapping], real: torch.Tensor | None = None, *,
                               n_panels: int = 5, extent: float = 3.0, coverage=None) -> Figure:
    """``n_panels`` snapshots (evenly spaced, last included) of 2-D samples over the real data.

    ``snapshots``: dicts with ``"step"`` and ``"samples" (N, 2)`` (from ``GANSnapshots``).
    ``coverage``: optional function ``samples -> dict`` with ``"modes_covered"``,
    ``"n_modes"``, ``"high_quality"`` (e.g. ``GaussianMixture2D.coverage``), shown in titles.
    """
    if len(snapshots) == 0:
        raise ValueError("snapshots must hold at least one snapshot, got none")
    n = min(n_panels, len(snapshots))
    picks = sorted({round(i * (len(snapshots) - 1) / max(n - 1, 1)) for i in range(n)})
    fig = plt.figure(figsize=(2.4 * len(picks), 2.6))
    for k, index in enumerate(picks):
        snap = snapshots[index]
        title = f"step {snap['step']}"
        if coverage is not None:
            c = coverage(snap["samples"])
            title += f"\n{c['modes_covered']:.0f}/{c['n_modes']:.0f} modes, {c['high_quality']:.0%} good"
        draw_points(fig.add_subplot(1, len(picks), k + 1), real, snap["samples"], extent=extent, title=title)
    fig.tight_layout()
    return fig


def draw_mask_grid(fig: Figure, masks: torch.Tensor, *, n_cols: int = 8, title: str | None = None,
                   subplot: tuple[int, int, int] | None = None) -> None:
    """Tile ``masks (N, 1, H, W)`` (values in [0, 1]) into one gray image on ``fig``."""
    grid = mask_grid_image(masks, n_cols=n_cols)
    ax = fig.add_subplot(*(subplot or (1, 1, 1)))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def mask_grid_image(masks: torch.Tensor, *, n_cols: int = 8, pad: int = 1) -> np.ndarray:
    """``masks (N, 1, H, W)`` tiled row by row into ``(rows*(H+pad)+pad, cols*(W+pad)+pad)``,
    separated by lines of value 0.5."""
    x = _masks("masks", masks)
    n, h, w = x.shape
    cols = max(1, min(n_cols, n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = x[i]
    return grid


def plot_mask_grid(masks: torch.Tensor, *, n_cols: int = 8, title: str | None = None) -> Figure:
    """A grid of masks ``(N, 1, H, W)``, ``n_cols`` per row."""
    x = _masks("masks", masks)
    cols = max(1, min(n_cols, len(x)))
    rows = math.ceil(len(x) / cols)
    fig = plt.figure(figsize=(1.1 * cols, 1.1 * rows + (0.3 if title else 0)))
    draw_mask_grid(fig, masks, n_cols=n_cols, title=title)
    fig.tight_layout()
    return fig


def draw_losses(ax: Axes, history: Mapping[str, Sequence[float]], *, keys: Sequence[str] = PLAYER_LOSSES,
                upto_step: int | None = None) -> None:
    """Curves of ``history[key]`` against ``history["step"]``; a vertical line at ``upto_step``."""
    if "step" not in history:
        raise ValueError(f"history must have a 'step' list, got keys {sorted(history)}")
    steps = np.asarray(history["step"], dtype=float)
    for key in keys:
        if key not in history:
            raise ValueError(f"history has no {key!r}; it has {sorted(history)}")
        if len(history[key]) != len(steps):
            raise ValueError(f"history[{key!r}] has {len(history[key])} values but history['step'] has {len(steps)}")
        ax.plot(steps, np.asarray(history[key], dtype=float), label=LOSS_LABELS.get(key, key))
    if upto_step is not None:
        ax.axvline(upto_step, color="k", lw=1, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)


def plot_gan_losses(history: Mapping[str, Sequence[float]], *, keys: Sequence[str] = PLAYER_LOSSES,
                    title: str = "losses of both players") -> Figure:
    """The discriminator's and the generator's losses over training (a ``History`` or dict of lists).

    At the game's equilibrium (D = 1/2 everywhere) the non-saturating losses are
    ``loss_discriminator = 2 log 2 ~ 1.386`` and ``loss_generator = log 2 ~ 0.693``: a dotted
    line marks each (meaningful for the "vanilla" / "nonsaturating" objectives).
    """
    fig = plt.figure(figsize=(6, 3))
    ax = fig.add_subplot()
    draw_losses(ax, history, keys=keys)
    ax.axhline(2 * math.log(2), color="tab:blue", lw=0.8, ls=":", label="D = 1/2: 2 log 2")
    ax.axhline(math.log(2), color="tab:orange", lw=0.8, ls=":", label="D = 1/2: log 2")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def snapshots_history(snapshots: Sequence[Mapping]) -> dict[str, list[float]]:
    """The losses in ``snapshots`` as a history: ``{"step": [...], "loss_discriminator": [...], ...}``.

    The keys are those of the first snapshot's ``"logs"``; a later snapshot without one gets NaN.
    No snapshots give ``{"step": []}``.
    """
    history: dict[str, list[float]] = {"step": [float(s["step"]) for s in snapshots]}
    for key in snapshots[0]["logs"] if snapshots else ():
        history[key] = [float(s["logs"].get(key, math.nan)) for s in snapshots]
    return history


def plot_snapshot(snapshots: Sequence[Mapping], index: int, *, real: torch.Tensor | None = None,
                  extent: float = 3.0, n_masks: int = 16, fig: Figure | None = None) -> Figure:
    """Snapshot ``index``: its samples (left) and both losses up to the end (right, line at its step).

    2-D samples are drawn over ``real`` (and over the discriminator's ``sigmoid(D(x))`` when
    the snapshot has a ``"d_grid"``); mask samples ``(N, 1, H, W)`` as a grid of ``n_masks``.
    """
    if not 0 <= index < len(snapshots):
        raise ValueError(f"index must be in [0, {len(snapshots) - 1}], got {index}")
    snap = snapshots[index]
    fig = fig if fig is not None else plt.figure(figsize=(9, 3.6))
    fig.clear()
    title = f"step {snap['step']}  (snapshot {index + 1} of {len(snapshots)})"
    samples = snap["samples"]
    if samples.dim() == 2:
        ax = fig.add_subplot(1, 2, 1)
        if "d_grid" in snap:
            e = snap["grid_extent"]
            image = ax.imshow(snap["d_grid"].numpy(), origin="lower", extent=(-e, e, -e, e), cmap="RdBu",
                              vmin=0.0, vmax=1.0, alpha=0.6)
            fig.colorbar(image, ax=ax, fraction=0.046, label="D(x)")
        draw_points(ax, real, samples, extent=extent, title=title)
    else:
        cols = int(math.ceil(math.sqrt(min(n_masks, len(samples)))))
        draw_mask_grid(fig, samples[:n_masks], n_cols=cols, title=title, subplot=(1, 2, 1))
    draw_losses(fig.add_subplot(1, 2, 2), snapshots_history(snapshots), upto_step=snap["step"])
    fig.tight_layout()
    return fig
