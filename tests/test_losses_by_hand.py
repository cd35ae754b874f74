"""Pixel losses against values worked by hand, binary and multi-class (the formulas of each docstring)."""
import math

import pytest
import torch

from segan_lib.losses import cross_entropy, dice_ce_loss, focal_loss, soft_dice_loss

# Two classes, two pixels: pixel 0 has logits (0, log 3), softmax (1/4, 3/4), true class 1;
# pixel 1 has logits (0, 0), softmax (1/2, 1/2), true class 0. Shapes (1, 2, 1, 2) and (1, 1, 2).
TWO_CLASS_LOGITS = torch.tensor([[[[0.0, 0.0]], [[math.log(3), 0.0]]]])
TWO_CLASS_TARGET = torch.tensor([[[1, 0]]])


def test_cross_entropy_by_hand():
    logits, target = TWO_CLASS_LOGITS, TWO_CLASS_TARGET
    expected = [-math.log(3 / 4), math.log(2)]  # -log p_t
    assert torch.allclose(cross_entropy(logits, target, reduction="none"), torch.tensor([[expected]]))
    assert math.isclose(cross_entropy(logits, target).item(), sum(expected) / 2, rel_tol=1e-6)
    weighted = cross_entropy(logits, target, weight=torch.tensor([1.0, 3.0]))  # sum w l / sum w
    assert math.isclose(weighted.item(), (3 * expected[0] + expected[1]) / 4, rel_tol=1e-6)
    binary = cross_entropy(torch.tensor([[[[0.0, math.log(3)]]]]), torch.tensor([[[1, 0]]]))
    assert math.isclose(binary.item(), (math.log(2) + math.log(4)) / 2, rel_tol=1e-6)  # -log(1/2), -log(1/4)


def test_focal_loss_by_hand():
    logits = torch.full((1, 1, 1, 2), math.log(3))  # p = 3/4 at both pixels
    target = torch.tensor([[[1, 0]]])
    per_pixel = focal_loss(logits, target, gamma=2.0, alpha=0.25, reduction="none")[0, 0]
    assert math.isclose(per_pixel[0].item(), -0.25 * 0.25**2 * math.log(0.75), rel_tol=1e-5)  # p_t = 3/4
    assert math.isclose(per_pixel[1].item(), -0.75 * 0.75**2 * math.log(0.25), rel_tol=1e-5)  # p_t = 1/4
    assert focal_loss(logits, target).item() == pytest.approx(per_pixel.mean().item())  # alpha "auto" = 0.25


def test_soft_dice_by_hand():
    logits = torch.tensor([[[[0.0, math.log(3), -math.log(3)]]]])  # p = 1/2, 3/4, 1/4
    target = torch.tensor([[[1, 1, 0]]])
    intersection, total = 0.5 + 0.75, (0.5 + 0.75 + 0.25) + 2
    for smooth in (0.0, 1.0):
        expected = 1 - (2 * intersection + smooth) / (total + smooth)
        assert math.isclose(soft_dice_loss(logits, target, smooth=smooth).item(), expected, rel_tol=1e-6)


def test_dice_absent_class_counts_zero_when_predicted_absent():
    logits = torch.tensor([0.0, 0.0, -30.0]).view(1, 3, 1, 1).repeat(1, 1, 2, 2)  # class 2 ~ never predicted
    target = torch.tensor([[[0, 1], [1, 0]]])  # class 2 absent
    per_class = soft_dice_loss(logits, target, smooth=1.0, reduction="none")
    assert per_class.shape == (3,)
    assert per_class[2].item() == pytest.approx(0.0, abs=1e-9)
    assert soft_dice_loss(logits, target, smooth=0.0, reduction="none")[2].item() == pytest.approx(1.0)
    without_bg = soft_dice_loss(logits, target, include_background=False, reduction="none")
    assert torch.allclose(without_bg, per_class[1:])


def test_multiclass_soft_dice_by_hand():
    # class 0: p = (1/4, 1/2), g = (0, 1): sum p g = 1/2, sum p = 3/4, sum g = 1
    #   L_0 = 1 - (2 * 1/2 + 1) / (3/4 + 1 + 1) = 1 - 2 / 2.75 = 3/11
    # class 1: p = (3/4, 1/2), g = (1, 0): sum p g = 3/4, sum p = 5/4, sum g = 1
    #   L_1 = 1 - (2 * 3/4 + 1) / (5/4 + 1 + 1) = 1 - 2.5 / 3.25 = 3/13
    per_class = soft_dice_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, smooth=1.0, reduction="none")
    torch.testing.assert_close(per_class, torch.tensor([3 / 11, 3 / 13]))
    assert soft_dice_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET).item() == pytest.approx((3 / 11 + 3 / 13) / 2)
    assert soft_dice_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, include_background=False).item() == pytest.approx(3 / 13)
    assert soft_dice_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, reduction="sum").item() == pytest.approx(3 / 11 + 3 / 13)


def test_softmax_focal_loss_by_hand():
    # pixel 0: p_t = 3/4, FL = (1/4)^2 (-log 3/4); pixel 1: p_t = 1/2, FL = (1/2)^2 log 2
    focal = [(1 / 16) * -math.log(3 / 4), (1 / 4) * math.log(2)]
    per_pixel = focal_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, gamma=2.0, alpha=None, reduction="none")
    torch.testing.assert_close(per_pixel, torch.tensor([[focal]]))
    # alpha = 0.25: foreground classes weigh 0.25, class 0 weighs 0.75; mean over the 2 pixels
    weighted = focal_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, gamma=2.0, alpha=0.25)
    assert weighted.item() == pytest.approx((0.25 * focal[0] + 0.75 * focal[1]) / 2)
    one = focal_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, gamma=1.0, alpha=[0.5, 2.0], reduction="sum")
    assert one.item() == pytest.approx(2.0 * (1 / 4) * -math.log(3 / 4) + 0.5 * (1 / 2) * math.log(2))


def test_dice_ce_by_hand():
    dice = (3 / 11 + 3 / 13) / 2  # test_multiclass_soft_dice_by_hand
    ce = (-math.log(3 / 4) + math.log(2)) / 2  # -log p_t averaged over the two pixels
    assert dice_ce_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET).item() == pytest.approx(dice + ce)
    weighted = dice_ce_loss(TWO_CLASS_LOGITS, TWO_CLASS_TARGET, dice_weight=2.0, ce_weight=0.5)
    assert weighted.item() == pytest.approx(2.0 * dice + 0.5 * ce)
    ignored = torch.tensor([[[1, 255]]])  # only pixel 0 counts: Dice over one pixel, CE = -log 3/4
    # class 0: p = 1/4, g = 0: 1 - 1 / (1/4 + 1) = 1/5
    # class 1: p = 3/4, g = 1: 1 - (2 * 3/4 + 1) / (3/4 + 1 + 1) = 1 - 2.5 / 2.75 = 1/11
    expected = (1 / 5 + 1 / 11) / 2 + -math.log(3 / 4)
    assert dice_ce_loss(TWO_CLASS_LOGITS, ignored).item() == pytest.approx(expected)
