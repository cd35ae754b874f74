"""``segan_lib.train.evaluation.evaluate_segmentation`` on a fake model whose predictions are known:
Dice, IoU and pixel accuracy against a confusion matrix worked by hand, whatever the batching
and whichever data path (``get_batch`` or a DataLoader), the dataset's ``ignore_index``, the
binary sigmoid case, and clear errors on data that is not ``(image, mask)`` pairs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from segan_lib._checks import NonFiniteError
from segan_lib.train.evaluation import evaluate_segmentation

# Two 2x3 samples, K = 3. The fake model predicts PRED exactly; 255 marks an ignored pixel.
TARGET = torch.tensor([[[0, 1, 1], [2, 2, 0]],
                       [[1, 1, 255], [0, 0, 2]]])
PRED = torch.tensor([[[0, 1, 2], [2, 2, 1]],
                     [[1, 0, 0], [0, 0, 2]]])
# Confusion matrix of the 11 valid pixels (rows true, columns predicted):
#   [[3, 1, 0],
#    [1, 2, 1],
#    [0, 0, 3]]
# Dice 2TP / (2TP + FP + FN): class 0: 6/8, class 1: 4/7, class 2: 6/7.
# IoU TP / (TP + FP + FN):     class 0: 3/5, class 1: 2/5, class 2: 3/4.
EXPECTED_DICE = [6 / 8, 4 / 7, 6 / 7]
EXPECTED_IOU = [3 / 5, 2 / 5, 3 / 4]


class KnownPredictions(torch.utils.data.Dataset):
    """Samples whose image ``(1, H, W)`` holds, as floats, the classes the fake model predicts."""

    def __init__(self, pred: Tensor, target: Tensor, ignore_index: int | None = None) -> None:
        self.images, self.masks = pred.float()[:, None], target  # (N, 1, H, W), (N, H, W)
        if ignore_index is not None:
            self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.masks[i]


class KnownPredictionsBatched(KnownPredictions):
    """The same samples with a vectorised ``get_batch`` (no DataLoader)."""

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        return self.images[indices], self.masks[indices]


def one_hot_logits(images: Tensor, num_classes: int = 3) -> Tensor:
    """The fake model: logits ``(B, K, H, W)``, 5 for the class written in the image, 0 elsewhere."""
    classes = images[:, 0].long()  # (B, H, W)
    return 5.0 * torch.nn.functional.one_hot(classes, num_classes).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("data_class", [KnownPredictions, KnownPredictionsBatched])
@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_scores_equal_the_hand_worked_confusion_matrix(data_class, batch_size):
    scores = evaluate_segmentation(one_hot_logits, data_class(PRED, TARGET), num_classes=3, batch_size=batch_size)
    assert scores["dice"].tolist() == pytest.approx(EXPECTED_DICE)
    assert scores["iou"].tolist() == pytest.approx(EXPECTED_IOU)
    assert scores["mean_dice"] == pytest.approx((4 / 7 + 6 / 7) / 2)  # foreground classes 1 and 2 only
    assert scores["mean_iou"] == pytest.approx((2 / 5 + 3 / 4) / 2)
    assert scores["pixel_accuracy"] == pytest.approx(8 / 11)  # the ignored pixel counts nowhere


def test_the_datasets_own_ignore_index_is_honoured():
    relabelled = torch.where(TARGET == 255, torch.tensor(9), TARGET)
    scores = evaluate_segmentation(one_hot_logits, KnownPredictions(PRED, relabelled, ignore_index=9), num_classes=3)
    assert scores["dice"].tolist() == pytest.approx(EXPECTED_DICE)
    assert scores["pixel_accuracy"] == pytest.approx(8 / 11)
    with pytest.raises(ValueError, match=r"label values \[255\] outside 0..2 or 9 \(ignore\)"):  # 255 is a label now
        evaluate_segmentation(one_hot_logits, KnownPredictions(PRED, TARGET, ignore_index=9), num_classes=3)


def test_binary_sigmoid_logits_score_two_label_classes():
    """One logit channel, class 1 where the logit is > 0 (a logit of exactly 0 is class 0)."""
    logits = torch.tensor([[[[2.0, -1.0], [-3.0, 0.0]]]])  # (1, 1, 2, 2) -> prediction [[1, 0], [0, 0]]
    target = torch.tensor([[[1, 0], [1, 1]]])
    data = KnownPredictions(torch.zeros(1, 2, 2), target)
    scores = evaluate_segmentation(lambda images: logits, data, num_classes=2)
    # Confusion [[1, 0], [2, 1]]: class 0 Dice 2/4 IoU 1/3; class 1 Dice 2/4 IoU 1/3.
    assert scores["dice"].tolist() == pytest.approx([0.5, 0.5])
    assert scores["iou"].tolist() == pytest.approx([1 / 3, 1 / 3])
    assert scores["mean_dice"] == pytest.approx(0.5) and scores["pixel_accuracy"] == pytest.approx(0.5)


def test_a_class_absent_everywhere_is_nan_and_left_out_of_the_means():
    target = torch.tensor([[[0, 1], [1, 0]]])
    scores = evaluate_segmentation(one_hot_logits, KnownPredictions(target, target), num_classes=3)
    assert scores["dice"][:2].tolist() == [1.0, 1.0] and math.isnan(scores["dice"][2])
    assert scores["mean_dice"] == 1.0 and scores["mean_iou"] == 1.0


@pytest.mark.parametrize("data_class", [KnownPredictions, KnownPredictionsBatched])
def test_every_sample_is_seen_once_in_index_order_without_gradients(data_class):
    n = 5
    data = data_class(torch.zeros(n, 2, 2).long(), torch.zeros(n, 2, 2).long())
    data.images = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 1, 2, 2)  # image i is filled with i
    seen, grad_enabled = [], []

    def record(images: Tensor) -> Tensor:
        seen.append(images[:, 0, 0, 0].long().tolist())
        grad_enabled.append(torch.is_grad_enabled())
        return torch.zeros(images.shape[0], 3, 2, 2)

    evaluate_segmentation(record, data, num_classes=3, batch_size=2)
    assert seen == [[0, 1], [2, 3], [4]]  # the last batch is smaller, nothing dropped or repeated
    assert grad_enabled == [False, False, False]


def test_channels_last_reaches_the_model():
    layouts = []

    def record(images: Tensor) -> Tensor:
        layouts.append(images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous())
        return one_hot_logits(images)

    wide = KnownPredictionsBatched(PRED, TARGET)
    wide.images = wide.images.expand(2, 2, 2, 3).clone()  # 2 channels, so the two layouts differ
    evaluate_segmentation(record, wide, num_classes=3, channels_last=True)
    evaluate_segmentation(record, wide, num_classes=3, channels_last=False)
    assert layouts == [True, False]


def test_data_that_is_not_image_mask_pairs_is_a_clear_error():
    class ImagesOnly(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Tensor:
            return torch.zeros(1, 2, 2)

    with pytest.raises(ValueError, match=r"must yield \(image, mask\) pairs, got 1 item\(s\)"):
        evaluate_segmentation(one_hot_logits, ImagesOnly(), num_classes=3)


def test_bad_model_outputs_and_num_classes_are_clear_errors():
    data = KnownPredictions(PRED, TARGET)
    with pytest.raises(ValueError, match="logits_or_pred has 4 channels but the metrics count 3 classes"):
        evaluate_segmentation(lambda images: torch.zeros(images.shape[0], 4, 2, 3), data, num_classes=3)
    with pytest.raises(NonFiniteError, match="NaN or infinite"):  # value checks stay on off CUDA
        evaluate_segmentation(lambda images: torch.full((images.shape[0], 3, 2, 3), math.nan), data, num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        evaluate_segmentation(one_hot_logits, data, num_classes=1)
