"""The parts of Hung et al.'s semi-supervised method: its losses against hand-worked values,
the fully-convolutional discriminator, and the labelled / unlabelled split."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segan_lib.data import LabelledSubset, UnlabelledImages, split_labelled
from segan_lib.data.split import labelled_count
from segan_lib.losses import pseudo_labels, self_training_loss, softmax_confidence, spatial_bce_loss
from segan_lib.models import ConfidenceMapDiscriminator

from builders import BatchedPairData, PairData

LN = math.log


# --- spatial BCE ------------------------------------------------------------------------------
SCORES = torch.tensor([[[[0.0, LN(3)], [LN(7), 5.0]]]])  # (1, 1, 2, 2) confidence logits
VALID = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])  # the last pixel is ignored


def test_spatial_bce_against_hand_worked_values():
    # target 1: softplus(-d) = ln2, ln(4/3), ln(8/7) on the valid pixels
    assert spatial_bce_loss(SCORES, 1.0, valid=VALID).item() == pytest.approx(LN(2 * 4 / 3 * 8 / 7) / 3, rel=1e-6)
    # target 0: softplus(d) = ln2, ln4, ln8
    assert spatial_bce_loss(SCORES, 0.0, valid=VALID.bool()).item() == pytest.approx(LN(64) / 3, rel=1e-6)
    # no mask: every pixel, softplus(-5) for the fourth
    expected = (LN(2 * 4 / 3 * 8 / 7) + F.softplus(torch.tensor(-5.0)).item()) / 4
    assert spatial_bce_loss(SCORES, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert spatial_bce_loss(SCORES, 0.5).item() == pytest.approx(  # a soft label: the mean of both
        0.5 * (spatial_bce_loss(SCORES, 1.0) + spatial_bce_loss(SCORES, 0.0)).item(), rel=1e-6)


def test_spatial_bce_matches_torch_and_ignores_masked_pixels():
    scores = torch.randn(2, 1, 5, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    valid = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.3
    loss = spatial_bce_loss(scores, 1.0, valid=valid)
    torch_loss = F.binary_cross_entropy_with_logits(scores[valid], torch.ones(int(valid.sum())))
    assert loss.item() == pytest.approx(torch_loss.item(), rel=1e-6)
    loss.backward()
    assert torch.all(scores.grad[~valid] == 0)


def test_spatial_bce_with_every_pixel_ignored_is_zero_with_zero_gradient():
    scores = SCORES.clone().requires_grad_()
    loss = spatial_bce_loss(scores, 1.0, valid=torch.zeros_like(VALID))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(scores.grad, torch.zeros_like(scores))


@pytest.mark.parametrize("scores, target, valid, named", [
    (torch.zeros(1, 2, 2, 2), 1.0, None, "confidence_logits"),
    (torch.zeros(1, 1, 2, 2), 2.0, None, "target"),
    (torch.zeros(1, 1, 2, 2), True, None, "target"),
    (torch.zeros(1, 1, 2, 2), 1.0, torch.ones(1, 2, 2), "valid"),
    (torch.full((1, 1, 2, 2), float("nan")), 1.0, None, "confidence_logits"),
])
def test_spatial_bce_refuses_bad_input_naming_it(scores, target, valid, named):
    with pytest.raises(ValueError, match=named):
        spatial_bce_loss(scores, target, valid=valid)


# --- the masked self-training loss ---------------------------------------------------------------
# Pixels a, b / c, d with logits (z_0, z_1): a (0, ln3): argmax 1, CE ln(4/3); b (ln2, 0): argmax 0,
# CE ln(3/2); c (0, 0): argmax 0 (first of a tie), CE ln2; d (ln9, 0): argmax 0, CE ln(10/9).
LOGITS = torch.tensor([[[[0.0, LN(2)], [0.0, LN(9)]], [[LN(3), 0.0], [0.0, 0.0]]]])  # (1, 2, 2, 2)
CONFIDENCE = torch.tensor([[[0.9, 0.1], [0.5, 0.3]]])  # (1, 2, 2)


def test_self_training_loss_against_hand_worked_values():
    assert pseudo_labels(LOGITS).tolist() == [[[1, 0], [0, 0]]]
    logits = LOGITS.clone().requires_grad_()
    loss = self_training_loss(logits, CONFIDENCE, 0.2)  # a, c, d pass; b (0.1) does not
    assert loss.item() == pytest.approx(LN(4 / 3 * 2 * 10 / 9) / 3, rel=1e-6)
    loss.backward()
    assert torch.equal(logits.grad[0, :, 0, 1], torch.zeros(2))  # the pixel below the threshold
    p_a = torch.tensor([0.25, 0.75])  # softmax of pixel a; gradient (p - onehot(1)) / 3
    assert torch.allclose(logits.grad[0, :, 0, 0], (p_a - torch.tensor([0.0, 1.0])) / 3, atol=1e-6)


def test_threshold_passing_nothing_gives_zero_and_passing_everything_gives_ce_against_argmax():
    logits = LOGITS.clone().requires_grad_()
    nothing = self_training_loss(logits, CONFIDENCE, 0.95)
    nothing.backward()
    assert nothing.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    assert float((CONFIDENCE > 0.95).float().mean()) == 0.0
    everything = self_training_loss(LOGITS, CONFIDENCE, 0.05)
    assert everything.item() == pytest.approx(LN(4 / 3 * 3 / 2 * 2 * 10 / 9) / 4, rel=1e-6)
    assert everything.item() == pytest.approx(F.cross_entropy(LOGITS, LOGITS.argmax(1)).item(), rel=1e-6)
    strictly = self_training_loss(LOGITS, CONFIDENCE, 0.5)  # 0.5 itself does not exceed 0.5: only a
    assert strictly.item() == pytest.approx(LN(4 / 3), rel=1e-6)


def test_binary_self_training_and_softmax_confidence():
    logits = torch.tensor([[[[LN(3), -LN(3)]]]])  # (1, 1, 1, 2) sigmoid 3/4 and 1/4
    assert pseudo_labels(logits).tolist() == [[[1, 0]]]
    assert torch.allclose(softmax_confidence(logits), torch.tensor([[[0.75, 0.75]]]))
    assert self_training_loss(logits, torch.ones(1, 1, 2), 0.5).item() == pytest.approx(LN(4 / 3), rel=1e-6)
    assert torch.allclose(softmax_confidence(LOGITS), torch.tensor([[[0.75, 2 / 3], [0.5, 0.9]]]))


def test_self_training_loss_refuses_bad_input():
    with pytest.raises(ValueError, match="confidence"):
        self_training_loss(LOGITS, CONFIDENCE[:, :1], 0.2)
    with pytest.raises(ValueError, match="threshold"):
        self_training_loss(LOGITS, CONFIDENCE, None)
    with pytest.raises(ValueError, match="logits"):
        self_training_loss(LOGITS * float("nan"), CONFIDENCE, 0.2)


# --- the fully-convolutional discriminator ------------------------------------------------------
def test_discriminator_has_the_papers_layers_and_a_map_of_the_input_size():
    disc = ConfidenceMapDiscriminator(21)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    slopes = [m.negative_slope for m in disc.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.2] * 4  # none after the last conv: raw logits
    assert disc(torch.rand(2, 21, 32, 48)).shape == (2, 1, 32, 48)


def test_discriminator_upsamples_its_coarse_map_with_aligned_corners():
    torch.manual_seed(0)
    disc = ConfidenceMapDiscriminator(3, base_channels=4, depth=2)  # 16x16 -> 2x2 coarse map
    x = torch.rand(1, 3, 16, 16)
    coarse, out = disc.model(x), disc(x)
    assert coarse.shape == (1, 1, 2, 2) and out.shape == (1, 1, 16, 16)
    for (i, j), (ci, cj) in {(0, 0): (0, 0), (0, 15): (0, 1), (15, 0): (1, 0), (15, 15): (1, 1)}.items():
        assert out[0, 0, i, j].item() == pytest.approx(coarse[0, 0, ci, cj].item(), abs=1e-6)
    assert [c.out_channels for c in disc.modules() if isinstance(c, nn.Conv2d)] == [4, 8, 1]


def test_discriminator_refuses_too_small_or_wrong_inputs():
    with pytest.raises(ValueError, match="at least 8x8"):
        ConfidenceMapDiscriminator(3, base_channels=4, depth=2).check_input(torch.rand(1, 3, 8, 4))
    with pytest.raises(ValueError, match="channels"):
        ConfidenceMapDiscriminator(3, base_channels=4, depth=2).check_input(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="base_channels"):
        ConfidenceMapDiscriminator(3, base_channels=0)


# --- the labelled / unlabelled split --------------------------------------------------------------
def test_split_is_a_seeded_partition_of_floor_fraction_labelled_samples():
    data = PairData(10)
    labelled, unlabelled = split_labelled(data, fraction=0.25, seed=3)
    assert len(labelled) == 2 and len(unlabelled) == 8  # floor(0.25 * 10), as the authors' int(...)
    both = labelled.indices.tolist() + unlabelled.indices.tolist()
    assert sorted(both) == list(range(10))
    assert labelled.indices.tolist() == sorted(labelled.indices.tolist())
    again, _ = split_labelled(data, fraction=0.25, seed=3)
    assert torch.equal(again.indices, labelled.indices)
    others = {tuple(split_labelled(data, count=3, seed=s)[0].indices.tolist()) for s in range(6)}
    assert len(others) > 1 and all(len(o) == 3 for o in others)


@pytest.mark.parametrize("kwargs, named", [
    ({}, "exactly one"), ({"fraction": 0.5, "count": 2}, "exactly one"), ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.0}, "fraction"), ({"fraction": 0.05}, "fraction"), ({"count": 0}, "count"),
    ({"count": 10}, "count"), ({"count": 2.0}, "count"),
])
def test_split_refuses_sizes_that_leave_a_part_empty(kwargs, named):
    with pytest.raises(ValueError, match=named):
        labelled_count(10, **kwargs)


def test_unlabelled_view_returns_images_only():
    data = BatchedPairData(10)
    _, unlabelled = split_labelled(data, count=4, seed=0)
    first = int(unlabelled.indices[0])
    assert isinstance(unlabelled[0], torch.Tensor) and torch.equal(unlabelled[0], data.images[first])
    positions = torch.tensor([2, 0, 5])
    batch = unlabelled.images(positions)  # through get_batch
    assert torch.equal(batch, data.images[unlabelled.indices[positions]])
    plain = UnlabelledImages(PairData(10), unlabelled.indices)  # no get_batch: stacks items
    assert torch.equal(plain.images(positions), batch)
    assert not hasattr(unlabelled, "masks")  # nothing of the base dataset is passed on


def test_labelled_subset_behaves_like_a_dataset_for_the_engine():
    data = BatchedPairData(10)
    data.num_classes = 2
    epochs = []
    data.set_epoch = epochs.append
    labelled, _ = split_labelled(data, count=4, seed=0)
    image, mask = labelled[1]
    assert torch.equal(image, data.images[labelled.indices[1]]) and torch.equal(mask, data.masks[labelled.indices[1]])
    images, masks = labelled.get_batch(torch.tensor([3, 1]))
    assert torch.equal(masks, data.masks[labelled.indices[[3, 1]]])
    labelled.set_epoch(5)
    assert epochs == [5] and labelled.num_classes == 2
    assert not hasattr(LabelledSubset(PairData(10), [0, 1]), "get_batch")  # then the engine uses a DataLoader
    with pytest.raises(ValueError, match="indices"):
        LabelledSubset(data, [0, 10])
