"""ipywidgets builders for the notebooks (ipywidgets 8, JupyterLab 4).

Every widget here is thin wiring: the work is done by plain functions that take values and
return values (:func:`params_from_slider_values`, :func:`update_loss_explorer`), so they are
unit-tested without a browser. The plots are rendered to PNG by matplotlib's Agg canvas and
shown in an ``ipywidgets.Image``, so the widgets work with ``%matplotlib inline`` and need no
ipympl.

Without a widget front-end (nbval, nbconvert, a notebook viewer) a displayed explorer still
shows its current view: its MIME bundle carries an ``image/png`` copy of the plot next to the
widget view, and front-ends that cannot render widgets fall back to the picture.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from segan_lib.viz.losses import LossExplorerParams, plot_loss_landscape


@dataclass(frozen=True)
class SliderSpec:
    """One slider: its visible label (``description``) and its range."""

    description: str
    min: float
    max: float
    step: float


# Keys are the fields of LossExplorerParams; descriptions are the labels a user (or a
# browser test) sees next to each slider.
LOSS_EXPLORER_SLIDERS: dict[str, SliderSpec] = {
    "gamma": SliderSpec("gamma", 0.0, 5.0, 0.25),
    "alpha": SliderSpec("alpha", 0.05, 0.95, 0.05),
    "smooth": SliderSpec("smooth", 0.0, 20.0, 0.5),
    "fg_fraction": SliderSpec("fg fraction", 0.01, 0.5, 0.01),
    "p_true": SliderSpec("p(true)", 0.01, 0.99, 0.01),
}


def params_from_slider_values(values: Mapping[str, float]) -> LossExplorerParams:
    """Explorer parameters from slider values keyed by description (``"fg fraction"``) or field.

    Raises ``ValueError`` naming a missing or unknown slider, or an out-of-range value.
    """
    by_description = {spec.description: field for field, spec in LOSS_EXPLORER_SLIDERS.items()}
    fields: dict[str, float] = {}
    for key, value in values.items():
        field = by_description.get(key, key)
        if field not in LOSS_EXPLORER_SLIDERS:
            raise ValueError(
                f"values holds an unknown slider {key!r}; expected one of {sorted(by_description)}")
        fields[field] = float(value)
    missing = sorted(LOSS_EXPLORER_SLIDERS[f].description for f in LOSS_EXPLORER_SLIDERS if f not in fields)
    if missing:
        raise ValueError(f"values lacks the sliders {missing}")
    return LossExplorerParams(**fields)


def figure_png(fig: Figure, *, dpi: int = 80) -> bytes:
    """The figure rendered to PNG bytes with the Agg canvas (no pyplot, no GUI)."""
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def update_loss_explorer(fig: Figure, params: LossExplorerParams) -> bytes:
    """The explorer's redraw: redraw the landscape of ``params`` into ``fig``; return its PNG.

    See :func:`segan_lib.viz.losses.plot_loss_landscape` for what the two panels show.
    """
    if not isinstance(params, LossExplorerParams):
        raise ValueError(f"params must be a LossExplorerParams, got {type(params).__name__}")
    plot_loss_landscape(params, fig=fig)
    return figure_png(fig)


class PngFallback:
    """Mixin for a widget with an ``image`` (``ipywidgets.Image`` holding a PNG): its MIME
    bundle also carries that PNG, shown by front-ends that cannot render widgets."""

    image: widgets.Image

    def _repr_mimebundle_(self, **kwargs) -> dict | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:  # None once the widget is closed
            bundle["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        return bundle


class LossExplorer(PngFallback, widgets.VBox):
    """Five sliders over a picture of all pixel losses; moving a slider redraws the picture.

    Attributes:
        sliders: field name (``"gamma"``, ``"alpha"``, ``"smooth"``, ``"fg_fraction"``,
            ``"p_true"``) -> ``FloatSlider`` (descriptions: see ``LOSS_EXPLORER_SLIDERS``).
        image: the ``ipywidgets.Image`` holding the current PNG.
        figure: the (pyplot-free) matplotlib Figure redrawn in place.
    """

    def __init__(self, params: LossExplorerParams | None = None) -> None:
        params = LossExplorerParams() if params is None else params
        self.figure = Figure(figsize=(10, 3.8))
        self.sliders = {
            field: widgets.FloatSlider(
                value=getattr(params, field), min=spec.min, max=spec.max, step=spec.step,
                description=spec.description, continuous_update=False, readout_format=".2f",
                style={"description_width": "80px"})
            for field, spec in LOSS_EXPLORER_SLIDERS.items()
        }
        self.image = widgets.Image(value=update_loss_explorer(self.figure, params), format="png")
        slider_list = list(self.sliders.values())
        super().__init__([widgets.HBox(slider_list[:3]), widgets.HBox(slider_list[3:]), self.image])
        for slider in slider_list:
            slider.observe(self._redraw, names="value")

    @property
    def params(self) -> LossExplorerParams:
        """The parameters the sliders show now."""
        return params_from_slider_values({f: s.value for f, s in self.sliders.items()})

    def set_params(self, params: LossExplorerParams) -> None:
        """Move every slider to ``params`` (one redraw per slider that changes)."""
        for field, value in asdict(params).items():
            self.sliders[field].value = value

    def _redraw(self, change: dict) -> None:
        self.image.value = update_loss_explorer(self.figure, self.params)


def loss_explorer(params: LossExplorerParams | None = None) -> LossExplorer:
    """Build the loss explorer (sliders "gamma", "alpha", "smooth", "fg fraction", "p(true)").

    Display it as a cell's last expression or with ``IPython.display.display``. The plots are
    those of :func:`segan_lib.viz.losses.plot_loss_landscape`; the model behind the x-axis is
    described in :mod:`segan_lib.viz.losses`.
    """
    return LossExplorer(params)
