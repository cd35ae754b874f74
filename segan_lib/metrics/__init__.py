"""Segmentation metrics, streamed over batches.

* :mod:`.overlap`: one confusion matrix, per-class Dice and IoU, pixel accuracy
  (:class:`SegmentationMetrics`);
* :mod:`.structure`: boundary F1, HD95, topology and presence errors per image and class
  (:class:`StructureMetrics`), built on :mod:`.geometry` (boundaries, distances) and
  :mod:`.components` (connected components, holes).

Both accumulators take the same ``update(logits_or_pred, target)``, honour ``ignore_index``
and average their means over the foreground classes ``1..K-1``.
"""
from segan_lib.metrics.components import count_components, count_holes, euler_number, label_components
from segan_lib.metrics.overlap import (
    SegmentationMetrics,
    confusion_matrix,
    dice_from_confusion,
    iou_from_confusion,
    logits_to_pred,
    prediction_from,
)
from segan_lib.metrics.structure import (
    BOUNDARY_TOLERANCE,
    STRUCTURE_KEYS,
    STRUCTURE_MEAN_KEYS,
    StructureMetrics,
    structure_scores,
)

__all__ = [
    "BOUNDARY_TOLERANCE",
    "STRUCTURE_KEYS",
    "STRUCTURE_MEAN_KEYS",
    "SegmentationMetrics",
    "StructureMetrics",
    "confusion_matrix",
    "count_components",
    "count_holes",
    "dice_from_confusion",
    "euler_number",
    "iou_from_confusion",
    "label_components",
    "logits_to_pred",
    "prediction_from",
    "structure_scores",
]
