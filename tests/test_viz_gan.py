"""GAN plots: points, mask grids, both players' losses, snapshots; and the scrubber's label text."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from segan_lib.gan_widgets import snapshot_label  # noqa: E402
from segan_lib.viz.gan import (  # noqa: E402
    draw_losses, draw_mask_grid, draw_points, plot_gan_losses, plot_snapshot, snapshots_history,
)

HISTORY = {"step": [0, 10, 20], "loss_discriminator": [1.4, 1.2, 1.3], "loss_generator": [0.7, 0.9, 0.8]}



def snapshots(samples: torch.Tensor, n: int = 3) -> list[dict]:
    return [{"step": 10 * (i + 1), "samples": samples, "logs": {"loss_discriminator": 1.0 + i, "loss_generator": 0.25 * i}}
            for i in range(n)]


def test_draw_points_scatters_real_then_fake_in_a_square_window():
    ax = Figure().add_subplot()
    real, fake = torch.tensor([[0.0, 1.0], [2.0, -1.0]]), np.array([[0.5, 0.5]])
    draw_points(ax, real, fake, extent=2.5, title="t")
    offsets = [c.get_offsets().tolist() for c in ax.collections]
    assert offsets == [[[0.0, 1.0], [2.0, -1.0]], [[0.5, 0.5]]]
    assert ax.get_xlim() == (-2.5, 2.5) and ax.get_ylim() == (-2.5, 2.5) and ax.get_title() == "t"
    draw_points(ax, None, fake)  # real may be left out
    with pytest.raises(ValueError, match=r"real must have shape \(N, 2\), got shape \(2, 3\)"):
        draw_points(ax, torch.zeros(2, 3), None)


def test_draw_mask_grid_shows_the_tiled_masks_on_a_subplot():
    fig = Figure()
    masks = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 1.0, 0.25)])  # (3, 1, 2, 2)
    draw_mask_grid(fig, masks, n_cols=2, title="three", subplot=(1, 2, 2))
    (ax,) = fig.axes
    grid = ax.images[0].get_array()
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1)  # 2 rows, 2 columns of 2x2 masks, 1-pixel lines
    assert np.allclose(grid[1:3, 4:6], 1.0) and np.allclose(grid[4:6, 1:3], 0.25) and np.allclose(grid[4:6, 4:6], 0.5)
    assert ax.get_title() == "three" and ax.get_subplotspec().colspan.start == 1


def test_draw_losses_plots_each_key_against_step_with_a_marker():
    ax = Figure().add_subplot()
    draw_losses(ax, HISTORY, upto_step=10)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines[:2]] == ["discriminator loss", "generator loss"]
    assert lines[0].get_xydata().tolist() == [[0, 1.4], [10, 1.2], [20, 1.3]]
    assert list(lines[2].get_xdata()) == [10, 10]  # the vertical line at upto_step
    with pytest.raises(ValueError, match="history must have a 'step' list"):
        draw_losses(ax, {"loss_discriminator": [1.0]})
    with pytest.raises(ValueError, match="history has no 'loss_generator'"):
        draw_losses(ax, {"step": [0], "loss_discriminator": [1.0]})
    with pytest.raises(ValueError, match=r"history\['loss_discriminator'\] has 2 values but history\['step'\] has 3"):
        draw_losses(ax, {**HISTORY, "loss_discriminator": [1.0, 2.0]})


def test_plot_gan_losses_marks_the_equilibrium_values():
    fig = plot_gan_losses(HISTORY, title="game")
    (ax,) = fig.axes
    assert ax.get_title() == "game"
    levels = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()[2:]}
    # at D = 1/2 everywhere: loss_discriminator = -2 log(1/2) = 2 log 2 and loss_generator = -log(1/2) = log 2
    assert levels == {"D = 1/2: 2 log 2": pytest.approx(2 * math.log(2)), "D = 1/2: log 2": pytest.approx(math.log(2))}


def test_snapshots_history_collects_the_logs():
    snaps = snapshots(torch.zeros(1, 2))
    del snaps[2]["logs"]["loss_generator"]
    history = snapshots_history(snaps)
    assert history["step"] == [10.0, 20.0, 30.0] and history["loss_discriminator"] == [1.0, 2.0, 3.0]
    assert history["loss_generator"][:2] == [0.0, 0.25] and math.isnan(history["loss_generator"][2])
    assert snapshots_history([]) == {"step": []}


def test_plot_snapshot_draws_the_discriminator_field_under_2d_samples():
    snaps = snapshots(torch.randn(5, 2))
    d_grid = torch.linspace(0, 1, 16).reshape(4, 4)
    snaps[1] |= {"d_grid": d_grid, "grid_extent": 2.0}
    fig = plot_snapshot(snaps, 1, real=torch.randn(7, 2))
    samples_ax = fig.axes[0]
    np.testing.assert_allclose(samples_ax.images[0].get_array(), d_grid.numpy())
    assert samples_ax.images[0].get_extent() == [-2.0, 2.0, -2.0, 2.0]
    assert [len(c.get_offsets()) for c in samples_ax.collections] == [7, 5]
    assert any(ax.get_ylabel() == "D(x)" for ax in fig.axes)  # the colour bar
    with pytest.raises(ValueError, match=r"index must be in \[0, 2\], got -1"):
        plot_snapshot(snaps, -1)


def test_snapshot_label_gives_the_step_and_both_losses():
    snaps = snapshots(torch.zeros(1, 2))
    assert snapshot_label(snaps, 2) == "step 30: loss of D 3.000, loss of G 0.500"
