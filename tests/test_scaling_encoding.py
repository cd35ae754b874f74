"""Luc et al.'s "scaling" encoding: the one-hot truth softened towards the prediction, and the
hybrid strategy's ``encoding="scaling"``."""
import math

import pytest
import torch

from segan_lib.losses import SCALING_TAU, encode_pair, encoded_channels, label_maps, scaled_label_maps
from segan_lib.models import UNet
from segan_lib.train.hybrid import HybridStrategy


def _pixel(probs: list[float]) -> torch.Tensor:
    """One pixel's class probabilities as a (1, K, 1, 1) map."""
    return torch.tensor(probs).view(1, -1, 1, 1)


def test_a_hand_worked_pixel():
    # s = (0.5, 0.3, 0.2), true class 1: y_1 = max(0.9, 0.3) = 0.9; the others share 1 - 0.9 = 0.1
    # in proportion to s: y_0 = 0.5 * 0.1 / 0.7 = 1/14, y_2 = 0.2 * 0.1 / 0.7 = 1/35
    maps, valid = scaled_label_maps(torch.tensor([[[1]]]), _pixel([0.5, 0.3, 0.2]))
    assert maps.flatten().tolist() == pytest.approx([1 / 14, 0.9, 1 / 35], abs=1e-7)
    assert valid.flatten().tolist() == [1.0]
    assert SCALING_TAU == 0.9  # the paper's tau


def test_a_pixel_already_sure_of_its_true_class_is_left_as_predicted():
    # s_l = 0.95 >= tau: y_l = max(0.9, 0.95) = 0.95 and (1 - y_l) / (1 - s_l) = 1
    probs = _pixel([0.03, 0.95, 0.02])
    maps, _ = scaled_label_maps(torch.tensor([[[1]]]), probs)
    assert torch.allclose(maps, probs)
    one_hot = _pixel([0.0, 1.0, 0.0])  # s_l = 1: no 0/0
    maps, _ = scaled_label_maps(torch.tensor([[[1]]]), one_hot)
    assert torch.equal(maps, one_hot)


def test_binary_maps_read_as_two_classes():
    # K = 1 holds p = P(class 1). Truth 1, p = 0.3 -> 0.9. Truth 0, p = 0.3: P(class 0) = max(0.9, 0.7) = 0.9,
    # so the map says 0.1. Truth 0, p = 0.05: P(class 0) = max(0.9, 0.95) = 0.95, the map stays 0.05.
    target = torch.tensor([[[1, 0, 0]]])
    probs = torch.tensor([0.3, 0.3, 0.05]).view(1, 1, 1, 3)
    maps, _ = scaled_label_maps(target, probs)
    assert maps.flatten().tolist() == pytest.approx([0.9, 0.1, 0.05], abs=1e-7)


def test_every_valid_pixel_sums_to_one_and_ignored_pixels_are_zero():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(4, 5, 8, 8, generator=g), dim=1)
    target = torch.randint(0, 5, (4, 8, 8), generator=g)
    target[:, :2, :3] = 255
    maps, valid = scaled_label_maps(target, probs)
    ignored = target == 255
    assert torch.allclose(maps.sum(1)[~ignored], torch.ones(int((~ignored).sum())), atol=1e-6)
    assert torch.equal(maps.permute(0, 2, 3, 1)[ignored], torch.zeros(int(ignored.sum()), 5))
    assert torch.equal(valid[:, 0], (~ignored).float())
    true_class = maps.gather(1, target.clamp(max=4)[:, None])[:, 0]  # (B, H, W)
    assert bool((true_class[~ignored] >= SCALING_TAU - 1e-6).all())  # the true class keeps at least tau
    assert bool((maps >= 0).all())


def test_values_alone_tell_a_one_hot_truth_from_a_prediction_but_not_a_scaled_one():
    """The shortcut of notebook 04's exercise 2: a one-hot truth has every pixel maximum exactly 1."""
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(6, 4, 8, 8, generator=g), dim=1)
    target = torch.randint(0, 4, (6, 8, 8), generator=g)

    def looks_one_hot(maps: torch.Tensor) -> torch.Tensor:  # (B,) True if every pixel's maximum is 1
        return (maps.amax(dim=1) == 1).flatten(1).all(dim=1)

    one_hot, _ = label_maps(target, 4)
    scaled, _ = scaled_label_maps(target, probs)
    assert bool(looks_one_hot(one_hot).all()) and not bool(looks_one_hot(probs).any())
    assert not bool(looks_one_hot(scaled).any())


def test_probs_are_detached_and_bad_input_is_a_clear_error():
    probs = torch.softmax(torch.randn(1, 3, 2, 2), dim=1).requires_grad_()
    maps, _ = scaled_label_maps(torch.zeros(1, 2, 2, dtype=torch.long), probs)
    assert not maps.requires_grad
    for tau in (0.0, 1.0, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="tau must be a number in"):
            scaled_label_maps(torch.zeros(1, 2, 2, dtype=torch.long), probs, tau=tau)
    with pytest.raises(ValueError, match="must agree in batch and spatial size"):
        scaled_label_maps(torch.zeros(1, 3, 3, dtype=torch.long), probs)
    with pytest.raises(ValueError, match="target holds label values"):
        scaled_label_maps(torch.full((1, 2, 2), 3), probs)


def test_encode_pair_scaling_stacks_image_and_maps():
    images, maps = torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4, 4)
    pair = encode_pair(images, maps, "scaling")
    assert pair.shape == (2, encoded_channels(3, 4, "scaling"), 4, 4) == (2, 7, 4, 4)
    assert torch.equal(pair, encode_pair(images, maps, "basic"))


def _hybrid(k: int) -> HybridStrategy:
    torch.manual_seed(0)
    strategy = HybridStrategy(UNet(3, k, base_channels=4, depth=2), in_channels=3, num_classes=max(k, 2),
                              critic_base_channels=4, encoding="scaling", lambda_adv=0.5)
    strategy.configure_optimizers()
    return strategy


def _batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    masks = torch.randint(0, max(k, 2), (2, 16, 16), generator=g)
    masks[0, 0, :3] = 255
    return torch.randn(2, 3, 16, 16, generator=g), masks


@pytest.mark.parametrize("k", [1, 4])
def test_hybrid_scaling_encodes_the_truth_with_the_prediction(k):
    strategy = _hybrid(k)
    images, masks = _batch(k)
    logits, real_pairs, fake_pairs = strategy.forward_pass(images, masks)
    _, valid = label_maps(masks, k)
    probs = (torch.sigmoid(logits) if k == 1 else torch.softmax(logits, dim=1)) * valid
    expected_truth, _ = scaled_label_maps(masks, probs)
    assert torch.allclose(real_pairs, encode_pair(images, expected_truth, "basic"), atol=1e-6)
    assert torch.allclose(fake_pairs, encode_pair(images, probs, "basic"), atol=1e-6)  # the prediction as it is
    assert not real_pairs.requires_grad and fake_pairs.requires_grad
    assert strategy.nets["discriminator"].check_input(real_pairs) is None  # C + K channels


def test_hybrid_scaling_critic_step_leaves_the_segmentor_alone_and_training_runs():
    strategy = _hybrid(4)
    images, masks = _batch(4)
    segmentor = strategy.nets["segmentor"]
    before = {name: value.clone() for name, value in segmentor.state_dict().items()}
    logits, real_pairs, fake_pairs = strategy.forward_pass(images, masks)
    strategy.critic_step(real_pairs, fake_pairs)
    assert all(p.grad is None for p in segmentor.parameters())  # the scaled truth carries no gradient
    assert all(torch.equal(value, before[name]) for name, value in segmentor.state_dict().items())
    logs = strategy.train_step(images, masks, step=1)
    assert all(math.isfinite(value.item()) for value in logs.values())
    assert math.isclose(logs["loss_segmentor"].item(), logs["loss_pixel"].item() + 0.5 * logs["loss_adv"].item(),
                        rel_tol=1e-5)
