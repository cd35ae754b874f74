"""GAN objectives, SegAN's multi-scale L1 loss and the critic's input encodings."""
import math

import pytest
import torch
import torch.nn.functional as F

from segan_lib.losses.adversarial import (
    GAN_MODES,
    GANLoss,
    encode_pair,
    encoded_channels,
    label_maps,
    mask_images,
    multiscale_l1_loss,
    segmentation_probs,
)
from segan_lib.models.discriminators import SeganCritic


# --- GANLoss -----------------------------------------------------------------------------
def test_vanilla_discriminator_loss_is_log4_when_it_cannot_tell():
    # D(x) = 1/2 everywhere (score 0): -log(1/2) - log(1/2) = log 4 (Goodfellow et al. 2014)
    zeros = torch.zeros(5)
    assert GANLoss("vanilla").discriminator(zeros, zeros).item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("mode", ["vanilla", "nonsaturating"])
def test_bce_modes_match_torch_bce_with_logits(mode):
    torch.manual_seed(0)
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    expected = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )
    assert torch.allclose(GANLoss(mode).discriminator(real, fake), expected, atol=1e-6)


def test_generator_losses_against_hand_worked_values():
    d = torch.tensor([0.0, 2.0])
    s = torch.sigmoid(d)
    assert GANLoss("nonsaturating").generator(d).item() == pytest.approx(-torch.log(s).mean().item(), abs=1e-6)
    assert GANLoss("vanilla").generator(d).item() == pytest.approx(torch.log(1 - s).mean().item(), abs=1e-6)
    # LSGAN: 0.5 * mean((d - 1)^2) = 0.5 * (1 + 1) / 2
    assert GANLoss("lsgan").generator(d).item() == pytest.approx(0.5)
    assert GANLoss("hinge").generator(d).item() == pytest.approx(-1.0)


def test_lsgan_and_hinge_discriminator_losses_by_hand():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # hinge: mean(relu(1 - real)) = (0 + 0.5)/2, mean(relu(1 + fake)) = (0 + 1)/2
    assert GANLoss("hinge").discriminator(real, fake).item() == pytest.approx(0.75)
    # lsgan: 0.5 * mean((real-1)^2) = 0.5 * (1 + 0.25)/2 ; 0.5 * mean(fake^2) = 0.5 * 4/2
    assert GANLoss("lsgan").discriminator(real, fake).item() == pytest.approx(0.3125 + 1.0)
    assert GANLoss("lsgan").discriminator(torch.ones(3), torch.zeros(3)).item() == 0.0


def test_nonsaturating_generator_keeps_its_gradient_when_the_discriminator_is_sure():
    # The discriminator rejects the fake confidently: score -10.
    grads = {}
    for mode in ("vanilla", "nonsaturating"):
        d = torch.tensor([-10.0], requires_grad=True)
        GANLoss(mode).generator(d).backward()
        grads[mode] = d.grad.abs().item()
    assert grads["vanilla"] < 1e-4  # saturated: log(1 - sigma(d)) is flat there
    assert grads["nonsaturating"] > 0.99


def test_accuracy_uses_the_mode_threshold():
    real, fake = torch.tensor([1.0, -1.0, 0.6, 0.4]), torch.tensor([-1.0, 1.0, 0.3, 0.0])
    # a logit above 0 means sigma > 1/2 ("real"); LSGAN's targets 0 and 1 split at 1/2
    assert {mode: GANLoss(mode).decision_threshold for mode in GAN_MODES} == {
        "vanilla": 0.0, "nonsaturating": 0.0, "lsgan": 0.5, "hinge": 0.0}
    acc_real, acc_fake = GANLoss("nonsaturating").accuracy(real, fake)
    assert (acc_real.item(), acc_fake.item()) == (0.75, 0.5)
    acc_real, acc_fake = GANLoss("lsgan").accuracy(real, fake)  # threshold 0.5
    assert (acc_real.item(), acc_fake.item()) == (0.5, 0.75)
    assert acc_real.dim() == 0 and not acc_real.requires_grad


def test_unknown_gan_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="mode must be one of"):
        GANLoss("wgan")


# --- multi-scale L1 ----------------------------------------------------------------------
def test_multiscale_l1_hand_worked_example():
    real = [torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[1.0]], [[-1.0]]]])]
    fake = [torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0]], [[1.0]]]])]
    # layer 1: (1 + 2 + 3 + 4) / 4 = 2.5 ; layer 2: (1 + 2) / 2 = 1.5 ; mean over layers = 2.0
    assert multiscale_l1_loss(real, fake).item() == pytest.approx(2.0)


def test_multiscale_l1_per_sample_and_batch_mean():
    real = [torch.stack([torch.ones(1, 2, 2), 3 * torch.ones(1, 2, 2)]), torch.zeros(2, 4)]
    fake = [torch.zeros(2, 1, 2, 2), torch.stack([torch.ones(4), torch.zeros(4)])]
    per_sample = multiscale_l1_loss(real, fake, reduction="none")
    # sample 0: (1 + 1) / 2 = 1 ; sample 1: (3 + 0) / 2 = 1.5
    assert torch.allclose(per_sample, torch.tensor([1.0, 1.5]))
    assert multiscale_l1_loss(real, fake).item() == pytest.approx(1.25)


def test_segan_loss_through_the_real_critic_by_hand():
    """x = [[1, 2], [3, 4]], y = [[1, 0], [0, 1]], S(x) = [[1, .5], [0, .25]].

    A one-layer critic whose 4x4 conv (padding 1) sums the whole 2x2 input:
    x o y = [[1, 0], [0, 4]] (sum 5), x o S = [[1, 1], [0, 1]] (sum 3).
    Layer 0 (the input): mean |[0, -1, 0, 3]| = 1; layer 1: |5 - 3| = 2; l_mae = 1.5.
    """
    critic = SeganCritic(1, base_channels=1, depth=1)
    with torch.no_grad():
        conv = critic.layers[0][0]
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = torch.tensor([[[1, 0], [0, 1]]])
    s = torch.tensor([[[[1.0, 0.5], [0.0, 0.25]]]])
    y_maps, _ = label_maps(y, 1)
    loss = multiscale_l1_loss(critic(mask_images(x, y_maps)), critic(mask_images(x, s)))
    assert loss.item() == pytest.approx(1.5)


def test_multiscale_l1_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="equal length"):
        multiscale_l1_loss([torch.zeros(1, 2)], [])
    with pytest.raises(ValueError, match=r"real_features\[0\] \(1, 2\) and fake_features\[0\] \(1, 3\)"):
        multiscale_l1_loss([torch.zeros(1, 2)], [torch.zeros(1, 3)])


# --- masks and encodings -----------------------------------------------------------------
def test_mask_images_is_class_major():
    torch.manual_seed(0)
    images, probs = torch.randn(2, 3, 4, 5), torch.rand(2, 4, 4, 5)
    masked = mask_images(images, probs)
    assert masked.shape == (2, 12, 4, 5)
    for k in range(4):
        for c in range(3):
            assert torch.equal(masked[:, k * 3 + c], images[:, c] * probs[:, k])


def test_mask_images_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="must agree"):
        mask_images(torch.zeros(2, 3, 4, 4), torch.zeros(2, 2, 4, 5))


def test_label_maps_one_hot_binary_and_ignored_pixels():
    target = torch.tensor([[[0, 1], [255, 2]]])
    maps, valid = label_maps(target, 3)
    assert maps.shape == (1, 3, 2, 2)
    assert torch.equal(maps.argmax(1)[0, 0], torch.tensor([0, 1]))
    assert torch.equal(maps[0, :, 1, 0], torch.zeros(3))  # ignored pixel: no class
    assert torch.equal(valid[0, 0], torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    binary, _ = label_maps(torch.tensor([[[0, 1], [1, 0]]]), 1)
    assert torch.equal(binary, torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]))
    with pytest.raises(ValueError, match="target holds label values"):
        label_maps(torch.tensor([[[0, 3]]]), 3)


def test_segmentation_probs_sigmoid_for_one_channel_softmax_otherwise():
    logits = torch.randn(2, 1, 3, 3)
    assert torch.allclose(segmentation_probs(logits), torch.sigmoid(logits))
    logits = torch.randn(2, 4, 3, 3)
    assert torch.allclose(segmentation_probs(logits).sum(1), torch.ones(2, 3, 3))


def test_encode_pair_basic_and_product():
    images, maps = torch.randn(2, 3, 8, 8), torch.rand(2, 4, 8, 8)
    basic = encode_pair(images, maps, "basic")
    assert basic.shape == (2, 7, 8, 8) and encoded_channels(3, 4, "basic") == 7
    assert torch.equal(basic[:, :3], images) and torch.equal(basic[:, 3:], maps)
    product = encode_pair(images, maps, "product")
    assert product.shape[1] == encoded_channels(3, 4, "product") == 12
    with pytest.raises(ValueError, match="encoding must be one of"):
        encode_pair(images, maps, "concat")
