"""Toy 2-D GAN parts: the MLPs, the Gaussian-mixture data, the coverage measure, the 2-D plots."""
import math

import pytest
import torch
from matplotlib.figure import Figure

from segan_lib.data.toy2d import GaussianMixture2D, grid_centers, ring_centers
from segan_lib.models import MinibatchStdDev, ToyDiscriminator, ToyGenerator
from segan_lib.viz.gan import plot_real_vs_generated, plot_samples_over_training



def test_toy_nets_map_noise_to_points_and_points_to_one_logit():
    torch.manual_seed(0)
    g, d = ToyGenerator(z_dim=3, hidden=16, n_hidden=2), ToyDiscriminator(hidden=16, n_hidden=2)
    z = g.sample_noise(5)
    assert z.shape == (5, 3)
    x = g(z)
    assert x.shape == (5, 2) and d(x).shape == (5,)


@pytest.mark.parametrize("bad, word", [(torch.zeros(4, 3), r"\(B, 2\)"), (torch.zeros(4, 2, dtype=torch.long), "floating")])
def test_toy_discriminator_rejects_bad_points(bad, word):
    with pytest.raises(ValueError, match=word):
        ToyDiscriminator()(bad)


def test_toy_generator_rejects_wrong_noise_size_and_bad_widths():
    with pytest.raises(ValueError, match=r"z must have shape \(B, 2\)"):
        ToyGenerator(z_dim=2)(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="hidden"):
        ToyGenerator(hidden=0)


def test_minibatch_std_appends_the_mean_feature_std_of_the_batch():
    h = torch.tensor([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])
    out = MinibatchStdDev(eps=0.0)(h)
    # per-feature population std: [sqrt(8/3), sqrt(8/3)] -> mean sqrt(8/3)
    assert out.shape == (3, 3)
    assert torch.allclose(out[:, 2], torch.full((3,), math.sqrt(8 / 3)))
    assert torch.equal(out[:, :2], h)
    with pytest.raises(ValueError, match="at least 2"):
        MinibatchStdDev()(h[:1])


def test_minibatch_std_discriminator_sees_a_collapsed_batch():
    torch.manual_seed(0)
    d = ToyDiscriminator(hidden=8, n_hidden=1, minibatch_std=True)
    spread = torch.randn(16, 2)
    collapsed = spread[:1].repeat(16, 1)
    with_spread = d(spread)[0]
    alone = d(collapsed)[0]  # the same first point, in a batch without spread
    assert not torch.isclose(with_spread, alone)


def test_ring_centers_lie_on_the_circle_evenly_spaced():
    c = ring_centers(8, radius=2.0)
    assert c.shape == (8, 2)
    assert torch.allclose(c.norm(dim=1), torch.full((8,), 2.0), atol=1e-6)
    assert torch.allclose(c[2], torch.tensor([0.0, 2.0]), atol=1e-6)  # 2 * 45 degrees


def test_grid_centers_are_centred_and_spaced():
    c = grid_centers(3, spacing=2.0)
    assert c.shape == (9, 2)
    assert torch.allclose(c.mean(dim=0), torch.zeros(2))
    assert set(c[:, 0].tolist()) == {-2.0, 0.0, 2.0}


def test_mixture_batches_equal_stacked_items_and_are_seeded():
    data = GaussianMixture2D.ring(n=500, seed=3)
    idx = torch.tensor([4, 0, 499, 17])
    points, modes = data.get_batch(idx)
    assert points.shape == (4, 2) and points.dtype == torch.float32 and modes.dtype == torch.int64
    assert torch.equal(points, torch.stack([data[i][0] for i in idx.tolist()]))
    assert torch.equal(modes, torch.stack([data[i][1] for i in idx.tolist()]))
    assert torch.equal(GaussianMixture2D.ring(n=500, seed=3).points, data.points)
    assert not torch.equal(GaussianMixture2D.ring(n=500, seed=4).points, data.points)
    with pytest.raises(ValueError, match="indices"):
        data.get_batch(torch.tensor([0.5]))


def test_mixture_points_have_the_stated_spread_around_their_mode():
    data = GaussianMixture2D.ring(n=20_000, std=0.1, seed=0)
    offsets = data.points - data.centers[data.modes]
    assert abs(offsets.std().item() - 0.1) < 0.003
    assert abs(offsets.mean().item()) < 0.003
    counts = torch.bincount(data.modes, minlength=8).float() / len(data)
    assert torch.allclose(counts, torch.full((8,), 1 / 8), atol=0.01)


def test_mixture_density_integrates_to_one():
    data = GaussianMixture2D.grid(side=2, spacing=2.0, std=0.3)
    axis = torch.linspace(-4, 4, 401)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    p = data.density(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))
    assert abs(p.sum().item() * (8 / 400) ** 2 - 1.0) < 1e-3


def test_coverage_counts_modes_quality_and_collapse():
    data = GaussianMixture2D.ring(std=0.05)
    perfect = data.centers.repeat(10, 1)  # 10 samples exactly on each centre
    c = data.coverage(perfect)
    assert c == {"modes_covered": 8.0, "n_modes": 8.0, "high_quality": 1.0, "largest_share": 1 / 8}
    collapsed = data.centers[:1].repeat(80, 1) + 0.1  # near mode 0 but 2.8 std away
    c = data.coverage(collapsed)
    assert c["modes_covered"] == 1.0 and c["largest_share"] == 1.0 and c["high_quality"] == 1.0
    far = data.centers[:1].repeat(80, 1) * 1.2  # 0.4 = 8 std from mode 0
    assert data.coverage(far)["high_quality"] == 0.0 and data.coverage(far)["modes_covered"] == 0.0
    # a mode with fewer than min_share * N / M good samples does not count
    skewed = torch.cat([data.centers[:1].repeat(77, 1), data.centers[1:4]])  # 1 sample on modes 1..3
    assert data.coverage(skewed, min_share=0.25)["modes_covered"] == 1.0
    assert data.coverage(skewed, min_share=0.05)["modes_covered"] == 4.0
    assert data.mode_counts(skewed).tolist() == [77, 1, 1, 1, 0, 0, 0, 0]


def test_mixture_rejects_bad_arguments():
    with pytest.raises(ValueError, match="centers"):
        GaussianMixture2D(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="std"):
        GaussianMixture2D.ring(std=0.0)
    with pytest.raises(ValueError, match="samples"):
        GaussianMixture2D.ring().coverage(torch.zeros(5, 3))


def test_2d_plots_draw_every_point():
    data = GaussianMixture2D.ring(n=100)
    fake = torch.randn(30, 2)
    fig = plot_real_vs_generated(data.points, fake)
    assert isinstance(fig, Figure)
    sizes = [len(col.get_offsets()) for col in fig.axes[0].collections]
    assert sizes == [100, 30]
    snaps = [{"step": s, "samples": fake, "logs": {}} for s in (10, 20, 30, 40, 50, 60, 70)]
    fig = plot_samples_over_training(snaps, data.points, n_panels=4, coverage=data.coverage)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4 and titles[0].startswith("step 10") and titles[-1].startswith("step 70")
    assert "modes" in titles[0]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_real_vs_generated(data.points, torch.zeros(3, 3))
