"""The losses of semi-supervised adversarial segmentation (Hung et al., BMVC 2018).

Hung, Tsai, Liou, Lin and Yang, "Adversarial Learning for Semi-Supervised Semantic
Segmentation", BMVC 2018 (arXiv 1802.07934). A fully-convolutional discriminator ``D`` gives a
confidence *logit* ``d_i`` per pixel ``i`` of a label map (``segan_lib.models.
ConfidenceMapDiscriminator``); ``sigma(d_i)`` is its belief that the pixel's label distribution
comes from the ground truth. Three losses are built from it:

* :func:`spatial_bce_loss` -- the discriminator's loss (truth -> 1, prediction -> 0) and the
  segmentor's adversarial term ``L_adv`` (prediction -> 1), a binary cross-entropy per pixel;
* :func:`self_training_loss` -- ``L_semi``, the cross-entropy against the segmentor's own
  argmax at the pixels whose confidence exceeds ``T_semi``;
* :func:`softmax_confidence` -- the segmentor's own max class probability, the confidence of
  plain self-training (no discriminator), to compare against ``sigma(d_i)``.

Scores are raw logits: no sigmoid is applied before :func:`spatial_bce_loss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segan_lib._checks import check_image, check_logits, check_tensor, value_checks
from segan_lib.losses.pixel import cross_entropy


def _check_map(name: str, x: Tensor, like: Tensor) -> None:
    """``x`` must have the shape ``(B, H, W)`` of ``like (B, K, H, W)`` without its class axis."""
    expected = (like.shape[0], *like.shape[2:])
    if tuple(x.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} (B, H, W), got {tuple(x.shape)}")


def spatial_bce_loss(confidence_logits: Tensor, target: float, *, valid: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of a confidence-logit map against a constant target, mean over valid pixels.

    With ``d_i`` the logit of pixel ``i``, ``t`` the target (1 = "from the ground truth",
    0 = "predicted") and ``v_i`` in {0, 1} the valid mask::

        l_i = -[t log sigma(d_i) + (1 - t) log(1 - sigma(d_i))]
            =  t softplus(-d_i) + (1 - t) softplus(d_i)
        L   = sum_i v_i l_i / sum_i v_i

    Hung et al. train ``D`` with ``L(D(y), 1) + L(D(S(x)), 0)`` and add ``L_adv = L(D(S(x)), 1)``
    to the segmentor's loss; their code (``BCEWithLogitsLoss2d``) leaves ignored pixels out of
    the mean, as here. If no pixel is valid the loss is 0 (with zero gradient), the convention of
    :mod:`segan_lib.losses.pixel`, so a fully ignored crop does not stop training.

    Args:
        confidence_logits: ``(B, 1, H, W)`` raw discriminator scores.
        target: the label of every pixel, 1.0 or 0.0 (any value in [0, 1] is a soft label).
        valid: ``(B, 1, H, W)`` bool or 0/1 float, 1 where the pixel counts (e.g. the second
            output of :func:`~segan_lib.losses.adversarial.label_maps`); None: every pixel.

    Returns a 0-d float32 tensor.
    """
    confidence_logits = check_logits("confidence_logits", confidence_logits)
    if confidence_logits.shape[1] != 1:
        raise ValueError(
            f"confidence_logits must have shape (B, 1, H, W), got {tuple(confidence_logits.shape)}"
        )
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be a number in [0, 1] (1: ground truth, 0: prediction), got {target!r}")
    scores = confidence_logits.float()
    per_pixel = target * F.softplus(-scores) + (1.0 - target) * F.softplus(scores)  # (B, 1, H, W)
    if valid is None:
        return per_pixel.mean()
    valid = check_tensor("valid", valid)
    if valid.shape != scores.shape:
        raise ValueError(f"valid must have the shape {tuple(scores.shape)} of confidence_logits, got {tuple(valid.shape)}")
    weight = valid.to(per_pixel.dtype)
    count = weight.sum()
    # where nothing counts every term is 0 too; dividing by 1 then keeps the gradient finite (zero)
    return (per_pixel * weight).sum() / torch.where(count > 0, count, torch.ones_like(count))


def pseudo_labels(logits: Tensor) -> Tensor:
    """The segmentor's own labels ``(B, H, W)`` int64: ``argmax_k z_{k,i}`` (K >= 2) or ``[x_i > 0]`` (K = 1)."""
    logits = check_image("logits", logits)
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def softmax_confidence(logits: Tensor) -> Tensor:
    """The segmentor's confidence in its own label, ``(B, H, W)`` in [0, 1], detached.

    ``max_k softmax(z_i)_k`` for K >= 2; ``max(p_i, 1 - p_i)``, ``p_i = sigmoid(x_i)`` for K = 1.
    Thresholding it gives plain self-training (pseudo-labels where the segmentor is sure),
    the arm that asks whether Hung et al.'s discriminator is needed at all.
    """
    logits = check_image("logits", logits).detach().float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.maximum(p, 1.0 - p)
    return logits.softmax(dim=1).amax(dim=1)


def self_training_loss(logits: Tensor, confidence: Tensor, threshold: float) -> Tensor:
    """``L_semi``: cross-entropy against the segmentor's own argmax, only where ``confidence > threshold``.

    With ``yhat_i`` = :func:`pseudo_labels` (no gradient flows through it), the pass mask
    ``m_i = [c_i > T]`` and ``l_i`` the per-pixel cross-entropy of
    :func:`~segan_lib.losses.pixel.cross_entropy` (binary for K = 1)::

        L_semi = sum_i m_i l_i(z_i, yhat_i) / sum_i m_i      (0 when no pixel passes)

    Hung et al. (BMVC 2018): ``I(D(S(x))_i > T_semi)``, the other pixels ignored (their code
    ignores ``< T_semi``, so it keeps a pixel exactly at the threshold); the mean over the passing
    pixels is their code's reduction (``CrossEntropy2d`` with ignored labels). When no pixel
    passes the loss is 0 with zero gradient (their code then skips the term). The
    fraction of pixels that pass, ``mean_i m_i``, is worth logging: a threshold that passes
    nothing turns ``L_semi`` off, one that passes everything trains on every guess.

    Args:
        logits: ``(B, K, H, W)`` segmentor logits (unlabelled images).
        confidence: ``(B, H, W)`` per-pixel confidence in [0, 1]: ``sigmoid`` of the
            discriminator's map, or :func:`softmax_confidence`. Only compared, never differentiated.
        threshold: ``T_semi``; a pixel counts when its confidence is strictly greater.

    Returns a 0-d float32 tensor.
    """
    logits = check_logits("logits", logits)
    confidence = check_tensor("confidence", confidence)
    _check_map("confidence", confidence, logits)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise ValueError(f"threshold must be a number (T_semi), got {threshold!r}")
    passing = (confidence.detach() > threshold).to(torch.float32)  # (B, H, W) m_i
    with value_checks(False):  # the logits were checked above; pseudo-labels are always in range
        per_pixel = cross_entropy(logits, pseudo_labels(logits.detach()), ignore_index=None, reduction="none")
    count = passing.sum()
    return (per_pixel * passing).sum() / torch.where(count > 0, count, torch.ones_like(count))
