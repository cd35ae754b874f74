"""``segan_lib._checks``: every validation helper called directly, on good input (returned as is)
and on bad input (a ``ValueError`` naming the argument, what was expected and what was received),
and the thread-local switch that turns the value checks (NaN, label range) off."""
from __future__ import annotations

import math
import re
import threading

import numpy as np
import pytest
import torch

from segan_lib._checks import (
    NonFiniteError, check_choice, check_image, check_logits, check_mask, check_pair, check_positive, check_tensor,
    value_checks, value_checks_enabled,
)


def test_check_tensor_returns_the_tensor_and_names_what_else_it_got():
    x = torch.zeros(2)
    assert check_tensor("x", x) is x
    with pytest.raises(ValueError, match=r"^images must be a torch.Tensor, got ndarray"):
        check_tensor("images", np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"^target must be a torch.Tensor, got list \[1, 2\]"):
        check_tensor("target", [1, 2])


def test_check_image_accepts_float_bchw_and_checks_channels():
    x = torch.zeros(2, 3, 4, 5, dtype=torch.float16)
    assert check_image("images", x) is x
    assert check_image("images", x, channels=3) is x
    with pytest.raises(ValueError, match=re.escape("images must have 1 channels (dim 1), got a torch.float16 "
                                                   "tensor of shape (2, 3, 4, 5)")):
        check_image("images", x, channels=1)


@pytest.mark.parametrize("bad, expected", [
    (torch.zeros(3, 4, 4), "images must have shape (B, C, H, W), got a torch.float32 tensor of shape (3, 4, 4)"),
    (torch.zeros(1, 1, 3, 4, 4), "images must have shape (B, C, H, W), got a torch.float32 tensor of shape "
                                 "(1, 1, 3, 4, 4)"),
    (torch.zeros(1, 3, 4, 4, dtype=torch.uint8),
     "images must be a floating-point tensor, got a torch.uint8 tensor of shape (1, 3, 4, 4)"),
])
def test_check_image_rejects_wrong_rank_and_integer_dtype(bad, expected):
    with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
        check_image("images", bad)


def test_check_logits_counts_every_non_finite_value():
    logits = torch.zeros(1, 2, 2, 2)
    assert check_logits("logits", logits) is logits
    logits[0, 0, 0, 0], logits[0, 1, 1, 0], logits[0, 1, 1, 1] = math.nan, math.inf, -math.inf
    with pytest.raises(NonFiniteError, match=re.escape("fake_logits holds 3 NaN or infinite values (of 8)")) as info:
        check_logits("fake_logits", logits)
    assert isinstance(info.value, ValueError)  # code catching bad input still catches it
    assert info.value.name == "fake_logits" and info.value.count == 3
    with pytest.raises(ValueError, match="logits must have shape"):  # the shape check comes first
        check_logits("logits", torch.zeros(2, 2))


def test_value_checks_off_skip_the_nan_and_label_checks_but_not_shape_and_dtype():
    nan_logits = torch.full((1, 2, 2, 2), math.nan)
    bad_labels = torch.full((1, 2, 2), 7)
    with value_checks(False):
        assert not value_checks_enabled()
        assert check_logits("logits", nan_logits) is nan_logits
        assert check_mask("mask", bad_labels, num_classes=2) is bad_labels
        with pytest.raises(ValueError, match="int64"):
            check_mask("mask", bad_labels.int(), num_classes=2)
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            check_logits("logits", nan_logits[0])
    assert value_checks_enabled()
    with pytest.raises(NonFiniteError):
        check_logits("logits", nan_logits)


def test_value_checks_nest_restore_after_an_error_and_are_per_thread():
    assert value_checks_enabled()  # the default
    with pytest.raises(RuntimeError, match="boom"):
        with value_checks(False):
            with value_checks(True):
                assert value_checks_enabled()
            assert not value_checks_enabled()
            raise RuntimeError("boom")
    assert value_checks_enabled()
    seen_by_other_thread = []
    with value_checks(False):
        worker = threading.Thread(target=lambda: seen_by_other_thread.append(value_checks_enabled()))
        worker.start()
        worker.join()
        assert not value_checks_enabled()
    assert seen_by_other_thread == [True]


def test_check_mask_accepts_labels_in_range_and_the_ignore_index():
    mask = torch.tensor([[[0, 1], [2, 255]]])
    assert check_mask("target", mask, num_classes=3) is mask
    assert check_mask("target", torch.zeros(0, 4, 4, dtype=torch.long), num_classes=2).numel() == 0
    with pytest.raises(ValueError, match=re.escape("target holds label values [255] outside 0..2")) as info:
        check_mask("target", mask, num_classes=3, ignore_index=None)
    assert "ignore" not in str(info.value)  # no ignore index to offer when there is none


@pytest.mark.parametrize("mask, expected", [
    (torch.tensor([[[0, 3], [-1, 3]]]), "mask holds label values [-1, 3] outside 0..2 or 255 (ignore)"),
    (torch.tensor([[[0, 254], [256, 1]]]), "mask holds label values [254, 256] outside 0..2 or 255 (ignore)"),
])
def test_check_mask_lists_the_labels_out_of_range(mask, expected):
    with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
        check_mask("mask", mask, num_classes=3)


def test_check_mask_lists_at_most_eight_bad_labels_in_increasing_order():
    mask = torch.arange(20, 0, -1).reshape(1, 4, 5)  # labels 20 .. 1
    with pytest.raises(ValueError, match=re.escape("[2, 3, 4, 5, 6, 7, 8, 9] outside 0..1")):
        check_mask("mask", mask, num_classes=2)


@pytest.mark.parametrize("bad, expected", [
    (torch.zeros(1, 1, 4, 4, dtype=torch.long), "must have shape (B, H, W) of class indices, got a torch.int64 "
                                                "tensor of shape (1, 1, 4, 4)"),
    (torch.zeros(4, 4, dtype=torch.long), "must have shape (B, H, W)"),
    (torch.zeros(1, 4, 4, dtype=torch.int32), "must be an int64 (torch.long) tensor of class indices, got a "
                                              "torch.int32 tensor"),
    (torch.zeros(1, 4, 4), "must be an int64 (torch.long) tensor"),
])
def test_check_mask_rejects_wrong_rank_and_dtype(bad, expected):
    with pytest.raises(ValueError, match="^masks " + re.escape(expected)):
        check_mask("masks", bad, num_classes=2)


def test_check_pair_compares_batch_and_spatial_size_only():
    check_pair("logits", torch.zeros(2, 5, 3, 4), "target", torch.zeros(2, 3, 4, dtype=torch.long))  # any K
    expected = "logits (2, 5, 3, 4) and target (2, 4, 3) disagree: expected target of shape (2, 3, 4)"
    with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
        check_pair("logits", torch.zeros(2, 5, 3, 4), "target", torch.zeros(2, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("expected masks of shape (2, 3, 4)")):
        check_pair("probs", torch.zeros(2, 1, 3, 4), "masks", torch.zeros(1, 3, 4, dtype=torch.long))


def test_check_positive_bounds_and_nan():
    check_positive("lr", 1e-8)
    check_positive("weight_decay", 0.0, allow_zero=True)
    with pytest.raises(ValueError, match=r"^lr must be > 0, got 0$"):
        check_positive("lr", 0)
    with pytest.raises(ValueError, match=r"^weight_decay must be >= 0, got -0.1$"):
        check_positive("weight_decay", -0.1, allow_zero=True)
    with pytest.raises(ValueError, match=r"^gamma must be >= 0, got nan$"):  # NaN is not a valid setting
        check_positive("gamma", math.nan, allow_zero=True)


def test_check_choice_names_the_choices_and_the_value():
    check_choice("reduction", "sum", ("mean", "sum", "none"))
    with pytest.raises(ValueError, match=re.escape("reduction must be one of ('mean', 'sum', 'none'), got 'avg'")):
        check_choice("reduction", "avg", ("mean", "sum", "none"))
    with pytest.raises(ValueError, match=re.escape("got 'Mean'")):  # case matters: no silent normalisation
        check_choice("reduction", "Mean", ("mean", "sum"))


@pytest.mark.parametrize("value", [None, "0.1", True])
def test_check_positive_names_the_argument_when_the_value_is_not_a_number(value):
    with pytest.raises(ValueError, match=r"^lr must be .*> 0.*, got " + re.escape(repr(value))):
        check_positive("lr", value)
