"""Pixel-wise segmentation losses: cross-entropy, soft Dice, focal, and Dice + cross-entropy.

Conventions shared by every loss in this file:

* ``logits`` are raw scores ``(B, K, H, W)``; ``target`` is int64 ``(B, H, W)``.
  ``K == 1`` is binary: ``p = sigmoid(x)`` is the foreground probability and ``target`` holds
  0/1. ``K >= 2`` takes a softmax over dim 1 and ``target`` holds ``0..K-1``.
* A pixel whose target equals ``ignore_index`` counts nowhere: it is left out of every sum
  and out of the number a mean divides by, so its logits get exactly zero gradient.
* ``reduction="mean"`` over a batch with no valid pixel gives 0 (PyTorch gives NaN), so a
  fully ignored crop does not stop training.
* Half-precision logits are upcast to float32; float64 stays float64.
* Nothing here reads a value back to the host except the input checks of
  :mod:`segan_lib._checks`, which the engine turns off with ``value_checks(False)``.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from segan_lib._checks import (
    check_choice, check_logits, check_mask, check_pair, check_positive, value_checks, value_checks_enabled,
)

Reduction = Literal["mean", "sum", "none"]
PixelLoss = Callable[[Tensor, Tensor], Tensor]
_REDUCTIONS = ("mean", "sum", "none")


def _prepare(logits: object, target: object, ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Validate; return (logits, target with ignored pixels set to 0, valid mask (B, H, W) bool)."""
    logits = check_logits("logits", logits)
    if logits.shape[1] < 1:
        raise ValueError(f"logits must have at least 1 channel (dim 1), got shape {tuple(logits.shape)}")
    target = check_mask("target", target, max(logits.shape[1], 2), ignore_index)
    check_pair("logits", logits, "target", target)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if ignore_index is None:
        return logits, target, torch.ones_like(target, dtype=torch.bool)
    valid = target != ignore_index  # (B, H, W)
    return logits, torch.where(valid, target, torch.zeros_like(target)), valid


def _class_vector(name: str, value: Tensor | Sequence[float], num_classes: int, like: Tensor) -> Tensor:
    """A per-class vector ``(num_classes,)`` of non-negative numbers, on ``like``'s device and dtype."""
    vector = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if vector.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},) (one entry per class), got {tuple(vector.shape)}")
    if value_checks_enabled() and not bool((torch.isfinite(vector) & (vector >= 0)).all()):
        raise ValueError(f"{name} must hold finite values >= 0, got {vector.tolist()}")
    return vector


def _reduce(per_pixel: Tensor, denominator: Tensor, reduction: str) -> Tensor:
    """``none``: the map itself; ``sum``: its sum; ``mean``: sum / denominator (0 if nothing counts)."""
    if reduction == "none":
        return per_pixel
    total = per_pixel.sum()
    if reduction == "sum":
        return total
    # where the denominator is 0 every term was 0 too; dividing by 1 then keeps gradients finite
    return total / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def cross_entropy(
    logits: Tensor, target: Tensor, *, weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = 255, reduction: Reduction = "mean",
) -> Tensor:
    """Pixel-wise cross-entropy (binary cross-entropy with logits when ``K == 1``).

    Per valid pixel ``i`` with true class ``t_i`` and class weight ``w_t`` (all 1 without ``weight``):
    ``K >= 2``: ``l_i = -w_{t_i} log softmax(z_i)[t_i]``;
    ``K == 1``: ``l_i = -w_{t_i} [t_i log p_i + (1 - t_i) log(1 - p_i)]``, ``p_i = sigmoid(x_i)``.
    ``mean`` = ``sum_i l_i / sum_i w_{t_i}`` over valid pixels (PyTorch's convention),
    ``sum`` = ``sum_i l_i``, ``none`` = the map ``(B, H, W)`` with 0 at ignored pixels.

    Args:
        logits: ``(B, K, H, W)`` raw scores.
        target: ``(B, H, W)`` int64 labels in ``0..max(K, 2) - 1`` or ``ignore_index``.
        weight: per-class weights ``(max(K, 2),)``; for ``K == 1`` ``[w_background, w_foreground]``.

    Gradient (``mean``, N = ``sum_i w_{t_i}``): ``dL/dz_{k,i} = w_{t_i} (p_{k,i} - [k == t_i]) / N``;
    binary ``dL/dx_i = w_{t_i} (sigmoid(x_i) - t_i) / N``.
    """
    check_choice("reduction", reduction, _REDUCTIONS)
    logits, target, valid = _prepare(logits, target, ignore_index)
    if logits.shape[1] == 1:
        scores = logits[:, 0]  # (B, H, W)
        per_pixel = F.binary_cross_entropy_with_logits(scores, target.to(scores.dtype), reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, target, reduction="none")  # (B, H, W)
    pixel_weight = valid.to(per_pixel.dtype)  # (B, H, W)
    if weight is not None:
        pixel_weight = pixel_weight * _class_vector("weight", weight, max(logits.shape[1], 2), per_pixel)[target]
    return _reduce(per_pixel * pixel_weight, pixel_weight.sum(), reduction)


def soft_dice_loss(
    logits: Tensor, target: Tensor, *, smooth: float = 1.0, ignore_index: int | None = 255,
    include_background: bool = True, reduction: Reduction = "mean",
) -> Tensor:
    """Soft Dice loss, the batch taken as one volume (like MONAI ``DiceLoss(batch=True)``).

    With probabilities ``p_{k,i}`` (softmax over classes; for ``K == 1`` the single class is the
    foreground, ``p_i = sigmoid(x_i)``), one-hot targets ``g_{k,i}`` and ``i`` running over the
    valid pixels of the whole batch (sums over axes B, H, W; no squares, unlike Milletari et
    al., 3DV 2016), for each class ``k``::

        L_k = 1 - (2 sum_i p_{k,i} g_{k,i} + s) / (sum_i p_{k,i} + sum_i g_{k,i} + s)

    ``s = smooth`` is added to numerator and denominator. ``mean`` (default) averages ``L_k`` over
    the classes, ``sum`` adds them, ``none`` returns the per-class vector ``(C,)``: ``C = K``, or
    ``K - 1`` with ``include_background=False`` (drops class 0; multi-class only, ignored for
    ``K == 1`` whose one channel is already the foreground).

    A class absent from the batch (``sum g_k = 0``) has ``L_k = 1 - s / (sum p_k + s)``: 0 when
    it is also predicted absent, rising towards 1 as probability mass goes to it; it still
    counts in the mean. With ``s = 0`` such a class costs 1 (NaN if ``sum p_k`` is 0 as well).

    Gradient, binary, one class: with ``N = 2 sum p g + s`` and ``D = sum p + sum g + s``,
    ``dL/dp_i = (N - 2 g_i D) / D^2`` and ``dL/dx_i = p_i (1 - p_i) (N - 2 g_i D) / D^2``.
    Multi-class ``mean``: ``dL/dz_{j,i} = sum_k (N_k - 2 g_{k,i} D_k) / (C D_k^2) * p_{k,i} ([k == j] - p_{j,i})``.
    """
    check_choice("reduction", reduction, _REDUCTIONS)
    check_positive("smooth", smooth, allow_zero=True)
    logits, target, valid = _prepare(logits, target, ignore_index)
    num_channels = logits.shape[1]
    valid = valid[:, None].to(logits.dtype)  # (B, 1, H, W)
    if num_channels == 1:
        probs = torch.sigmoid(logits)  # (B, 1, H, W) foreground probability
        one_hot = target[:, None].to(logits.dtype)  # (B, 1, H, W)
    else:
        probs = logits.softmax(dim=1)  # (B, K, H, W)
        one_hot = F.one_hot(target, num_channels).permute(0, 3, 1, 2).to(logits.dtype)  # (B, K, H, W)
        if not include_background:
            probs, one_hot = probs[:, 1:], one_hot[:, 1:]  # (B, K-1, H, W)
    probs, one_hot = probs * valid, one_hot * valid
    axes = (0, 2, 3)  # batch and space: one volume per class
    intersection = (probs * one_hot).sum(axes)  # (C,)
    denominator = probs.sum(axes) + one_hot.sum(axes)  # (C,)
    per_class = 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)
    if reduction == "none":
        return per_class
    return per_class.mean() if reduction == "mean" else per_class.sum()


def focal_loss(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0,
    alpha: float | Tensor | Sequence[float] | None | Literal["auto"] = "auto",
    ignore_index: int | None = 255, reduction: Reduction = "mean",
) -> Tensor:
    """Focal loss of Lin, Goyal, Girshick, He and Dollar (ICCV 2017), per pixel.

    ``FL_i = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the probability of the true class:
    ``K == 1``: ``p_t = sigmoid(y_i x_i)``, ``y_i = 2 t_i - 1`` (the paper's sigmoid form);
    ``K >= 2``: ``p_t = softmax(z_i)[t_i]``. The factor ``(1 - p_t)^gamma`` shrinks the loss of
    easy, well-classified pixels (``p_t`` near 1); ``gamma = 0`` with no ``alpha`` is cross-entropy.
    Dice is not a special case of this loss.

    ``alpha``: ``"auto"`` (default) = 0.25 for ``K == 1`` (the paper's best, with gamma 2) and
    None for ``K >= 2``; None = no weighting (``alpha_t = 1``); a float ``a`` in [0, 1] gives
    ``alpha_t = a`` for foreground classes and ``1 - a`` for class 0 (MONAI's softmax convention;
    binary: ``a`` for positives, ``1 - a`` for negatives as in the paper); a vector of
    ``max(K, 2)`` values gives ``alpha_t = alpha[t_i]``.
    ``mean`` divides ``sum_i FL_i`` by the number of valid pixels (not by ``sum alpha_t``, unlike
    a weighted ``cross_entropy``), ``sum`` adds, ``none`` returns ``(B, H, W)`` with 0 at ignored pixels.

    Gradient of ``FL_i`` (before the mean): binary
    ``dFL/dx = alpha_t y (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1)``; softmax
    ``dFL/dz_j = alpha_t ([j == t] - p_j) (1 - p_t)^(gamma - 1) (gamma p_t log p_t + p_t - 1)``.
    """
    check_choice("reduction", reduction, _REDUCTIONS)
    check_positive("gamma", gamma, allow_zero=True)
    logits, target, valid = _prepare(logits, target, ignore_index)
    num_channels = logits.shape[1]
    if num_channels == 1:
        sign = 2.0 * target.to(logits.dtype) - 1.0  # y in {-1, +1}, (B, H, W)
        log_pt = F.logsigmoid(sign * logits[:, 0])  # (B, H, W)
        one_minus_pt = torch.exp(F.logsigmoid(-sign * logits[:, 0]))  # exact even when p_t ~ 1
    else:
        log_pt = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]  # (B, H, W)
        one_minus_pt = -torch.expm1(log_pt)
    # the clamp keeps the gradient of (1 - p_t)^gamma finite for gamma < 1 when p_t rounds to 1
    modulation = one_minus_pt.clamp_min(torch.finfo(logits.dtype).tiny).pow(gamma)
    per_pixel = -modulation * log_pt * valid.to(logits.dtype)
    if isinstance(alpha, str) and alpha == "auto":
        alpha = 0.25 if num_channels == 1 else None
    if alpha is not None:
        per_pixel = per_pixel * _alpha_vector(alpha, max(num_channels, 2), logits)[target]
    return _reduce(per_pixel, valid.sum(), reduction)


def _alpha_vector(alpha: float | Tensor | Sequence[float], num_classes: int, like: Tensor) -> Tensor:
    """Per-class alpha ``(num_classes,)``: a float ``a`` becomes ``[1 - a, a, ..., a]``."""
    if isinstance(alpha, (float, int)) and not isinstance(alpha, bool):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], None, 'auto' or a per-class vector, got {alpha!r}")
        vector = torch.full((num_classes,), float(alpha), dtype=like.dtype, device=like.device)
        vector[0] = 1.0 - alpha  # built on the device: no host-to-device copy (a GPU sync) per call
        return vector
    if isinstance(alpha, str):
        raise ValueError(f"alpha must be 'auto', None, a float or a per-class vector, got {alpha!r}")
    return _class_vector("alpha", alpha, num_classes, like)


def dice_ce_loss(
    logits: Tensor, target: Tensor, *, dice_weight: float = 1.0, ce_weight: float = 1.0,
    smooth: float = 1.0, ignore_index: int | None = 255,
) -> Tensor:
    """``dice_weight * soft_dice_loss + ce_weight * cross_entropy``, both with ``reduction="mean"``.

    Shapes and conventions as in the two parts (like MONAI ``DiceCELoss(batch=True)``): a 0-d
    tensor. CE pulls every pixel towards its class; Dice balances the classes by their overlap.
    Gradient: the same weighted sum of the two parts' gradients.
    """
    check_positive("dice_weight", dice_weight, allow_zero=True)
    check_positive("ce_weight", ce_weight, allow_zero=True)
    dice = soft_dice_loss(logits, target, smooth=smooth, ignore_index=ignore_index)
    with value_checks(False):  # the inputs were checked just above: no second host sync
        ce = cross_entropy(logits, target, ignore_index=ignore_index)
    return dice_weight * dice + ce_weight * ce


PIXEL_LOSSES: dict[str, PixelLoss] = {
    "ce": cross_entropy,
    "dice": soft_dice_loss,
    "focal": focal_loss,
    "dice_ce": dice_ce_loss,
}


def get_pixel_loss(name: str, **kwargs: object) -> PixelLoss:
    """The loss ``PIXEL_LOSSES[name]`` with its keyword options fixed: ``loss(logits, target)``.

    Raises ``ValueError`` for an unknown name or an option that loss does not take, e.g.
    ``get_pixel_loss("focal", gamma=1.0)`` works, ``get_pixel_loss("ce", gamma=1.0)`` raises.
    """
    check_choice("name", name, tuple(PIXEL_LOSSES))
    loss_fn = PIXEL_LOSSES[name]
    accepted = [p.name for p in inspect.signature(loss_fn).parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"pixel loss {name!r} takes the options {accepted}, got unknown {unknown}")
    return functools.partial(loss_fn, **kwargs)
