"""Pixel losses: MONAI and reference formulas, ignore_index, gradients, errors (hand-worked values:
test_losses_by_hand.py)."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss, FocalLoss

from segan_lib._checks import value_checks
from segan_lib.losses import (
    PIXEL_LOSSES, cross_entropy, dice_ce_loss, focal_loss, get_pixel_loss, soft_dice_loss,
)

LOSSES = sorted(PIXEL_LOSSES)


def random_batch(channels: int, *, seed: int = 0, batch: int = 2, size: int = 6, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(batch, channels, size, size, generator=generator, dtype=dtype)
    target = torch.randint(0, max(channels, 2), (batch, size, size), generator=generator)
    return logits, target


def with_ignored(target: torch.Tensor, seed: int = 1) -> torch.Tensor:
    ignored = torch.rand(target.shape, generator=torch.Generator().manual_seed(seed)) < 0.3
    return torch.where(ignored, torch.full_like(target, 255), target)


# ---- against MONAI and reference formulas -------------------------------------------------
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("smooth", [1.0, 1e-5])
def test_soft_dice_matches_monai_multiclass(include_background, smooth):
    logits, target = random_batch(4)
    monai = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True, batch=True,
                     smooth_nr=smooth, smooth_dr=smooth, reduction="none")
    expected = monai(logits, target[:, None]).flatten()
    ours = soft_dice_loss(logits, target, smooth=smooth, include_background=include_background, reduction="none")
    assert torch.allclose(ours, expected.to(ours.dtype), atol=1e-6)
    assert torch.allclose(soft_dice_loss(logits, target, smooth=smooth, include_background=include_background),
                          expected.mean().to(ours.dtype), atol=1e-6)


def test_soft_dice_and_dice_ce_match_monai_binary():
    logits, target = random_batch(1)
    dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)(logits, target[:, None].double())
    assert torch.allclose(soft_dice_loss(logits, target), dice.to(torch.float64), atol=1e-6)
    monai = DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0, lambda_dice=0.5, lambda_ce=2.0)
    expected = monai(logits, target[:, None].double())
    assert torch.allclose(dice_ce_loss(logits, target, dice_weight=0.5, ce_weight=2.0), expected.double(), atol=1e-6)


def test_dice_ce_matches_monai_multiclass():
    logits, target = random_batch(3)
    monai = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
    assert torch.allclose(dice_ce_loss(logits, target), monai(logits, target[:, None]).double(), atol=1e-6)


@pytest.mark.parametrize("alpha", [None, 0.25, [0.2, 0.3, 0.5]])
def test_focal_softmax_matches_monai(alpha):
    logits, target = random_batch(3)
    monai = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0, alpha=alpha, reduction="none")
    expected = monai(logits, target[:, None]).sum(dim=1)  # only the true class's channel is non-zero
    ours = focal_loss(logits, target, gamma=2.0, alpha=alpha, reduction="none")
    assert torch.allclose(ours, expected.double(), atol=1e-6)


def test_binary_focal_matches_monai_and_torchvision_formula():
    logits, target = random_batch(1)
    x, t = logits[:, 0], target.double()
    p = torch.sigmoid(x)  # torchvision.ops.sigmoid_focal_loss, written out
    p_t = p * t + (1 - p) * (1 - t)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    reference = (0.25 * t + 0.75 * (1 - t)) * bce * (1 - p_t) ** 2
    assert torch.allclose(focal_loss(logits, target, reduction="none"), reference)
    monai = FocalLoss(gamma=2.0, alpha=0.25, reduction="none")(logits, target[:, None].double())[:, 0]
    assert torch.allclose(focal_loss(logits, target, reduction="none"), monai.double(), atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_with_gamma_zero_is_cross_entropy(channels, reduction):
    logits, target = random_batch(channels)
    target = with_ignored(target)
    focal = focal_loss(logits, target, gamma=0.0, alpha=None, reduction=reduction)
    assert torch.allclose(focal, cross_entropy(logits, target, reduction=reduction))
    if channels == 3:
        torch_ce = F.cross_entropy(logits, target, ignore_index=255, reduction=reduction)
        assert torch.allclose(focal, torch_ce)


@pytest.mark.parametrize("channels", [1, 2])
def test_focal_down_weights_easy_pixels(channels):
    easy_hard = torch.tensor([4.0, -1.0]).view(1, 1, 1, 2)  # true class 1: confident vs wrong
    logits = easy_hard if channels == 1 else torch.cat([torch.zeros_like(easy_hard), easy_hard], dim=1)
    target = torch.ones(1, 1, 2, dtype=torch.int64)
    ratio = focal_loss(logits, target, alpha=None, reduction="none") / cross_entropy(logits, target, reduction="none")
    easy, hard = ratio[0, 0]
    assert easy < 0.01 and hard > 0.5 and easy < hard


# ---- ignore_index, reductions ------------------------------------------------------------
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("channels", [1, 3])
def test_ignored_pixels_count_nowhere(name, channels):
    logits, target = random_batch(channels)
    target = with_ignored(target)
    ignored = (target == 255)[:, None].expand_as(logits)
    changed = torch.where(ignored, 50 * torch.randn_like(logits), logits).requires_grad_(True)
    loss_fn = PIXEL_LOSSES[name]
    assert torch.allclose(loss_fn(logits, target), loss_fn(changed, target))
    (grad,) = torch.autograd.grad(loss_fn(changed, target), changed)
    assert grad[ignored].abs().max() == 0 and grad[~ignored].abs().max() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_ignoring_equals_dropping_the_pixels(name):
    logits, target = random_batch(3)
    padded_logits = torch.cat([logits, torch.randn_like(logits)], dim=3)  # (B, K, H, 2W)
    padded_target = torch.cat([target, torch.full_like(target, 255)], dim=2)  # right half ignored
    loss_fn = PIXEL_LOSSES[name]
    assert torch.allclose(loss_fn(padded_logits, padded_target), loss_fn(logits, target))


@pytest.mark.parametrize("name", LOSSES)
def test_all_ignored_gives_zero_with_finite_gradient(name):
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = PIXEL_LOSSES[name](logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


@pytest.mark.parametrize("loss_fn", [cross_entropy, focal_loss])
@pytest.mark.parametrize("channels", [1, 3])
def test_pixel_reductions(loss_fn, channels):
    logits, target = random_batch(channels)
    target = with_ignored(target)
    per_pixel = loss_fn(logits, target, reduction="none")
    assert per_pixel.shape == target.shape and torch.all(per_pixel[target == 255] == 0)
    assert torch.allclose(loss_fn(logits, target, reduction="sum"), per_pixel.sum())
    assert torch.allclose(loss_fn(logits, target), per_pixel.sum() / (target != 255).sum())


def test_dice_reductions():
    logits, target = random_batch(4)
    per_class = soft_dice_loss(logits, target, reduction="none")
    assert per_class.shape == (4,)
    assert soft_dice_loss(logits, target, include_background=False, reduction="none").shape == (3,)
    assert torch.allclose(soft_dice_loss(logits, target, reduction="sum"), per_class.sum())
    assert torch.allclose(soft_dice_loss(logits, target), per_class.mean())


# ---- gradients against the docstring formulas ----------------------------------------------
def autograd_grad(loss_fn, logits, target, **kwargs):
    logits = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(logits, target, **kwargs), logits)
    return grad


def test_cross_entropy_gradients():
    logits, target = random_batch(3)
    one_hot = F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    expected = (logits.softmax(1) - one_hot) / target.numel()
    assert torch.allclose(autograd_grad(cross_entropy, logits, target), expected)
    logits, target = random_batch(1)
    expected = (torch.sigmoid(logits) - target[:, None].double()) / target.numel()
    assert torch.allclose(autograd_grad(cross_entropy, logits, target), expected)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_gradients(gamma):
    logits, target = random_batch(1)
    x, y = logits, 2.0 * target[:, None].double() - 1
    alpha_t = torch.where(y > 0, 0.25, 0.75)
    p_t = torch.sigmoid(y * x)
    expected = alpha_t * y * (1 - p_t) ** gamma * (gamma * p_t * p_t.log() + p_t - 1) / target.numel()
    assert torch.allclose(autograd_grad(focal_loss, logits, target, gamma=gamma, alpha=0.25), expected)
    logits, target = random_batch(3)
    probs, one_hot = logits.softmax(1), F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    p_t = (probs * one_hot).sum(1, keepdim=True)
    expected = (one_hot - probs) * (1 - p_t) ** (gamma - 1) * (gamma * p_t * p_t.log() + p_t - 1) / target.numel()
    assert torch.allclose(autograd_grad(focal_loss, logits, target, gamma=gamma, alpha=None), expected)


def test_soft_dice_gradients():
    smooth = 1.0
    logits, target = random_batch(1)
    p, g = torch.sigmoid(logits), target[:, None].double()
    numerator, denominator = 2 * (p * g).sum() + smooth, p.sum() + g.sum() + smooth
    expected = p * (1 - p) * (numerator - 2 * g * denominator) / denominator**2
    assert torch.allclose(autograd_grad(soft_dice_loss, logits, target, smooth=smooth), expected)
    logits, target = random_batch(3)
    p, g = logits.softmax(1), F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    axes = (0, 2, 3)
    numerator = (2 * (p * g).sum(axes) + smooth).view(1, 3, 1, 1)
    denominator = (p.sum(axes) + g.sum(axes) + smooth).view(1, 3, 1, 1)
    dloss_dp = (numerator - 2 * g * denominator) / (3 * denominator**2)  # (B, K, H, W)
    expected = p * (dloss_dp - (dloss_dp * p).sum(1, keepdim=True))  # sum_k dL/dp_k p_k ([k == j] - p_j)
    assert torch.allclose(autograd_grad(soft_dice_loss, logits, target, smooth=smooth), expected)


# ---- registry, precision, host syncs, errors -------------------------------------------------
def test_get_pixel_loss_fixes_options():
    logits, target = random_batch(3)
    loss_fn = get_pixel_loss("focal", gamma=1.0, alpha=[0.2, 0.3, 0.5])
    assert torch.equal(loss_fn(logits, target), focal_loss(logits, target, gamma=1.0, alpha=[0.2, 0.3, 0.5]))
    assert set(PIXEL_LOSSES) == {"ce", "dice", "focal", "dice_ce"}
    with pytest.raises(ValueError, match="name"):
        get_pixel_loss("lovasz")
    with pytest.raises(ValueError, match="gamma"):
        get_pixel_loss("ce", gamma=2.0)


@pytest.mark.parametrize("name", LOSSES)
def test_bfloat16_logits_are_computed_in_float32(name):
    logits, target = random_batch(3, dtype=torch.float32)
    loss = PIXEL_LOSSES[name](logits.bfloat16(), target)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, PIXEL_LOSSES[name](logits.bfloat16().float(), target))


@pytest.mark.parametrize("name", LOSSES)
def test_no_host_sync_with_value_checks_off(name):
    # meta tensors have no data: any read back to the host (.item(), bool(), bincount) raises
    logits = torch.empty(2, 3, 8, 8, device="meta", requires_grad=True)
    target = torch.empty(2, 8, 8, dtype=torch.int64, device="meta")
    with value_checks(False):
        PIXEL_LOSSES[name](logits, target).backward()
    assert logits.grad.shape == logits.shape


BAD_INPUTS = [
    ({"logits": torch.randn(2, 3, 4)}, "logits"),
    ({"logits": torch.randint(0, 3, (2, 3, 4, 4))}, "floating"),
    ({"target": torch.zeros(2, 4, 4)}, "int64"),
    ({"target": torch.zeros(2, 5, 4, dtype=torch.int64)}, "disagree"),
    ({"target": torch.full((2, 4, 4), 3)}, r"\[3\]"),
    ({"logits": torch.full((2, 3, 4, 4), float("nan"))}, "NaN"),
    ({"logits": torch.randn(2, 0, 4, 4)}, "at least 1 channel"),
]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad,message", BAD_INPUTS)
def test_bad_input_raises(name, bad, message):
    args = {"logits": torch.randn(2, 3, 4, 4), "target": torch.zeros(2, 4, 4, dtype=torch.int64)} | bad
    with pytest.raises(ValueError, match=message):
        PIXEL_LOSSES[name](args["logits"], args["target"])


@pytest.mark.parametrize("call,message", [
    (lambda x, t: cross_entropy(x, t, reduction="avg"), "reduction"),
    (lambda x, t: soft_dice_loss(x, t, reduction="batch"), "reduction"),
    (lambda x, t: focal_loss(x, t, reduction=None), "reduction"),
    (lambda x, t: focal_loss(x, t, gamma=-1.0), "gamma"),
    (lambda x, t: focal_loss(x, t, alpha=1.5), "alpha"),
    (lambda x, t: focal_loss(x, t, alpha=[0.5, 0.5]), "alpha"),
    (lambda x, t: focal_loss(x, t, alpha="balanced"), "alpha"),
    (lambda x, t: cross_entropy(x, t, weight=torch.ones(2)), "weight"),
    (lambda x, t: cross_entropy(x, t, weight=torch.tensor([1.0, -1.0, 1.0])), "weight"),
    (lambda x, t: soft_dice_loss(x, t, smooth=-1.0), "smooth"),
    (lambda x, t: dice_ce_loss(x, t, ce_weight=-1.0), "ce_weight"),
    (lambda x, t: cross_entropy(x[:, :1], t), r"\[2\]"),  # binary target must be 0/1
])
def test_bad_options_raise(call, message):
    logits, target = random_batch(3)
    with pytest.raises(ValueError, match=message):
        call(logits, target)
