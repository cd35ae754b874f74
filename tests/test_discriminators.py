"""Shapes, receptive field, spectral norm and input checks of the critics and discriminators."""
import pytest
import torch

from segan_lib.models.discriminators import (
    LucDiscriminator,
    PatchGANDiscriminator,
    SeganCritic,
    patchgan_receptive_field,
)


def test_segan_critic_returns_input_and_every_layer():
    critic = SeganCritic(12, base_channels=8, depth=4)
    x = torch.randn(2, 12, 32, 32)
    features = critic(x)
    assert [tuple(f.shape) for f in features] == [
        (2, 12, 32, 32),
        (2, 8, 16, 16),
        (2, 16, 8, 8),
        (2, 32, 4, 4),
        (2, 64, 2, 2),
    ]
    assert features[0] is x
    assert len(SeganCritic(3, depth=2, include_input=False)(torch.randn(1, 3, 8, 8))) == 2


def test_segan_critic_without_batch_norm_treats_samples_independently():
    torch.manual_seed(0)
    critic = SeganCritic(3, base_channels=4, depth=2, batch_norm=False)
    x = torch.randn(4, 3, 16, 16)
    assert torch.allclose(critic(x[:1])[-1], critic(x)[-1][:1], atol=1e-6)


def test_segan_critic_batch_norm_uses_batch_statistics_and_keeps_no_state():
    torch.manual_seed(0)
    critic = SeganCritic(3, base_channels=4, depth=2)  # batch norm on layers 2.. as in the authors' code
    assert len(list(critic.buffers())) == 0  # no running averages: a forward pass changes nothing
    norm = critic.layers[1][1]
    assert isinstance(norm, torch.nn.BatchNorm2d) and isinstance(critic.layers[0][1], torch.nn.Identity)
    seen = {}
    norm.register_forward_hook(lambda m, i, o: seen.update(out=o))
    critic(5 * torch.randn(6, 3, 16, 16) + 3)
    # y = gamma * (x - batch mean) / batch std + beta: per-channel mean beta = 0, std |gamma| ~ 1
    assert torch.allclose(seen["out"].mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(seen["out"].std(dim=(0, 2, 3)), norm.weight.detach().abs(), rtol=0.02)


def test_segan_critic_rejects_bad_input():
    critic = SeganCritic(3, depth=3)
    critic.check_input(torch.randn(1, 3, 16, 24))  # fits: no error
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 8"):
        critic.check_input(torch.randn(1, 3, 12, 16))
    with pytest.raises(ValueError, match="must have 3 channels"):
        critic.check_input(torch.randn(1, 4, 16, 16))


def test_luc_discriminator_gives_one_score_per_image():
    disc = LucDiscriminator(7, base_channels=8, depth=3)
    assert disc(torch.randn(3, 7, 40, 24)).shape == (3, 1)
    with pytest.raises(ValueError, match="must have 7 channels"):
        disc.check_input(torch.randn(3, 6, 40, 24))


def test_patchgan_output_size_and_70_pixel_receptive_field():
    assert patchgan_receptive_field(3) == 70
    assert patchgan_receptive_field(1) == 16
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(2, base_channels=4, n_layers=3, norm="none")
    assert disc(torch.randn(2, 2, 64, 64)).shape == (2, 1, 6, 6)
    # Measure it: the gradient of one central score reaches exactly a 70x70 window.
    x = torch.randn(1, 2, 128, 128, requires_grad=True)
    out = disc(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(dim=1).nonzero(), seen.any(dim=0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70
    assert int(cols.max() - cols.min() + 1) == 70


def test_patchgan_norms_and_too_small_input():
    for norm in ("batch", "instance", "none"):
        assert PatchGANDiscriminator(3, base_channels=4, norm=norm)(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="norm must be one of"):
        PatchGANDiscriminator(3, norm="layer")
    PatchGANDiscriminator(3, base_channels=4).check_input(torch.randn(1, 3, 24, 24))  # one score: fits
    with pytest.raises(ValueError, match="at least 24x24"):
        PatchGANDiscriminator(3, base_channels=4).check_input(torch.randn(1, 3, 20, 20))


@pytest.mark.parametrize(
    "make",
    [
        lambda: SeganCritic(3, base_channels=4, depth=2, spectral_norm=True),
        lambda: LucDiscriminator(3, base_channels=4, depth=2, spectral_norm=True),
        lambda: PatchGANDiscriminator(3, base_channels=4, n_layers=2, norm="none", spectral_norm=True),
    ],
)
def test_spectral_norm_bounds_every_layer_near_one(make):
    torch.manual_seed(0)
    net = make()
    x = torch.randn(2, 3, 32, 32)
    for _ in range(30):  # power iterations run in training-mode forward passes
        net(x)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs
    for layer in convs:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_constructors_reject_non_positive_sizes():
    with pytest.raises(ValueError, match="depth must be > 0"):
        SeganCritic(3, depth=0)
    with pytest.raises(ValueError, match="in_channels must be > 0"):
        LucDiscriminator(0)
    with pytest.raises(ValueError, match="n_layers must be > 0"):
        PatchGANDiscriminator(3, n_layers=0)
