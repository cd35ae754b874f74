"""A widget to scrub through GAN training snapshots: a step slider over samples and losses.

Thin wiring, as in :mod:`segan_lib.widgets`: the update callback is the plain function
:func:`update_snapshot_view` (snapshot index in, label text and PNG out), unit-tested without
a browser. The picture is :func:`segan_lib.viz.gan.plot_snapshot`, rendered to PNG and shown
in an ``ipywidgets.Image``; without a widget front-end (nbval, a notebook viewer) the
displayed scrubber falls back to that PNG.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from segan_lib.viz.gan import plot_snapshot
from segan_lib.widgets import PngFallback, figure_png


def check_snapshots(snapshots: object) -> Sequence[Mapping]:
    """Snapshots as ``GANSnapshots.snapshots`` makes them: a non-empty list of dicts with
    ``"step"``, ``"samples"`` and ``"logs"`` (holding ``"loss_discriminator"`` and
    ``"loss_generator"``), steps increasing."""
    if not isinstance(snapshots, Sequence) or len(snapshots) == 0:
        raise ValueError(f"snapshots must be a non-empty list of snapshot dicts, got {snapshots!r:.80}")
    for i, snap in enumerate(snapshots):
        missing = {"step", "samples", "logs"} - set(snap) if isinstance(snap, Mapping) else {"a dict"}
        if missing:
            raise ValueError(f"snapshots[{i}] lacks {sorted(missing)}")
        if not {"loss_discriminator", "loss_generator"} <= set(snap["logs"]):
            raise ValueError(f"snapshots[{i}]['logs'] must hold 'loss_discriminator' and 'loss_generator', "
                             f"got {sorted(snap['logs'])}")
    steps = [s["step"] for s in snapshots]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"snapshot steps must increase, got {steps[:10]}")
    return snapshots


def snapshot_label(snapshots: Sequence[Mapping], index: int) -> str:
    """The text over the picture: step and the two losses of snapshot ``index``."""
    snap = snapshots[index]
    return (f"step {snap['step']}: loss of D {snap['logs']['loss_discriminator']:.3f}, "
            f"loss of G {snap['logs']['loss_generator']:.3f}")


def update_snapshot_view(fig: Figure, snapshots: Sequence[Mapping], index: int, *,
                         real: torch.Tensor | None = None, extent: float = 3.0) -> tuple[str, bytes]:
    """The scrubber's redraw: draw snapshot ``index`` into ``fig``; return (label text, PNG bytes).

    Raises ``ValueError`` if ``index`` is outside ``[0, len(snapshots) - 1]``.
    """
    plot_snapshot(snapshots, index, real=real, extent=extent, fig=fig)
    return snapshot_label(snapshots, index), figure_png(fig)


class SnapshotScrubber(PngFallback, widgets.VBox):
    """An ``IntSlider`` ("snapshot", one position per snapshot), a label and the picture.

    Attributes:
        slider: the slider; its value is the snapshot index.
        label: ``ipywidgets.Label`` with the step and losses of the shown snapshot.
        image: ``ipywidgets.Image`` with the PNG of :func:`segan_lib.viz.gan.plot_snapshot`.
    """

    def __init__(self, snapshots: Sequence[Mapping], *, real: torch.Tensor | None = None, extent: float = 3.0) -> None:
        self.snapshots = check_snapshots(snapshots)
        self.real, self.extent = real, extent
        self.figure = Figure(figsize=(9, 3.6))
        last = len(self.snapshots) - 1
        self.slider = widgets.IntSlider(value=last, min=0, max=last, step=1, description="snapshot",
                                        continuous_update=False)
        text, png = update_snapshot_view(self.figure, self.snapshots, last, real=real, extent=extent)
        self.label = widgets.Label(value=text)
        self.image = widgets.Image(value=png, format="png")
        super().__init__([self.slider, self.label, self.image])
        self.slider.observe(self._redraw, names="value")

    def _redraw(self, change: dict) -> None:
        self.label.value, self.image.value = update_snapshot_view(
            self.figure, self.snapshots, int(change["new"]), real=self.real, extent=self.extent)


def snapshot_scrubber(snapshots: Sequence[Mapping], *, real: torch.Tensor | None = None,
                      extent: float = 3.0) -> SnapshotScrubber:
    """A widget to scrub through ``snapshots`` (``GANSnapshots.snapshots``): moving the slider
    shows that snapshot's samples (over ``real`` for 2-D data) and both players' losses with a
    line at its step. Starts at the last snapshot."""
    return SnapshotScrubber(snapshots, real=real, extent=extent)
