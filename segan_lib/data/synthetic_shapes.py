"""The shapes of SynthShapes: the five kinds, their size ranges and how they are rasterised.

A shape is given by its kind, its centre ``(cx, cy)`` and bounding radius ``r`` (fractions of
the image side), a rotation ``(cos, sin)`` and one ``extra`` parameter in ``[0, 1)`` (ring
thickness, rectangle aspect, triangle width, cross arm width). A pixel belongs to the shape
when its centre does (:func:`inside`), so the area of a disc of radius ``r`` on an ``S x S``
image is about ``pi (r S)^2`` pixels. Every kind fits in its bounding circle.

:func:`paint_ids` paints the slot ids of a batch of scenes (later slots on top). It has two
implementations that give identical results, element for element:

* on the CPU, one pass per kind over the objects of that kind only, found with ``nonzero``;
* on any other device (CUDA), every slot of every scene is painted with a window that fits
  every kind, and the kind's test is selected per slot. Every tensor then has a size known in
  advance, so nothing is read back to the host: no ``nonzero``, no ``item``, no host sync,
  and the GPU never waits for the CPU. It does more arithmetic, which a GPU does not notice.

Both compute each pixel's test with the same exactly rounded elementwise operations, and a
window only needs to contain the shape, so the painted ids are bit-for-bit the same.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Per shape kind (disc, rectangle, triangle, ring, cross): relative draw frequency, range of the
# bounding radius as a fraction of the image side, and centre of its hue range (spread +-0.18).
KIND_WEIGHT = (1.0, 0.8, 0.6, 0.45, 0.35)
KIND_RADIUS = ((0.09, 0.24), (0.1, 0.24), (0.11, 0.24), (0.11, 0.22), (0.1, 0.2))
KIND_HUE = (0.0, 0.33, 0.6, 0.15, 0.8)
GEOMETRY = ("cx", "cy", "radius", "cos", "sin", "extra")  # the per-slot (B, M) entries a scene needs


def inside(kind: int, x: Tensor, y: Tensor, c: Tensor, s: Tensor, extra: Tensor) -> Tensor:
    """Whether points ``x (N,1,W)``, ``y (N,W,1)`` (in units of the bounding radius) lie in the shape."""
    if kind in (0, 3):  # disc; ring with inner radius 0.5 .. 0.65
        dist2 = x * x + y * y
        return dist2 <= 1.0 if kind == 0 else (dist2 <= 1.0) & (dist2 >= (0.5 + 0.15 * extra) ** 2)
    u, v = x * c + y * s, y * c - x * s  # rotated frame
    if kind == 1:  # rectangle of half-diagonal 1, half-sides a and sqrt(1 - a^2)
        half_width = 0.6 + 0.2 * extra
        return (u.abs() <= half_width) & (v.abs() <= (1.0 - half_width * half_width).sqrt())
    if kind == 2:  # isosceles triangle with apex (-1, 0) and base at u = 1/2; equilateral when extra = 1
        return (u <= 0.5) & (v.abs() * math.sqrt(3.0) <= (1.0 + u) * (0.8 + 0.2 * extra))
    arm, length = 0.22 + 0.14 * extra, 0.92  # cross: two bars of half-width `arm`
    au, av = u.abs(), v.abs()
    return ((au <= length) & (av <= arm)) | ((au <= arm) & (av <= length))


def window_size(max_radius: float, size: int) -> int:
    """Side of a square pixel window that holds any shape of bounding radius <= ``max_radius``."""
    return min(size, 2 * math.ceil(max_radius * size) + 4)


def _window_tests(kinds: range | tuple[int, ...], which: Tensor | None, geometry: dict[str, Tensor],
                  size: int, win: int) -> tuple[Tensor, Tensor, Tensor]:
    """For N objects: window pixel columns ``px (N, win)``, rows ``py (N, win)`` and ``covered (N, win, win)``.

    With one kind, ``covered`` is that kind's test; with several, ``which (N,)`` names each object's kind.
    """
    g = geometry
    steps = torch.arange(win, device=g["cx"].device)
    axes = []
    for centre in (g["cx"], g["cy"]):
        start = ((centre * size).floor().long() - win // 2).clamp(0, size - win)
        pixel = start[:, None] + steps                                                # (N, win)
        axes.append((pixel, ((pixel.float() + 0.5) / size - centre[:, None]) / g["radius"][:, None]))
    (px, x), (py, y) = axes
    col = lambda t: t[:, None, None]  # noqa: E731  (N,) -> (N, 1, 1)
    x, y, c, s, extra = x[:, None, :], y[:, :, None], col(g["cos"]), col(g["sin"]), col(g["extra"])
    if which is None:
        return px, py, inside(kinds[0], x, y, c, s, extra)
    covered = torch.zeros(x.shape[0], win, win, dtype=torch.bool, device=x.device)
    for k in kinds:
        covered |= inside(k, x, y, c, s, extra) & col(which == k)
    return px, py, covered


def _scatter_ids(canvas: Tensor, b: Tensor, slot_id: Tensor, px: Tensor, py: Tensor, covered: Tensor,
                 size: int) -> None:
    """``canvas[b, py, px] = max(canvas, slot_id)`` where ``covered``, for N objects at once (flat canvas)."""
    flat = (b * size * size)[:, None, None] + py[:, :, None] * size + px[:, None, :]   # (N, win, win)
    canvas.scatter_reduce_(0, flat.reshape(-1), (covered * slot_id[:, None, None]).reshape(-1), "amax")


def paint_ids(scene: dict[str, Tensor], part: slice, size: int, num_kinds: int, buffer: Tensor, *,
              fixed_size: bool | None = None) -> Tensor:
    """``(C, size, size)`` int64 slot ids of the samples in ``part``: 0 background, m + 1 where slot m is on top.

    ``scene``: ``"active"`` (B, M) bool, ``"kind"`` (B, M) int64 in ``[0, num_kinds)`` and the
    :data:`GEOMETRY` entries (B, M) float. Painted in ``buffer`` (int64, at least C*size*size
    elements): later slots win (``amax``), as in occlusion. ``fixed_size``: paint every slot
    with tensor sizes known in advance (no host sync); None chooses it off the CPU. Both ways
    give the same ids (see the module docstring).
    """
    active, kind = scene["active"][part], scene["kind"][part]
    count, dev = active.shape[0], active.device
    canvas = buffer[: count * size * size].zero_()
    if fixed_size is None:
        fixed_size = dev.type != "cpu"
    if fixed_size:  # every slot at once, inactive ones painted with id 0
        slots = active.shape[1]
        b = torch.arange(count, device=dev)[:, None].expand(count, slots).reshape(-1)  # (C*M,) sample of each slot
        slot_id = (torch.arange(1, slots + 1, device=dev) * active).reshape(-1)         # (C*M,) m + 1, 0 if inactive
        geometry = {name: scene[name][part].reshape(-1) for name in GEOMETRY}            # (C*M,) each
        win = window_size(max(high for _, high in KIND_RADIUS[:num_kinds]), size)
        px, py, covered = _window_tests(range(num_kinds), kind.reshape(-1), geometry, size, win)
        _scatter_ids(canvas, b, slot_id, px, py, covered, size)
        return canvas.view(count, size, size)
    for k in range(num_kinds):  # one vectorised pass per shape kind over all its objects
        b, m = (active & (kind == k)).nonzero(as_tuple=True)  # (N,) sample and slot of each object
        if b.numel() == 0:
            continue
        geometry = {name: scene[name][part][b, m] for name in GEOMETRY}
        px, py, covered = _window_tests((k,), None, geometry, size, window_size(KIND_RADIUS[k][1], size))
        _scatter_ids(canvas, b, m + 1, px, py, covered, size)
    return canvas.view(count, size, size)
