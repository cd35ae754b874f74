"""Loss landscapes: loss and gradient against the predicted probability of the true class.

The curves are computed with the library's own pixel losses (:mod:`segan_lib.losses`) and
autograd, on small synthetic logits built from the explorer's parameters, so the pictures
show the real losses, not a re-derivation of them.

**The explorer's model.** Cross-entropy and focal loss are per-pixel losses, but soft Dice
is a set-level loss: its value and gradient depend on every pixel at once. So every curve is
drawn for one binary image (one sigmoid channel, ``K = 1``) of ``N`` pixels, of which
``n_fg = max(1, round(f N))`` are foreground (``f`` = foreground fraction), and in which
*every* pixel gives its true class the same predicted probability ``p``: a foreground pixel
predicts ``sigma(x) = p`` (logit ``x = log(p / (1 - p))``), a background pixel predicts
``sigma(x) = 1 - p`` (logit ``-x``). The x-axis is that ``p = p_t``.

* **loss**: the library loss of that image (``reduction="mean"``).
* **gradient magnitude**: ``N |dL/dx_i|`` for one *foreground* pixel ``i`` (autograd). The
  factor ``N`` undoes the ``1/N`` of the mean, so a per-pixel loss shows its per-pixel
  gradient, e.g. ``1 - p`` for cross-entropy, and Dice's gradient can be compared with it.

Closed forms under this model (``n_bg = N - n_fg``, ``s`` = Dice smoothing):

* CE: ``-log p``.
* focal (Lin et al., ICCV 2017): ``(f' alpha + (1 - f')(1 - alpha)) (1 - p)^gamma (-log p)``
  with ``f' = n_fg / N``.
* soft Dice: ``1 - (2 n_fg p + s) / (n_fg p + n_bg (1 - p) + n_fg + s)``.
* Dice + CE: the sum of the two (weights 1 and 1).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from segan_lib._checks import check_positive
from segan_lib.losses import cross_entropy, dice_ce_loss, focal_loss, soft_dice_loss

EXPLORER_PIXELS = 100  # N: the explorer's image is a strip of 1 x 100 pixels
LOSS_LABELS = {"ce": "cross-entropy", "focal": "focal", "dice": "soft Dice", "dice_ce": "Dice + CE"}
LOSS_COLOURS = {"ce": "tab:blue", "focal": "tab:orange", "dice": "tab:green", "dice_ce": "tab:red"}


@dataclass(frozen=True)
class LossExplorerParams:
    """The explorer's five knobs.

    gamma: focal focusing parameter (>= 0; 0 = no down-weighting).
    alpha: focal weight of the foreground class, ``0 < alpha < 1`` (background gets ``1 - alpha``).
    smooth: soft Dice smoothing ``s`` (>= 0), added to numerator and denominator.
    fg_fraction: foreground fraction ``f`` of the image, ``0 < f < 1``.
    p_true: the marked point: predicted probability of the true class, ``0 < p < 1``.
    """

    gamma: float = 2.0
    alpha: float = 0.25
    smooth: float = 1.0
    fg_fraction: float = 0.1
    p_true: float = 0.7

    def __post_init__(self) -> None:
        check_positive("gamma", self.gamma, allow_zero=True)
        check_positive("smooth", self.smooth, allow_zero=True)
        for name in ("alpha", "fg_fraction", "p_true"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")


def explorer_image(p_true: float, fg_fraction: float, num_pixels: int = EXPLORER_PIXELS
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The explorer's image: logits ``(1, 1, 1, N)`` float64 and target ``(1, 1, N)`` int64.

    The first ``n_fg = max(1, round(f N))`` pixels are foreground with logit ``log(p/(1-p))``;
    the rest are background with the opposite logit, so every pixel has ``p_t = p``.
    """
    if not 0.0 < p_true < 1.0:
        raise ValueError(f"p_true must be strictly between 0 and 1, got {p_true!r}")
    if not 0.0 < fg_fraction < 1.0:
        raise ValueError(f"fg_fraction must be strictly between 0 and 1, got {fg_fraction!r}")
    if num_pixels < 2:
        raise ValueError(f"num_pixels must be >= 2, got {num_pixels!r}")
    n_fg = min(num_pixels - 1, max(1, round(fg_fraction * num_pixels)))
    target = torch.zeros(1, 1, num_pixels, dtype=torch.int64)
    target[..., :n_fg] = 1
    logit = math.log(p_true / (1.0 - p_true))
    sign = target.to(torch.float64) * 2.0 - 1.0  # +1 foreground, -1 background
    logits = (sign * logit).unsqueeze(1)  # (1, 1, 1, N)
    return logits, target


def _named_losses(params: LossExplorerParams) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    return {
        "ce": lambda x, t: cross_entropy(x, t),
        "focal": lambda x, t: focal_loss(x, t, gamma=params.gamma, alpha=params.alpha),
        "dice": lambda x, t: soft_dice_loss(x, t, smooth=params.smooth),
        "dice_ce": lambda x, t: dice_ce_loss(x, t, smooth=params.smooth),
    }


def loss_curves(params: LossExplorerParams, p_true: np.ndarray | None = None, *,
                num_pixels: int = EXPLORER_PIXELS) -> dict[str, np.ndarray]:
    """Loss and foreground-pixel gradient magnitude of every pixel loss against ``p_t``.

    Args:
        params: the explorer's knobs (``params.p_true`` is not used here; pass it as
            ``p_true=np.array([params.p_true])`` to evaluate the marked point).
        p_true: ``(P,)`` probabilities of the true class in ``(0, 1)``; default 99 points
            from 0.01 to 0.99.
        num_pixels: ``N``, pixels in the explorer's image (see the module docstring).

    Returns:
        ``{"p": (P,), name: (P,) loss, name + "_grad": (P,) N |dL/dx_i|}`` for ``name`` in
        ``"ce", "focal", "dice", "dice_ce"``; float64 NumPy arrays.
    """
    p_values = np.linspace(0.01, 0.99, 99) if p_true is None else np.asarray(p_true, dtype=np.float64)
    if p_values.ndim != 1 or p_values.size == 0:
        raise ValueError(f"p_true must be a non-empty 1-D array, got shape {p_values.shape}")
    curves: dict[str, np.ndarray] = {"p": p_values}
    for name, loss_fn in _named_losses(params).items():
        values, grads = np.empty_like(p_values), np.empty_like(p_values)
        for j, p in enumerate(p_values):
            logits, target = explorer_image(float(p), params.fg_fraction, num_pixels)
            logits.requires_grad_(True)
            loss = loss_fn(logits, target)
            (grad,) = torch.autograd.grad(loss, logits)  # (1, 1, 1, N)
            values[j] = loss.item()
            grads[j] = num_pixels * grad[0, 0, 0, 0].abs().item()  # pixel 0 is foreground
        curves[name], curves[name + "_grad"] = values, grads
    return curves


def plot_loss_landscape(params: LossExplorerParams, *, fig: Figure | None = None,
                        num_pixels: int = EXPLORER_PIXELS) -> Figure:
    """Draw loss (left) and ``N |dL/dx_fg|`` (right) against ``p_t`` for all pixel losses.

    The point ``params.p_true`` is marked on every curve. Draws into ``fig`` (cleared
    first) when given, else into a new pyplot figure; returns the figure.
    """
    if fig is None:
        fig = plt.figure(figsize=(10, 3.8))
    fig.clear()
    curves = loss_curves(params, num_pixels=num_pixels)
    marked = loss_curves(params, np.array([params.p_true]), num_pixels=num_pixels)
    ax_loss, ax_grad = fig.subplots(1, 2)
    for name, label in LOSS_LABELS.items():
        colour = LOSS_COLOURS[name]
        for ax, key in ((ax_loss, name), (ax_grad, name + "_grad")):
            ax.plot(curves["p"], curves[key], color=colour, label=f"{label}: {marked[key][0]:.3f}")
            ax.plot([params.p_true], marked[key], "o", color=colour)
    for ax, title in ((ax_loss, "loss"), (ax_grad, r"gradient $N\,|\partial L/\partial x_i|$, one fg pixel")):
        ax.axvline(params.p_true, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(r"predicted probability of the true class $p_t$")
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="best", title=f"at p = {params.p_true:.2f}", title_fontsize=8)
    ax_loss.set_ylim(top=min(5.0, float(max(curves[n].max() for n in LOSS_LABELS)) * 1.05))
    n_fg = min(num_pixels - 1, max(1, round(params.fg_fraction * num_pixels)))
    fig.suptitle(
        f"gamma={params.gamma:g}, alpha={params.alpha:g}, smooth={params.smooth:g}, "
        f"foreground {n_fg}/{num_pixels} pixels", fontsize=10)
    fig.tight_layout()
    return fig


def plot_focal_down_weighting(gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)) -> Figure:
    """Focal loss against ``p_t`` for several ``gamma`` (after Lin et al., ICCV 2017, Fig. 1).

    Left: ``FL(p_t) = -(1 - p_t)^gamma log(p_t)`` (``alpha=None``, multi-class form, computed
    with the library's ``focal_loss`` on two-class logits). Right: the ratio ``FL / CE =
    (1 - p_t)^gamma`` on a log scale: how much less an easy (large ``p_t``) pixel counts.
    """
    p_values = np.linspace(0.01, 0.99, 99)
    logits, target = _two_class_logits(p_values)
    ce = cross_entropy(logits, target, reduction="none").flatten().numpy()
    fig, (ax_loss, ax_ratio) = plt.subplots(1, 2, figsize=(10, 3.8))
    for gamma in gammas:
        fl = focal_loss(logits, target, gamma=gamma, alpha=None, reduction="none").flatten().numpy()
        ax_loss.plot(p_values, fl, label=f"gamma = {gamma:g}")
        ax_ratio.semilogy(p_values, fl / ce, label=f"gamma = {gamma:g}")
    ax_loss.set_title("focal loss (gamma = 0 is cross-entropy)")
    ax_ratio.set_title("focal / cross-entropy")
    for ax in (ax_loss, ax_ratio):
        ax.set_xlabel(r"$p_t$")
        ax.axvspan(0.6, 1.0, color="grey", alpha=0.15)
        ax.legend(fontsize=8)
    ax_loss.text(0.62, ax_loss.get_ylim()[1] * 0.9, "well-classified", fontsize=8)
    fig.tight_layout()
    return fig


def _two_class_logits(p_true: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class logits ``(1, 2, 1, P)`` whose softmax gives class 1 probability ``p_true``."""
    p = torch.as_tensor(p_true, dtype=torch.float64)
    logits = torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))]).reshape(1, 2, 1, -1)
    target = torch.ones(1, 1, p.numel(), dtype=torch.int64)  # every pixel is class 1
    return logits, target
