"""The loss explorer: its plain update functions, and the widget wiring them to sliders."""
import base64

import ipywidgets as widgets
import pytest
from matplotlib.figure import Figure

from segan_lib.viz.losses import LossExplorerParams
from segan_lib.widgets import (
    LOSS_EXPLORER_SLIDERS,
    LossExplorer,
    SliderSpec,
    figure_png,
    loss_explorer,
    params_from_slider_values,
    update_loss_explorer,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DESCRIPTIONS = ["gamma", "alpha", "smooth", "fg fraction", "p(true)"]


def test_slider_descriptions_and_defaults_within_range():
    assert [spec.description for spec in LOSS_EXPLORER_SLIDERS.values()] == DESCRIPTIONS
    assert LOSS_EXPLORER_SLIDERS["gamma"] == SliderSpec("gamma", 0.0, 5.0, 0.25)
    defaults = LossExplorerParams()
    for field, spec in LOSS_EXPLORER_SLIDERS.items():
        assert spec.min <= getattr(defaults, field) <= spec.max
        LossExplorerParams(**{field: spec.min})  # both ends are valid params
        LossExplorerParams(**{field: spec.max})


def test_params_from_slider_values_by_description_or_field():
    values = {"gamma": 1.0, "alpha": 0.5, "smooth": 2.0, "fg fraction": 0.2, "p(true)": 0.9}
    expected = LossExplorerParams(gamma=1.0, alpha=0.5, smooth=2.0, fg_fraction=0.2, p_true=0.9)
    assert params_from_slider_values(values) == expected
    by_field = {"gamma": 1.0, "alpha": 0.5, "smooth": 2.0, "fg_fraction": 0.2, "p_true": 0.9}
    assert params_from_slider_values(by_field) == expected


def test_params_from_slider_values_names_missing_unknown_and_bad_values():
    values = {"gamma": 1.0, "alpha": 0.5, "smooth": 2.0, "fg fraction": 0.2}
    with pytest.raises(ValueError, match=r"lacks the sliders \['p\(true\)'\]"):
        params_from_slider_values(values)
    with pytest.raises(ValueError, match="unknown slider 'beta'"):
        params_from_slider_values({**values, "p(true)": 0.5, "beta": 1.0})
    with pytest.raises(ValueError, match="p_true must be strictly between 0 and 1"):
        params_from_slider_values({**values, "p(true)": 1.0})


def test_update_returns_a_png_that_follows_the_params():
    fig = Figure()
    first = update_loss_explorer(fig, LossExplorerParams())
    again = update_loss_explorer(fig, LossExplorerParams())
    other = update_loss_explorer(fig, LossExplorerParams(gamma=0.0, p_true=0.3))
    assert first.startswith(PNG_MAGIC) and first == again  # deterministic redraw
    assert other != first
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="params must be a LossExplorerParams"):
        update_loss_explorer(fig, {"gamma": 2.0})


def test_figure_png_renders_a_pyplot_free_figure():
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    assert figure_png(fig).startswith(PNG_MAGIC)


def test_explorer_sliders_redraw_the_image():
    explorer = loss_explorer()
    try:
        assert isinstance(explorer, LossExplorer) and isinstance(explorer, widgets.VBox)
        sliders = explorer.sliders
        assert [s.description for s in sliders.values()] == DESCRIPTIONS
        assert all(isinstance(s, widgets.FloatSlider) for s in sliders.values())
        assert explorer.params == LossExplorerParams()
        before = bytes(explorer.image.value)
        assert before.startswith(PNG_MAGIC)
        sliders["gamma"].value = 4.0  # as a user dragging the slider would
        after = bytes(explorer.image.value)
        assert after != before
        assert explorer.params.gamma == 4.0
        assert after == update_loss_explorer(Figure(figsize=(10, 3.8)), explorer.params)
        explorer.set_params(LossExplorerParams(fg_fraction=0.3, p_true=0.2))
        assert explorer.params == LossExplorerParams(fg_fraction=0.3, p_true=0.2)
    finally:
        explorer.close()


def test_explorer_starts_from_the_given_params_with_each_slider_range():
    params = LossExplorerParams(gamma=0.5, alpha=0.75, smooth=3.0, fg_fraction=0.05, p_true=0.25)
    explorer = LossExplorer(params)
    try:
        assert explorer.params == params
        for field, slider in explorer.sliders.items():
            spec = LOSS_EXPLORER_SLIDERS[field]
            assert (slider.min, slider.max, slider.step) == (spec.min, spec.max, spec.step)
        assert bytes(explorer.image.value).startswith(PNG_MAGIC)
    finally:
        explorer.close()


def test_display_without_a_front_end_still_shows_the_plot():
    explorer = loss_explorer(LossExplorerParams(p_true=0.5))
    try:
        bundle = explorer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle  # JupyterLab renders the widget
        assert base64.b64decode(bundle["image/png"]) == bytes(explorer.image.value)  # nbval sees a PNG
    finally:
        explorer.close()
