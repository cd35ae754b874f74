"""Pixel geometry behind the structure metrics: boundary maps, a disk dilation, exact Euclidean
distances from one set of pixels to another, and quantiles of many sets at once.

Everything works on a stack of binary maps ``(N, H, W)`` (one map per image and class), on the
maps' device, with tensor operations over whole maps: no Python loop visits a pixel.

Two kinds of boundary, both made of pixels *of the class* (inner boundaries):

* the **contour** (:func:`contour`, used by boundary F1): a pixel of the class with a 4-neighbour
  that is a *valid* pixel of another class. The image frame and ignored pixels are not a
  contour: neither prediction nor truth drew a class change there.
* the **surface** (:func:`surface`, used by HD95): a pixel of the class with a 4-neighbour that
  is not of the class, where pixels outside the image (and ignored pixels, which the caller
  has already removed from the class) count as not of the class. This is MONAI's edge map,
  ``mask ^ scipy.ndimage.binary_erosion(mask)`` (a cross-shaped element, outside = 0), so a
  class that is present always has a non-empty surface.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Source pixels times columns searched per chunk in distances_to_nearest: intermediates <= 64 MB.
_CHUNK_ELEMENTS = 1 << 24
_NEAR = 4  # sources this close to a target along their own column search only 2 * 4 + 1 columns


def _any_4_neighbour(x: Tensor, *, outside: bool) -> Tensor:
    """``(N, H, W)`` bool: whether any of the 4 neighbours (up, down, left, right) is True;
    a neighbour outside the image counts as ``outside``."""
    padded = F.pad(x.to(torch.uint8), (1, 1, 1, 1), value=int(outside))  # (N, H+2, W+2)
    return (padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]).bool()


def contour(members: Tensor, valid: Tensor) -> Tensor:
    """Contour pixels ``(N, H, W)`` bool: ``members & (a 4-neighbour is in valid & ~members)``.

    Args:
        members: ``(N, H, W)`` bool, the pixels of one class (valid pixels only).
        valid: ``(N, H, W)`` bool, the pixels that are not ignored.
    """
    return members & _any_4_neighbour(valid & ~members, outside=False)


def surface(members: Tensor) -> Tensor:
    """Surface pixels ``(N, H, W)`` bool: ``members & (a 4-neighbour is ~members or outside the image)``,
    i.e. ``members ^ binary_erosion(members)`` as in MONAI's ``get_mask_edges``."""
    return members & _any_4_neighbour(~members, outside=True)


def within_distance(points: Tensor, tolerance: float) -> Tensor:
    """``(N, H, W)`` bool: pixels whose Euclidean distance to a ``True`` pixel of their map is
    ``<= tolerance`` (pixels). A dilation by the disk ``dy^2 + dx^2 <= tolerance^2``, one shifted
    OR per offset of the disk (13 for a tolerance of 2, about pi tolerance^2 in general: meant for
    tolerances of a few pixels)."""
    n, h, w = points.shape
    radius = int(math.floor(tolerance))
    padded = F.pad(points.to(torch.uint8), (radius, radius, radius, radius))  # (N, H+2r, W+2r)
    near = torch.zeros(n, h, w, dtype=torch.uint8, device=points.device)
    for dy in range(-radius, radius + 1):  # a loop over the disk's offsets, not over pixels
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= tolerance * tolerance:
                near |= padded[:, radius + dy:radius + dy + h, radius + dx:radius + dx + w]
    return near.bool()


def _column_distance(targets: Tensor) -> Tensor:
    """``(N, H, W)``: distance from each pixel to the nearest ``True`` pixel of ``targets`` in its
    column; ``H + W`` or more where the column has none (above any distance within the image).

    A distance transform along the columns by doubling: after shifts ``s = 1, 2, 4, ...`` each
    pixel holds the cost of the cheapest way to a target as a sum of distinct shifts, and any
    distance ``< 2 s`` is such a sum, so ``log2(H)`` rounds are exact. Small integers keep the
    passes cheap (int16 while no sum can overflow it).
    """
    h, w = targets.shape[1:]
    none = h + w  # "no target in this column": more than any in-image distance
    dtype = torch.int16 if none + 2 * h < 1 << 15 else torch.int32
    distance = torch.where(targets, 0, none).to(dtype)
    shift = 1
    while shift < h:
        from_above = torch.minimum(distance[:, shift:], distance[:, :-shift] + shift)
        from_below = torch.minimum(distance[:, :-shift], distance[:, shift:] + shift)
        distance = distance.clone()
        distance[:, shift:] = from_above
        distance[:, :-shift] = torch.minimum(distance[:, :-shift], from_below)
        shift *= 2
    return distance


def _nearest_in_columns(column_squared: Tensor, row: Tensor, col: Tensor, radius: int | None) -> Tensor:
    """``(T,)`` squared distance ``min_j' [(j - j')^2 + g(i, j')^2]`` over ``|j - j'| <= radius``
    (``None``: every column).

    ``column_squared``: ``(R, W)`` rows of ``g^2``; ``row``, ``col``: ``(T,)`` each source's row
    of it and its column ``j``. Work ``T * (2 radius + 1)`` or ``T * W``, in chunks.
    """
    w = column_squared.shape[1]
    if radius is None:
        cols = torch.arange(w, device=col.device)
        shift_squared = (cols[:, None] - cols[None, :]).square().float()  # (W, W'): (j - j')^2
    else:
        column_squared = F.pad(column_squared, (radius, radius), value=math.inf)  # inf outside the image
        offsets = torch.arange(-radius, radius + 1, device=col.device)  # (2r+1,)
    width = w if radius is None else 2 * radius + 1
    squared = torch.empty(row.shape[0], device=col.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // width)
    for start in range(0, row.shape[0], per_chunk):  # chunks of source pixels, for memory
        part = slice(start, start + per_chunk)
        if radius is None:
            candidates = column_squared[row[part]] + shift_squared[col[part]]  # (T', W)
        else:
            along_column = column_squared[row[part, None], col[part, None] + radius + offsets]  # (T', 2r+1)
            candidates = along_column + offsets.square().float()
        squared[part] = candidates.amin(dim=1)
    return squared


def distances_to_nearest(sources: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Exact Euclidean distance from every ``True`` pixel of ``sources`` to the nearest ``True`` pixel
    of ``targets`` in the same map.

    Args:
        sources, targets: ``(N, H, W)`` bool; every map with a source pixel has a target pixel.

    Returns:
        ``(distances, map_index)``, both ``(T,)`` over the ``T`` source pixels of all maps in
        raster order: ``distances`` float32 in pixels, and the map ``0..N-1`` each belongs to.

    The squared distance separates over the two axes::

        d(i, j)^2 = min_j' [ (j - j')^2 + g(i, j')^2 ],   g(i, j') = min_{i' : targets[i', j']} |i - i'|

    ``g`` (the distance along column ``j'``, :func:`_column_distance`) is computed over whole
    maps. Since ``d <= g(i, j)``, only columns with ``|j - j'| <= g(i, j)`` can win: a source
    with ``g(i, j) <= NEAR`` (most of them, when boundaries roughly agree) searches that window,
    the others all ``W`` columns. Squared distances are integers, exact in float32.
    """
    n, h, w = targets.shape
    column_distance = _column_distance(targets)  # (N, H, W) integers
    map_index, source_row, source_col = sources.nonzero(as_tuple=True)  # (T,) each, raster order
    row = map_index * h + source_row  # the source's row of column_squared
    column_squared = column_distance.float().square().view(n * h, w)  # (N*H, W): g(i, j')^2
    own_column = column_distance.view(n * h, w)[row, source_col]  # (T,) g(i, j) >= d
    near = own_column <= _NEAR
    squared = torch.empty(map_index.shape[0], device=targets.device)
    squared[near] = _nearest_in_columns(column_squared, row[near], source_col[near], _NEAR)
    far = ~near
    squared[far] = _nearest_in_columns(column_squared, row[far], source_col[far], None)
    return squared.sqrt(), map_index


def segment_quantile(values: Tensor, segment: Tensor, num_segments: int, q: float) -> Tensor:
    """Per segment ``s``, ``torch.quantile(values[segment == s], q)`` (linear interpolation); NaN if empty.

    Args:
        values: ``(T,)`` finite floats.
        segment: ``(T,)`` int64 in ``0..num_segments-1``.
        q: quantile in ``[0, 1]``.

    Returns:
        ``(num_segments,)`` float64. With a segment's ``n`` values sorted as
        ``v_0 <= ... <= v_{n-1}`` and ``r = q (n - 1)``: ``v_floor(r) + (r - floor(r)) (v_ceil(r) - v_floor(r))``.
    """
    values = values.double()
    order = values.argsort()
    order = order[segment[order].argsort(stable=True)]  # by segment, then by value
    ordered = values[order]
    count = torch.bincount(segment, minlength=num_segments)  # (S,)
    first = count.cumsum(0) - count  # where each segment starts in ``ordered``
    rank = q * (count - 1).clamp(min=0).double()
    lower, upper = rank.floor().long(), rank.ceil().long()
    padded = torch.cat([ordered, ordered.new_zeros(1)])  # a value to read for empty segments
    below, above = padded[first + lower], padded[first + upper]
    result = torch.lerp(below, above, rank - lower)
    return torch.where(count > 0, result, math.nan)
