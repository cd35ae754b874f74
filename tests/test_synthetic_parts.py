"""The parts SynthShapes is made of, called directly: the counter-based ``uniforms``, ``hsv_to_rgb``
against ``colorsys``, the kind thresholds, the shape tests of ``inside`` at hand-picked points,
and ``window_size``, checked by painting whole images without windows."""
from __future__ import annotations

import colorsys
import math

import pytest
import torch

from segan_lib.data.synthetic_scene import (
    draw_scenes, hash32, hash32_int, hsv_to_rgb, kind_thresholds, uniforms,
)
from segan_lib.data.synthetic_shapes import GEOMETRY, KIND_RADIUS, KIND_WEIGHT, inside, paint_ids, window_size

CPU = torch.device("cpu")
MASK32 = 0xFFFFFFFF


# ------------------------------------------------------------------------------------ uniforms
def uniform_reference(seed: int, index: int, column: int) -> float:
    """``uniforms(seed, [index], column + 1)[0, column]`` in plain Python integers (lowbias32 hash)."""
    seed %= 2**64
    key_low, key_high, key_draw = hash32_int(seed & MASK32), hash32_int(seed >> 32), hash32_int(0x5EED)
    sample_key = hash32_int((index & MASK32) ^ key_low) ^ key_high
    bits = hash32_int(hash32_int(sample_key ^ ((column * 0x9E3779B9) & MASK32)) ^ key_draw)
    return (bits >> 8) * 2.0**-24


@pytest.mark.parametrize("seed", [0, 1, 2**32 + 1, 2**63 - 1, -1])
def test_uniforms_equal_the_integer_reference(seed):
    index = torch.tensor([0, 5, 2**31, 2**32 - 1])
    values = uniforms(seed, index, 4)
    assert values.shape == (4, 4) and values.dtype == torch.float32
    expected = [[uniform_reference(seed, int(i), j) for j in range(4)] for i in index]
    assert values.tolist() == expected  # exact: 24-bit integers times 2**-24


def test_uniforms_are_a_pure_function_of_seed_index_and_column():
    wide = uniforms(3, torch.tensor([7, 1, 4]), 12)
    assert torch.equal(uniforms(3, torch.tensor([4]), 12)[0], wide[2])  # not of the batch it is in
    assert torch.equal(uniforms(3, torch.tensor([7, 1, 4]), 5), wide[:, :5])  # nor of how many columns
    assert not torch.equal(uniforms(4, torch.tensor([7, 1, 4]), 12), wide)
    assert not torch.equal(uniforms(3 + 2**32, torch.tensor([7, 1, 4]), 12), wide)  # the high seed bits count


def test_uniforms_fill_the_unit_interval_evenly_and_columns_are_uncorrelated():
    values = uniforms(0, torch.arange(4096), 8).double()  # (4096, 8)
    assert values.min() >= 0.0 and values.max() < 1.0
    assert torch.equal(values * 2**24, (values * 2**24).round())  # multiples of 2**-24
    counts = torch.histc(values, bins=10, min=0.0, max=1.0)  # expected 3276.8 per bin
    chi2 = ((counts - 3276.8) ** 2 / 3276.8).sum()
    assert chi2 < 40  # 9 degrees of freedom: exceeded with probability < 1e-5 by a uniform source
    correlation = torch.corrcoef(values.T)  # (8, 8)
    assert (correlation - torch.eye(8)).abs().max() < 0.08  # |r| ~ 0.016 for independent columns
    rows = torch.corrcoef(values[:8])  # neighbouring samples must not repeat each other either
    assert (rows - torch.eye(8)).abs().max() < 0.99


def test_hash32_maps_the_whole_32_bit_range_without_overflow():
    values = torch.tensor([0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF])
    hashed = hash32(values)
    assert hashed.tolist() == [hash32_int(int(v)) for v in values]
    assert hashed.min() >= 0 and hashed.max() <= MASK32


# ----------------------------------------------------------------------------------- colours
def test_hsv_to_rgb_primaries_and_a_hand_worked_colour():
    h = torch.tensor([0.0, 1 / 3, 2 / 3, 0.5, 1.0, 0.25])
    s = torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0, 0.0])
    v = torch.tensor([1.0, 1.0, 1.0, 0.8, 1.0, 0.3])
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                             [0.4, 0.8, 0.8],  # cyan at half saturation: v (1 - s) = 0.4 for red
                             [1.0, 0.0, 0.0],  # hue wraps around
                             [0.3, 0.3, 0.3]])  # no saturation: grey of value v
    assert torch.allclose(hsv_to_rgb(h, s, v), expected, atol=1e-6)


def test_hsv_to_rgb_matches_colorsys_on_a_grid_and_keeps_the_leading_shape():
    grid = torch.linspace(0.0, 1.0, 9)
    h, s, v = torch.meshgrid(grid, grid, grid, indexing="ij")  # (9, 9, 9) each
    rgb = hsv_to_rgb(h, s, v)
    assert rgb.shape == (9, 9, 9, 3)
    expected = torch.tensor([colorsys.hsv_to_rgb(*point) for point in torch.stack([h, s, v], -1).view(-1, 3).tolist()])
    assert torch.allclose(rgb.view(-1, 3), expected.float(), atol=1e-6)


# ------------------------------------------------------------------------------------- kinds
def test_kind_thresholds_are_cumulative_frequencies():
    assert kind_thresholds(1, CPU).numel() == 0  # one kind: every draw is kind 0
    assert kind_thresholds(3, CPU).tolist() == pytest.approx([1 / 2.4, 1.8 / 2.4])  # weights 1, 0.8, 0.6
    five = kind_thresholds(5, CPU)
    assert five.dtype == torch.float32 and five.tolist() == pytest.approx([1 / 3.2, 1.8 / 3.2, 2.4 / 3.2, 2.85 / 3.2])


def test_drawing_kinds_with_the_thresholds_gives_the_kind_weights():
    u = uniforms(0, torch.arange(20000), 1)[:, 0]
    kinds = (u[:, None] >= kind_thresholds(5, CPU)).sum(-1)  # the rule of draw_scenes
    frequencies = torch.bincount(kinds, minlength=5).double() / len(u)
    expected = torch.tensor(KIND_WEIGHT, dtype=torch.float64) / sum(KIND_WEIGHT)
    assert (frequencies - expected).abs().max() < 0.01  # standard error ~0.003


# ------------------------------------------------------------------------------------ shapes
def points_inside(kind: int, points: list[tuple[float, float]], *, cos: float = 1.0, sin: float = 0.0,
                  extra: float = 0.0) -> list[bool]:
    """``inside`` at each ``(x, y)`` (units of the bounding radius), as one object of N = 1."""
    x = torch.tensor([[[p[0] for p in points]]])  # (1, 1, P)
    y = torch.tensor([[[p[1]] for p in points]])  # (1, P, 1)
    scalar = lambda value: torch.full((1, 1, 1), value)  # noqa: E731
    covered = inside(kind, x, y, scalar(cos), scalar(sin), scalar(extra))  # (1, P, P): every x with every y
    return [bool(covered[0, i, i]) for i in range(len(points))]  # the diagonal: the points themselves


@pytest.mark.parametrize("kind, options, points, expected", [
    (0, {}, [(0, 0), (1, 0), (0.8, 0.7), (0.7, -0.7)], [True, True, False, True]),             # disc r = 1
    (3, {}, [(0.4, 0), (0.5, 0), (0, -0.9), (1.01, 0)], [False, True, True, False]),           # ring 0.5 .. 1
    (3, {"extra": 1.0}, [(0.6, 0), (0.66, 0)], [False, True]),                                 # ring 0.65 .. 1
    (1, {}, [(0.6, 0.8), (0.61, 0), (0, 0.81), (-0.59, -0.79)], [True, False, False, True]),   # 1.2 x 1.6 box
    (1, {"cos": 0.0, "sin": 1.0}, [(0.7, 0), (0, 0.7)], [True, False]),                        # turned 90 degrees
    (2, {"extra": 1.0}, [(0, 0), (0.51, 0), (0.5, 0.86), (0.5, 0.87), (-0.9, 0.1)],
     [True, False, True, False, False]),                                                      # equilateral
    (4, {}, [(0.9, 0), (0.93, 0), (0.5, 0.5), (0.2, -0.9), (0, 0)], [True, False, False, True, True]),  # cross
])
def test_inside_at_hand_picked_points(kind, options, points, expected):
    assert points_inside(kind, points, **options) == expected


@pytest.mark.parametrize("kind", range(5))
def test_every_kind_fits_in_its_bounding_circle(kind):
    grid = torch.linspace(-1.5, 1.5, 61)
    x, y = grid.view(1, 1, -1), grid.view(1, -1, 1)
    angles = torch.linspace(0, math.pi, 7)
    extras = torch.linspace(0, 0.999, 7)
    c, s, e = angles.cos().view(-1, 1, 1), angles.sin().view(-1, 1, 1), extras.view(-1, 1, 1)  # 7 objects
    covered = inside(kind, x, y, c, s, e)  # (7, 61, 61)
    outside_circle = (x * x + y * y) > 1.0 + 1e-5
    assert covered.any() and not (covered & outside_circle).any()


def test_window_size_by_hand():
    assert window_size(0.24, 128) == 2 * 31 + 4  # ceil(0.24 * 128) = ceil(30.72) = 31
    assert window_size(0.24, 16) == 2 * 4 + 4
    assert window_size(0.2, 10) == 8
    assert window_size(0.5, 8) == 8  # never larger than the image


def paint_without_windows(scene: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Slot ids ``(B, size, size)`` by testing every pixel of the image for every active slot."""
    count, slots = scene["active"].shape
    pixel = (torch.arange(size).float() + 0.5) / size  # pixel centres, fraction of the side
    ids = torch.zeros(count, size, size, dtype=torch.int64)
    for b in range(count):
        for m in range(slots):
            if not scene["active"][b, m]:
                continue
            g = {name: scene[name][b, m].view(1, 1, 1) for name in GEOMETRY}
            x = ((pixel - g["cx"]) / g["radius"]).view(1, 1, size)
            y = ((pixel - g["cy"]) / g["radius"]).view(1, size, 1)
            covered = inside(int(scene["kind"][b, m]), x, y, g["cos"], g["sin"], g["extra"])[0]
            ids[b][covered] = m + 1  # later slots on top
    return ids


@pytest.mark.parametrize("size", [16, 40])
@pytest.mark.parametrize("fixed_size", [False, True])
def test_windows_of_window_size_paint_what_the_whole_image_test_paints(size, fixed_size):
    """A window too small would clip the largest shapes; this paints the same scenes without windows."""
    scene = draw_scenes(11, torch.arange(24), 5, False)
    largest = torch.tensor([high for _, high in KIND_RADIUS])[scene["kind"]] * 0.999  # (24, M)
    radius = torch.where(torch.arange(24)[:, None] % 2 == 0, largest, scene["radius"])  # half the scenes
    for centre in ("cx", "cy"):  # keep each bounding circle inside the image, as draw_scenes does
        position = (scene[centre] - scene["radius"]) / (1.0 - 2.0 * scene["radius"])  # the drawn uniform
        scene[centre] = radius + (1.0 - 2.0 * radius) * position
    scene["radius"] = radius
    buffer = torch.empty(24 * size * size, dtype=torch.int64)
    painted = paint_ids(scene, slice(None), size, 5, buffer, fixed_size=fixed_size)
    assert torch.equal(painted, paint_without_windows(scene, size))
    assert (painted > 0).any()
