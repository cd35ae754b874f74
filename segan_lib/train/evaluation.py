"""Validation: Dice, IoU, pixel accuracy and the structure metrics of a segmentor over a whole dataset."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from segan_lib._checks import value_checks
from segan_lib.train.batches import eval_batches
from segan_lib.train.hardware import to_device


@torch.no_grad()
def evaluate_segmentation(
    predict_logits: Callable[[Tensor], Tensor],
    data: object,
    *,
    num_classes: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    num_workers: int = 0,
    check_images: Callable[[Tensor], None] | None = None,
) -> dict[str, Tensor | float]:
    """``SegmentationMetrics.compute()`` and ``StructureMetrics.compute()`` of ``predict_logits``
    over every sample of ``data``.

    Args:
        predict_logits: images ``(B, C, H, W)`` -> logits ``(B, K, H, W)`` (``K = num_classes``,
            or 1 for a binary sigmoid model); called under ``torch.no_grad``. The caller
            puts the model in eval mode.
        data: a dataset of ``(image (C, H, W), mask (H, W) int64)`` pairs, or one with
            ``get_batch``; its ``ignore_index`` attribute (default 255) is honoured.
        num_classes: label classes ``K >= 2`` (2 for a binary sigmoid model).
        check_images: called once, on the first batch of images on ``device``, to raise a clear
            ``ValueError`` before the model sees input it cannot take (``Strategy.check_images``).

    Returns:
        ``{"dice": (K,), "iou": (K,), "mean_dice", "mean_iou", "pixel_accuracy"}`` and the
        structure metrics ``{"boundary_f1", "hd95", "topology_error", "component_error",
        "hole_error", "presence_error": (K,), "mean_boundary_f1", "mean_hd95",
        "mean_topology_error", "mean_presence_error"}``; the means
        run over the foreground classes ``1..K-1`` (see :mod:`segan_lib.metrics`). Both are
        streamed on ``device``; the confusion matrix is read back once, at the end.
    """
    from segan_lib.metrics import SegmentationMetrics, StructureMetrics

    device = torch.device(device)
    ignore_index = getattr(data, "ignore_index", 255)
    metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index, device=device)
    structure = StructureMetrics(num_classes, ignore_index=ignore_index, device=device)
    # On CUDA the per-batch label/NaN checks would each stall the GPU; the result is read once.
    checks = value_checks(False) if device.type == "cuda" else contextlib.nullcontext()
    with checks:
        for batch in eval_batches(data, batch_size, num_workers=num_workers, pin_memory=device.type == "cuda"):
            if len(batch) != 2:
                raise ValueError(f"evaluation data must yield (image, mask) pairs, got {len(batch)} item(s)")
            images, masks = to_device(batch, device, channels_last)
            if check_images is not None:
                check_images(images)
                check_images = None
            logits = predict_logits(images)
            metrics.update(logits, masks)
            structure.update(logits, masks)
    return {**metrics.compute(), **structure.compute()}
