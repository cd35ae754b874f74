"""Overlap metrics: confusion matrix, per-class Dice and IoU, streamed over batches.

Everything goes through one ``(K, K)`` confusion matrix (rows = true class, columns =
predicted class), counted over the valid pixels only: a pixel whose target is
``ignore_index`` counts nowhere. ``K`` is the number of *label* classes, so a binary model
with a single sigmoid channel has ``K = 2``.

Empty classes: a class absent from both the prediction and the target has Dice and IoU
``0/0 = NaN`` (nothing to score), and the means leave it out (``nanmean``). A class present
in one of the two but not the other scores 0. The means run over the foreground classes
``1..K-1``; if all of them are NaN the mean is NaN too.
"""
from __future__ import annotations

import torch
from torch import Tensor

from segan_lib._checks import check_logits, check_mask, check_tensor


def check_num_classes(num_classes: int) -> None:
    """``ValueError`` naming ``num_classes`` unless it is an int >= 2 (not a bool)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an int >= 2 (label classes; 2 for a binary model with one sigmoid "
            f"channel), got {num_classes!r}"
        )


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = 255) -> Tensor:
    """Count ``cm[t, p]`` = number of valid pixels with true class ``t`` predicted as ``p``.

    Args:
        pred: ``(B, H, W)`` int64 predicted classes in ``0..K-1``.
        target: ``(B, H, W)`` int64 true classes in ``0..K-1`` or ``ignore_index``.
        num_classes: ``K >= 2``.

    Returns:
        ``(K, K)`` int64 on ``pred``'s device; ``cm.sum()`` is the number of valid pixels.

    The pair ``(t, p)`` is coded as ``t * K + p`` and counted like
    ``torch.bincount(code, minlength=K * K)``; the counting uses ``scatter_add_`` because
    ``torch.bincount`` reads the largest code back to the host on CUDA. Ignored pixels go to
    an extra bin ``K * K`` that is dropped, so no boolean indexing (another host sync) is needed.
    """
    check_num_classes(num_classes)
    pred = check_mask("pred", pred, num_classes, ignore_index=None)
    target = check_mask("target", target, num_classes, ignore_index)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    num_pairs = num_classes * num_classes
    code = target * num_classes + pred  # (B, H, W)
    if ignore_index is not None:
        code = torch.where(target == ignore_index, torch.full_like(code, num_pairs), code)
    code = code.reshape(-1)  # (B*H*W,)
    counts = torch.zeros(num_pairs + 1, dtype=torch.int64, device=code.device)
    counts.scatter_add_(0, code, torch.ones_like(code))  # (K*K + 1,)
    return counts[:num_pairs].reshape(num_classes, num_classes)  # (K, K): rows true, cols predicted


def _check_confusion(cm: object) -> Tensor:
    cm = check_tensor("cm", cm)
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(f"cm must be a square (K, K) confusion matrix, got shape {tuple(cm.shape)}")
    return cm.to(torch.float64)


def _true_false_counts(cm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per class: true positives, false positives (predicted k, true other), false negatives."""
    true_positive = cm.diagonal()  # (K,)
    false_positive = cm.sum(dim=0) - true_positive  # column sums minus the diagonal
    false_negative = cm.sum(dim=1) - true_positive  # row sums minus the diagonal
    return true_positive, false_positive, false_negative


def dice_from_confusion(cm: Tensor) -> Tensor:
    """Per-class Dice ``2 TP / (2 TP + FP + FN)`` from a ``(K, K)`` confusion matrix -> ``(K,)`` float64.

    NaN for a class absent from both prediction and target (``0 / 0``); see the module docstring.
    """
    tp, fp, fn = _true_false_counts(_check_confusion(cm))
    return 2 * tp / (2 * tp + fp + fn)


def iou_from_confusion(cm: Tensor) -> Tensor:
    """Per-class IoU (Jaccard) ``TP / (TP + FP + FN)`` from a ``(K, K)`` confusion matrix -> ``(K,)`` float64.

    NaN for a class absent from both prediction and target (``0 / 0``). ``IoU = Dice / (2 - Dice)``.
    """
    tp, fp, fn = _true_false_counts(_check_confusion(cm))
    return tp / (tp + fp + fn)


def logits_to_pred(logits: Tensor) -> Tensor:
    """Hard prediction ``(B, H, W)`` int64 from logits ``(B, K, H, W)``.

    ``K == 1`` (sigmoid): class 1 where the logit is > 0 (probability > 0.5); ``K >= 2``:
    argmax over the classes (the first one on ties).
    """
    logits = check_logits("logits", logits)
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()  # (B, H, W)
    return logits.argmax(dim=1)  # (B, H, W)


def prediction_from(logits_or_pred: Tensor, num_classes: int) -> Tensor:
    """Classes ``(B, H, W)`` int64 from logits ``(B, K, H, W)`` (through :func:`logits_to_pred`) or
    from a prediction ``(B, H, W)`` (returned as given); what every metric's ``update`` accepts.

    ``K`` must be ``num_classes``, or 1 (a sigmoid) when ``num_classes == 2``.
    """
    x = check_tensor("logits_or_pred", logits_or_pred)
    if x.dim() == 4:
        channels = x.shape[1]
        if channels != num_classes and not (channels == 1 and num_classes == 2):
            raise ValueError(
                f"logits_or_pred has {channels} channels but the metrics count {num_classes} classes "
                f"(expected {num_classes} channels, or 1 when num_classes == 2)"
            )
        return logits_to_pred(x)
    if x.dim() == 3:
        return x
    raise ValueError(
        f"logits_or_pred must be logits (B, K, H, W) or a prediction (B, H, W), got shape {tuple(x.shape)}"
    )


class SegmentationMetrics:
    """Dice, IoU and pixel accuracy accumulated over batches in one confusion matrix.

    Streaming gives exactly the numbers of one big batch, since counts add up. ``update`` never
    reads a value back to the host when value checks are off (``_checks.value_checks(False)``);
    keep the metrics on the data's device, or each update copies its counts over.

    Example::

        metrics = SegmentationMetrics(num_classes=4, device="cuda")
        for images, masks in loader:
            metrics.update(model(images), masks)
        scores = metrics.compute()   # {"dice": (4,), "iou": (4,), "mean_dice": float, ...}
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = 255, device: str | torch.device = "cpu") -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=self.device)  # (K, K)

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self.confusion.zero_()

    def update(self, logits_or_pred: Tensor, target: Tensor) -> None:
        """Add one batch.

        Args:
            logits_or_pred: logits ``(B, K, H, W)`` (``K`` = ``num_classes``, or 1 when
                ``num_classes == 2``), turned into classes by :func:`logits_to_pred`; or a
                prediction ``(B, H, W)`` int64.
            target: ``(B, H, W)`` int64 labels or ``ignore_index``.
        """
        pred = prediction_from(logits_or_pred, self.num_classes)
        counts = confusion_matrix(pred, target, self.num_classes, ignore_index=self.ignore_index)
        self.confusion += counts.to(self.device)

    def compute(self) -> dict[str, Tensor | float]:
        """Scores over every batch since the last ``reset``.

        Returns:
            ``"dice"``, ``"iou"``: ``(K,)`` float64 CPU tensors, NaN for a class seen nowhere;
            ``"mean_dice"``, ``"mean_iou"``: floats, nanmean over the foreground classes
            ``1..K-1`` (NaN if all are NaN); ``"pixel_accuracy"``: float, correct / valid
            pixels (NaN before any valid pixel).
        """
        confusion = self.confusion.cpu()  # the one host read, at the end
        dice = dice_from_confusion(confusion)
        iou = iou_from_confusion(confusion)
        total = confusion.sum().item()
        return {
            "dice": dice,
            "iou": iou,
            "mean_dice": torch.nanmean(dice[1:]).item(),
            "mean_iou": torch.nanmean(iou[1:]).item(),
            "pixel_accuracy": confusion.diagonal().sum().item() / total if total > 0 else float("nan"),
        }
