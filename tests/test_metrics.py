"""Metrics: hand-worked confusion matrices, torchmetrics on random data, streaming, empty classes."""
import math

import pytest
import torch
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix, multiclass_f1_score, multiclass_jaccard_index,
)

from segan_lib._checks import value_checks
from segan_lib.metrics import (
    SegmentationMetrics, confusion_matrix, dice_from_confusion, iou_from_confusion, logits_to_pred,
)

NAN = float("nan")


def random_labels(num_classes: int, *, seed: int = 0, shape=(3, 8, 8), ignored: float = 0.2):
    generator = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, num_classes, shape, generator=generator)
    target = torch.randint(0, num_classes, shape, generator=generator)
    drop = torch.rand(shape, generator=generator) < ignored
    return pred, torch.where(drop, torch.full_like(target, 255), target)


def test_confusion_and_scores_by_hand():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
    cm = confusion_matrix(pred, target, 3)
    expected = torch.tensor([[1, 1, 0],   # true 0: predicted 0, 1
                             [1, 2, 0],   # true 1: predicted 1, 1, 0
                             [1, 0, 1]])  # true 2: predicted 2, 0 (the ignored pixel counts nowhere)
    assert cm.dtype == torch.int64 and torch.equal(cm, expected)
    # class 0: TP 1, FP 2, FN 1; class 1: TP 2, FP 1, FN 1; class 2: TP 1, FP 0, FN 1
    assert torch.allclose(dice_from_confusion(cm), torch.tensor([2 / 5, 4 / 6, 2 / 3], dtype=torch.float64))
    assert torch.allclose(iou_from_confusion(cm), torch.tensor([1 / 4, 2 / 4, 1 / 2], dtype=torch.float64))
    metrics = SegmentationMetrics(3)
    metrics.update(pred, target)
    scores = metrics.compute()
    assert scores["pixel_accuracy"] == pytest.approx(4 / 7)
    assert scores["mean_dice"] == pytest.approx((4 / 6 + 2 / 3) / 2)  # foreground classes 1, 2
    assert scores["mean_iou"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert isinstance(scores["mean_dice"], float) and scores["dice"].shape == (3,)


def test_without_ignore_index_every_pixel_counts_and_255_is_an_error():
    pred = torch.tensor([[[1, 1], [0, 1]]])
    target = torch.tensor([[[1, 0], [0, 1]]])
    cm = confusion_matrix(pred, target, 2, ignore_index=None)
    assert cm.tolist() == [[1, 1], [0, 2]]  # true 0: predicted 0 once, 1 once; true 1: predicted 1 twice
    with pytest.raises(ValueError, match=r"target holds label values \[255\] outside 0\.\.1"):
        confusion_matrix(pred, torch.tensor([[[1, 255], [0, 1]]]), 2, ignore_index=None)
    metrics = SegmentationMetrics(2, ignore_index=None)
    metrics.update(pred, target)
    assert metrics.compute()["pixel_accuracy"] == pytest.approx(3 / 4)


@pytest.mark.parametrize("num_classes,seed", [(2, 0), (4, 1), (6, 2)])
def test_matches_torchmetrics(num_classes, seed):
    pred, target = random_labels(num_classes, seed=seed)
    cm = confusion_matrix(pred, target, num_classes)
    expected_cm = multiclass_confusion_matrix(pred, target, num_classes, ignore_index=255)
    assert torch.equal(cm, expected_cm)
    iou = multiclass_jaccard_index(pred, target, num_classes, average="none", ignore_index=255)
    dice = multiclass_f1_score(pred, target, num_classes, average="none", ignore_index=255)  # F1 == Dice
    assert torch.allclose(iou_from_confusion(cm).float(), iou)
    assert torch.allclose(dice_from_confusion(cm).float(), dice)


def test_streaming_equals_one_big_batch_and_reset():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, 8, 8, generator=generator)
    target = torch.randint(0, 4, (6, 8, 8), generator=generator)
    target[:, :2] = 255
    streamed, whole = SegmentationMetrics(4), SegmentationMetrics(4)
    for start in range(0, 6, 2):
        streamed.update(logits[start:start + 2], target[start:start + 2])
    whole.update(logits, target)
    assert torch.equal(streamed.confusion, whole.confusion)
    a, b = streamed.compute(), whole.compute()
    assert torch.equal(a["dice"], b["dice"]) and a["mean_iou"] == b["mean_iou"]
    assert streamed.confusion.sum() == (target != 255).sum()
    streamed.reset()
    assert streamed.confusion.sum() == 0
    streamed.update(logits[:2], target[:2])
    assert not torch.equal(streamed.confusion, whole.confusion)


def test_empty_classes_are_nan_and_left_out_of_means():
    target = torch.tensor([[[0, 1, 1, 0]]])
    pred = torch.tensor([[[0, 1, 2, 0]]])  # class 2 predicted, never true; class 3 nowhere
    metrics = SegmentationMetrics(4)
    metrics.update(pred, target)
    scores = metrics.compute()
    assert scores["dice"][2] == 0 and math.isnan(scores["dice"][3]) and math.isnan(scores["iou"][3])
    assert scores["mean_dice"] == pytest.approx((2 / 3 + 0) / 2)  # classes 1 and 2; 3 is NaN
    only_background = SegmentationMetrics(3)
    only_background.update(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.int64))
    scores = only_background.compute()
    assert math.isnan(scores["mean_dice"]) and math.isnan(scores["mean_iou"])
    assert scores["pixel_accuracy"] == 1.0 and scores["dice"][0] == 1.0
    assert math.isnan(SegmentationMetrics(2).compute()["pixel_accuracy"])  # nothing seen yet


def test_binary_single_channel_logits():
    logits = torch.tensor([[[[2.0, -0.5], [0.0, 0.1]]]])  # (1, 1, 2, 2)
    assert torch.equal(logits_to_pred(logits), torch.tensor([[[1, 0], [0, 1]]]))  # logit > 0
    target = torch.tensor([[[1, 1], [0, 255]]])
    metrics = SegmentationMetrics(2)
    metrics.update(logits, target)
    assert torch.equal(metrics.confusion, torch.tensor([[1, 0], [1, 1]]))
    scores = metrics.compute()
    assert scores["mean_dice"] == pytest.approx(2 / 3)  # foreground: TP 1, FN 1, FP 0
    assert scores["mean_iou"] == pytest.approx(1 / 2)


def test_logits_to_pred_multiclass_takes_the_largest_logit_first_on_ties():
    logits = torch.tensor([[[0.1, 2.0]], [[0.5, 2.0]], [[-1.0, 1.0]]])[None]  # (1, 3, 1, 2)
    # pixel 0: logits 0.1, 0.5, -1.0 -> class 1; pixel 1: 2.0, 2.0, 1.0 -> a tie, the first class 0
    assert logits_to_pred(logits).tolist() == [[[1, 0]]]
    assert logits_to_pred(logits).dtype == torch.int64


def test_update_has_no_host_sync_with_value_checks_off():
    # meta tensors have no data: any read back to the host (.item(), bool(), bincount) raises
    metrics = SegmentationMetrics(3, device="meta")
    with value_checks(False):
        metrics.update(torch.empty(2, 3, 8, 8, device="meta"), torch.empty(2, 8, 8, dtype=torch.int64, device="meta"))
    assert metrics.confusion.shape == (3, 3)


@pytest.mark.parametrize("call,message", [
    (lambda: confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.int64), 1),
     "num_classes"),
    (lambda: confusion_matrix(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.int64), 3), "pred"),
    (lambda: confusion_matrix(torch.full((1, 2, 2), 255), torch.zeros(1, 2, 2, dtype=torch.int64), 3), "pred"),
    (lambda: confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.int64), torch.full((1, 2, 2), 7), 3), "target"),
    (lambda: confusion_matrix(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), 3), "int64"),
    (lambda: confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 3, dtype=torch.int64), 3),
     "same shape"),
    (lambda: dice_from_confusion(torch.zeros(3, 2)), "square"),
    (lambda: iou_from_confusion([[1, 0], [0, 1]]), "torch.Tensor"),
    (lambda: logits_to_pred(torch.full((1, 2, 2, 2), NAN)), "NaN"),
    (lambda: SegmentationMetrics(4).update(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64)),
     "channels"),
    (lambda: SegmentationMetrics(3).update(torch.randn(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64)),
     "channels"),
    (lambda: SegmentationMetrics(3).update(torch.zeros(2, 2, dtype=torch.int64),
                                           torch.zeros(1, 2, 2, dtype=torch.int64)),
     "logits_or_pred"),
    (lambda: SegmentationMetrics(True), "num_classes"),
])
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
