"""The loss landscapes show the library's losses, and match the closed forms of the explorer's model."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segan_lib.viz.losses import (  # noqa: E402
    LOSS_LABELS,
    LossExplorerParams,
    explorer_image,
    loss_curves,
    plot_focal_down_weighting,
    plot_loss_landscape,
)

N = 100


def closed_forms(params: LossExplorerParams, p: np.ndarray, n: int = N) -> dict[str, np.ndarray]:
    """Loss and N |dL/dx| of one foreground pixel, worked by hand for the explorer's image."""
    n_fg = max(1, round(params.fg_fraction * n))
    n_bg = n - n_fg
    g, a, s = params.gamma, params.alpha, params.smooth
    ce, ce_grad = -np.log(p), 1 - p
    mean_alpha = (n_fg * a + n_bg * (1 - a)) / n
    focal = mean_alpha * (1 - p) ** g * -np.log(p)
    focal_grad = a * (1 - p) ** g * np.abs(g * p * np.log(p) + p - 1)  # Lin et al., y = +1
    numerator = 2 * n_fg * p + s
    denominator = n_fg * p + n_bg * (1 - p) + n_fg + s
    dice = 1 - numerator / denominator
    # dDice/dp_i = (numerator - 2 g_i denominator) / denominator^2, times dp/dx = p (1 - p)
    dice_grad = n * p * (1 - p) * np.abs(numerator - 2 * denominator) / denominator**2
    # both parts push a foreground logit up (same sign), so the magnitudes add
    return {"ce": ce, "ce_grad": ce_grad, "focal": focal, "focal_grad": focal_grad, "dice": dice,
            "dice_grad": dice_grad, "dice_ce": dice + ce, "dice_ce_grad": dice_grad + ce_grad}


@pytest.mark.parametrize("params", [
    LossExplorerParams(),
    LossExplorerParams(gamma=0.0, alpha=0.5, smooth=0.0, fg_fraction=0.5),
    LossExplorerParams(gamma=4.0, alpha=0.9, smooth=10.0, fg_fraction=0.01),
])
def test_curves_match_closed_forms(params):
    curves = loss_curves(params)
    p = curves["p"]
    assert p.shape == (99,) and p[0] == pytest.approx(0.01) and p[-1] == pytest.approx(0.99)
    expected = closed_forms(params, p)
    assert set(curves) == {"p"} | set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(curves[key], values, rtol=1e-9, atol=1e-12, err_msg=key)


def test_curves_at_one_point_and_bad_points():
    params = LossExplorerParams(p_true=0.3)
    marked = loss_curves(params, np.array([params.p_true]))
    assert marked["dice"].shape == (1,)
    assert marked["ce"][0] == pytest.approx(-math.log(0.3))
    with pytest.raises(ValueError, match="p_true"):
        loss_curves(params, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="p_true must be a non-empty 1-D"):
        loss_curves(params, np.zeros((2, 2)))


def test_dice_gradient_grows_as_foreground_shrinks_while_ce_does_not():
    small = loss_curves(LossExplorerParams(fg_fraction=0.02), np.array([0.5]))
    large = loss_curves(LossExplorerParams(fg_fraction=0.5), np.array([0.5]))
    assert small["ce_grad"][0] == pytest.approx(large["ce_grad"][0])
    assert small["dice_grad"][0] > 2 * large["dice_grad"][0]


def test_explorer_image_gives_every_pixel_the_same_p_true():
    logits, target = explorer_image(0.8, 0.25, num_pixels=20)
    assert logits.shape == (1, 1, 1, 20) and target.shape == (1, 1, 20)
    assert target.dtype == torch.int64 and int(target.sum()) == 5
    p_fg = torch.sigmoid(logits[0, 0])  # (1, 20)
    p_true = torch.where(target == 1, p_fg, 1 - p_fg)
    torch.testing.assert_close(p_true, torch.full_like(p_true, 0.8))
    assert int(explorer_image(0.5, 0.001, num_pixels=10)[1].sum()) == 1  # at least one foreground pixel
    assert int(explorer_image(0.5, 0.999, num_pixels=10)[1].sum()) == 9  # at least one background pixel


@pytest.mark.parametrize("field, value", [
    ("gamma", -0.5), ("alpha", 0.0), ("alpha", 1.0), ("smooth", -1.0), ("fg_fraction", 0.0),
    ("fg_fraction", 1.5), ("p_true", 1.0),
])
def test_params_reject_out_of_range_values(field, value):
    with pytest.raises(ValueError, match=field):
        LossExplorerParams(**{field: value})


def test_landscape_marks_p_true_and_redraws_in_place():
    fig = plot_loss_landscape(LossExplorerParams(p_true=0.4))
    try:
        assert len(fig.axes) == 2
        for ax in fig.axes:
            curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 99]
            assert len(curves) == len(LOSS_LABELS)
            markers = [line for line in ax.get_lines() if list(line.get_xdata()) == [0.4]]
            assert len(markers) == len(LOSS_LABELS)
        plot_loss_landscape(LossExplorerParams(p_true=0.6), fig=fig)
        assert len(fig.axes) == 2  # cleared, not stacked
        assert any(list(line.get_xdata()) == [0.6] for line in fig.axes[0].get_lines())
    finally:
        plt.close(fig)


def test_focal_down_weighting_ratio_is_one_minus_p_to_the_gamma():
    fig = plot_focal_down_weighting(gammas=(0.0, 2.0))
    try:
        ratio_axis = fig.axes[1]
        for line, gamma in zip(ratio_axis.get_lines(), (0.0, 2.0)):
            p = np.asarray(line.get_xdata())
            np.testing.assert_allclose(line.get_ydata(), (1 - p) ** gamma, rtol=1e-9)
    finally:
        plt.close(fig)
