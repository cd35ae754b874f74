"""SynthShapes: the embedded default dataset of the course, generated on the fly.

Each sample is a square RGB scene: one to five filled shapes (disc, rectangle, triangle, ring,
cross) painted in order over a textured background (a base colour plus a coloured sum of three
products of smooth 1-D waves; shapes get a weaker shading from the same texture). Later shapes
occlude earlier ones and the mask follows the same occlusion. The scene is blurred with
``[1, 2, 1] / 4`` along each axis (edges reflected), then pixel noise is added. Images are then
standardised per image and channel: ``x <- (x - mean) / sqrt(var + 1e-6)`` over the ``H x W`` pixels.

Labels: ``0`` background, ``k`` the k-th name of :data:`ALL_CLASS_NAMES`; with ``num_classes = K``
the scenes hold kinds ``1 .. K-1``; ``binary=True`` draws the same scenes and labels every shape 1.
The imbalance is real: background covers about 80 % of the pixels, a shape 2 % to 18 % of the
image, and later kinds are drawn less often and smaller (discs most, crosses least). Shape is the
main cue; colour a weak one (each kind has its own hue range, neighbouring ranges overlap, and
the per-image standardisation removes absolute colour).

Determinism: sample ``i`` is a pure function of ``(seed, i, size, num_classes, binary)``. Its
random parameters come from a counter-based integer hash of ``(seed, i, draw number)``
(lowbias32, C. Wellons), not from a global generator, and rendering uses exactly rounded
elementwise float operations only (no BLAS, no convolution), so a sample is bit-for-bit the
same on the CPU whatever batch it is rendered in. Geometry and colours do not depend on
``size``: one seed and index give the same scene at every resolution. Different seeds give
unrelated sets (train seed 0, validation seed 1 by convention).
"""
from __future__ import annotations

import math
import operator

import torch
from torch import Tensor
from torch.utils.data import Dataset

ALL_CLASS_NAMES: tuple[str, ...] = ("background", "disc", "rectangle", "triangle", "ring", "cross")
MAX_CLASSES = len(ALL_CLASS_NAMES)
# Per shape kind (disc, rectangle, triangle, ring, cross): relative draw frequency, range of the
# bounding radius as a fraction of the image side, and centre of its hue range (spread +-0.18).
_KIND_WEIGHT = (1.0, 0.8, 0.6, 0.45, 0.35)
_KIND_RADIUS = ((0.09, 0.24), (0.1, 0.24), (0.11, 0.24), (0.11, 0.22), (0.1, 0.2))
_KIND_HUE = (0.0, 0.33, 0.6, 0.15, 0.8)
_MAX_OBJECTS = 5           # object slots per image; slot 0 is always used
_EXTRA_OBJECT_PROB = 0.55  # chance that each of the slots 1..4 holds a shape
_TEXTURE_RANK = 3          # texture = sum of this many products of 1-D waves
_OBJECT_DRAWS = 11         # uniforms per slot: active, kind, cx, cy, radius, turn, extra, h, s, v, shade
_SCENE_DRAWS = _MAX_OBJECTS * _OBJECT_DRAWS + 7 + 5 * _TEXTURE_RANK
_PIXELS_PER_CHUNK = 1 << 19  # CPU: render ~32 images of 128x128 at a time, so temporaries stay in cache
_MASK32 = 0xFFFFFFFF
_noise_banks: dict[tuple[int, str], Tensor] = {}


class SampleIndexError(ValueError, IndexError):
    """An index outside ``[0, n)``; an ``IndexError`` too, so ``for x in dataset`` stops."""


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return value


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in ``[0, 2**32)``, split in 16-bit halves so no product overflows."""
    return (((x & 0xFFFF) * c) + ((((x >> 16) * c) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: Tensor) -> Tensor:
    """lowbias32 integer hash of int64 values in ``[0, 2**32)``, elementwise."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _uniforms(seed: int, index: Tensor, count: int) -> Tensor:
    """``(B, count)`` float32 uniforms in ``[0, 1)``, each a pure function of (seed, index, column)."""
    seed %= 2**64
    keys = _hash32(torch.tensor([seed & _MASK32, seed >> 32, 0x5EED], dtype=torch.int64, device=index.device))
    sample_key = _hash32((index & _MASK32) ^ keys[0]) ^ keys[1]                        # (B,)
    draw_key = (torch.arange(count, device=index.device) * 0x9E3779B9) & _MASK32       # (count,)
    bits = _hash32(_hash32(sample_key[:, None] ^ draw_key) ^ keys[2])                  # (B, count)
    return (bits >> 8).float() * 2.0**-24


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in ``[0, 1]`` (any shape ``(...)``) to RGB ``(..., 3)``: ``v (1 - s (1 - hue_rgb(h)))``."""
    offsets = torch.tensor([0.0, 2 / 3, 1 / 3], device=h.device)
    phase = h[..., None] + offsets
    hue_rgb = ((phase - phase.floor()) * 6.0 - 3.0).abs().sub(1.0).clamp(0.0, 1.0)    # (..., 3)
    return v[..., None] * (1.0 - s[..., None] * (1.0 - hue_rgb))


def _wave(t: Tensor) -> Tensor:
    """A smooth periodic wave of period 1 in ``[-1, 1]``: a triangle wave shaped by ``w (3 - w^2) / 2``."""
    w = ((t - t.floor()) - 0.5).abs() * 4.0 - 1.0
    return w * (1.5 - 0.5 * (w * w))


def _draw_scenes(seed: int, index: Tensor, num_kinds: int, binary: bool) -> dict[str, Tensor]:
    """Every random parameter of the scenes of ``index`` (B,): per-slot ``(B, M)`` tensors and tables."""
    u = _uniforms(seed, index, _SCENE_DRAWS)
    obj = u[:, : _MAX_OBJECTS * _OBJECT_DRAWS].reshape(-1, _MAX_OBJECTS, _OBJECT_DRAWS)  # (B, M, draws)
    bg = u[:, _MAX_OBJECTS * _OBJECT_DRAWS:]                                             # (B, 7 + 5R)
    active = obj[..., 0] < _EXTRA_OBJECT_PROB
    active[:, 0] = True
    weights = torch.tensor(_KIND_WEIGHT[:num_kinds], dtype=torch.float64)
    thresholds = (weights.cumsum(0) / weights.sum())[:-1].float().to(index.device)
    kind = (obj[..., 1, None] >= thresholds).sum(-1)                                    # (B, M) in [0, num_kinds)
    radius_lo, radius_hi = torch.tensor(_KIND_RADIUS, device=index.device)[kind].unbind(-1)
    radius = radius_lo + (radius_hi - radius_lo) * obj[..., 4]                          # (B, M)
    turn = obj[..., 5] * 2.0 - 1.0  # tan(angle / 2) for an angle in [-90, 90] degrees
    hue = torch.tensor(_KIND_HUE, device=index.device)[kind] + (obj[..., 7] - 0.5) * 0.36
    bg_value = 0.2 + 0.6 * bg[:, 2:3]                                                    # (B, 1)
    # Object brightness differs from the background's by 0.25 .. 0.6, up or down as drawn (if it fits).
    delta = 0.25 + 0.7 * (obj[..., 9] - 0.5).abs()
    brighter, darker = bg_value + delta, bg_value - delta
    use_brighter = ((obj[..., 9] < 0.5) & (brighter <= 1.0)) | (darker < 0.05)
    value = torch.where(use_brighter, brighter, darker).clamp(0.05, 1.0)
    rgb = _hsv_to_rgb(hue, 0.45 + 0.55 * obj[..., 8], value)                             # (B, M, 3)
    bg_rgb = _hsv_to_rgb(bg[:, 0], 0.6 * bg[:, 1], bg_value[:, 0])                      # (B, 3)
    bg_tint = _hsv_to_rgb(bg[:, 3], torch.full_like(bg[:, 3], 0.5), 0.05 + 0.3 * bg[:, 4])
    labels = torch.ones_like(kind) if binary else kind + 1
    return {
        "active": active, "kind": kind, "radius": radius,  # centres keep the bounding circle inside the image:
        "cx": radius + (1.0 - 2.0 * radius) * obj[..., 2], "cy": radius + (1.0 - 2.0 * radius) * obj[..., 3],
        "cos": (1.0 - turn * turn) / (1.0 + turn * turn), "sin": 2.0 * turn / (1.0 + turn * turn),
        "extra": obj[..., 6],
        # Tables indexed by the painted slot id (0 = background, m + 1 = slot m):
        "label": torch.cat([torch.zeros_like(labels[:, :1]), labels], 1),                        # (B, M+1)
        "colour": torch.cat([bg_rgb[:, None], rgb], 1).transpose(1, 2).contiguous(),            # (B, 3, M+1)
        "shade": torch.cat([bg_tint[:, None], rgb * (0.25 * obj[..., 10, None])], 1).transpose(1, 2).contiguous(),
        "noise_offset": bg[:, 5], "noise_amp": 0.01 + 0.05 * bg[:, 6],
        "texture": bg[:, 7:].reshape(-1, _TEXTURE_RANK, 5),                                     # (B, R, 5)
    }


def _inside(kind: int, x: Tensor, y: Tensor, c: Tensor, s: Tensor, extra: Tensor) -> Tensor:
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


def _paint_ids(scene: dict[str, Tensor], part: slice, size: int, num_kinds: int, buffer: Tensor) -> Tensor:
    """``(C, size, size)`` int64 slot ids of the samples in ``part``: 0 background, m + 1 where slot m is on top.

    Painted in ``buffer`` (int64, at least C*size*size elements): later slots win (``amax``), as in occlusion.
    """
    active, kind = scene["active"][part], scene["kind"][part]
    count, dev = active.shape[0], active.device
    canvas = buffer[: count * size * size].zero_()
    for k in range(num_kinds):  # one vectorised pass per shape kind over all its objects
        b, m = (active & (kind == k)).nonzero(as_tuple=True)  # (N,) sample and slot of each object
        if b.numel() == 0:
            continue
        g = {name: scene[name][part][b, m] for name in ("cx", "cy", "radius", "cos", "sin", "extra")}
        win = min(size, 2 * math.ceil(_KIND_RADIUS[k][1] * size) + 4)  # window holding the whole shape
        steps = torch.arange(win, device=dev)
        axes = []
        for centre in (g["cx"], g["cy"]):
            start = ((centre * size).floor().long() - win // 2).clamp(0, size - win)
            pixel = start[:, None] + steps                                                # (N, win)
            axes.append((pixel, ((pixel.float() + 0.5) / size - centre[:, None]) / g["radius"][:, None]))
        (px, x), (py, y) = axes
        col = lambda t: t[:, None, None]  # noqa: E731  (N,) -> (N, 1, 1)
        inside = _inside(k, x[:, None, :], y[:, :, None], col(g["cos"]), col(g["sin"]), col(g["extra"]))
        flat = col(b * size * size) + py[:, :, None] * size + px[:, None, :]           # (N, win, win)
        canvas.scatter_reduce_(0, flat.reshape(-1), (inside * col(m + 1)).reshape(-1), "amax")
    return canvas.view(count, size, size)


def _noise_windows(size: int, device: torch.device) -> Tensor:
    """A fixed bank of N(0, 1) noise viewed as overlapping windows ``(3 size^2 + 1, 3 size^2)``."""
    key = (size, str(device))
    if key not in _noise_banks:
        generator = torch.Generator().manual_seed(0x5E6A2 + size)
        _noise_banks[key] = torch.randn(6 * size * size, generator=generator).to(device)
    return _noise_banks[key].unfold(0, 3 * size * size, 1)


def _blur_(x: Tensor, dim: int, scratch: Tensor) -> None:
    """In place along ``dim`` of ``x``: ``x_i <- (x_{i-1} + 2 x_i + x_{i+1}) / 4``, reflected at the edges.

    ``scratch``: a flat float buffer of at least ``x.numel()`` elements (reused, so no page faults).
    """
    n = x.shape[dim]
    inner = x.narrow(dim, 1, n - 2)
    first = (x.narrow(dim, 0, 1) + x.narrow(dim, 1, 1)) * 0.5  # reflection: (x_1 + 2 x_0 + x_1) / 4
    last = (x.narrow(dim, n - 1, 1) + x.narrow(dim, n - 2, 1)) * 0.5
    neighbours = torch.add(x.narrow(dim, 0, n - 2), x.narrow(dim, 2, n - 2),
                           out=scratch[: inner.numel()].view(inner.shape))
    inner.mul_(0.5).add_(neighbours.mul_(0.25))
    x.narrow(dim, 0, 1).copy_(first)
    x.narrow(dim, n - 1, 1).copy_(last)


def _render_images_into(out: Tensor, ids: Tensor, scene: dict[str, Tensor], part: slice,
                        work: Tensor, planes: Tensor) -> None:
    """Colour, shade, blur, add noise and standardise, in place in ``out (C, 3, S, S)``.

    ``work`` (at least C*3*S*S floats) and ``planes`` (2*C*S*S) are scratch buffers reused across chunks.
    """
    count, size = ids.shape[0], ids.shape[-1]
    pixels = size * size
    coords = (torch.arange(size, device=ids.device) + 0.5) / size                       # (S,)
    freq_x, freq_y, phase_x, phase_y, amp = (0.5 + 3.5 * t for t in scene["texture"][part].unbind(-1))
    wave_x = _wave(freq_x[..., None] * coords + phase_x[..., None])                     # (C, R, S)
    wave_y = _wave(freq_y[..., None] * coords + phase_y[..., None]) * (amp[..., None] / (4.0 * _TEXTURE_RANK))
    texture, product = planes[: 2 * count * pixels].view(2, count, size, size)
    torch.mul(wave_y[:, 0, :, None], wave_x[:, 0, None, :], out=texture)                # (C, S, S)
    for r in range(1, _TEXTURE_RANK):
        texture.add_(torch.mul(wave_y[:, r, :, None], wave_x[:, r, None, :], out=product))
    buffer = work[: count * 3 * pixels].view(count, 3, pixels)
    slot = ids.view(count, 1, pixels).expand(count, 3, pixels)
    torch.gather(scene["colour"][part], 2, slot, out=out.view(count, 3, pixels))
    shade = torch.gather(scene["shade"][part], 2, slot, out=buffer).view(count, 3, size, size)
    out.add_(shade.mul_(texture[:, None]))
    _blur_(out, -1, work)
    _blur_(out, -2, work)
    windows = _noise_windows(size, ids.device)
    offset = (scene["noise_offset"][part] * windows.shape[0]).long().clamp(max=windows.shape[0] - 1)
    noise = torch.index_select(windows, 0, offset, out=buffer.view(count, 3 * pixels)).view(count, 3, size, size)
    out.add_(noise.mul_(scene["noise_amp"][part].view(count, 1, 1, 1)))
    out.sub_(out.sum(dim=(2, 3), keepdim=True) / pixels)                                # minus mean (C, 3, 1, 1)
    variance = torch.linalg.vector_norm(out, dim=(2, 3), keepdim=True).square() / pixels
    out.div_((variance + 1e-6).sqrt())


def _render(seed: int, index: Tensor, size: int, num_kinds: int, binary: bool,
            with_images: bool = True) -> tuple[Tensor | None, Tensor]:
    """Images ``(B, 3, S, S)`` float32 (None unless ``with_images``) and masks ``(B, S, S)`` int64 of ``index (B,)``."""
    scene = _draw_scenes(seed, index, num_kinds, binary)
    batch, dev = index.shape[0], index.device
    images = torch.empty(batch, 3, size, size, device=dev) if with_images else None
    masks = torch.empty(batch, size, size, dtype=torch.int64, device=dev)
    step = max(1, min(batch, _PIXELS_PER_CHUNK // (size * size) if dev.type == "cpu" else batch))
    canvas = torch.empty(step * size * size, dtype=torch.int64, device=dev)
    work, planes = torch.empty(step * 3 * size * size, device=dev), torch.empty(step * 2 * size * size, device=dev)
    for start in range(0, batch, step):  # chunks of whole samples; every op is vectorised over a chunk
        part = slice(start, min(batch, start + step))
        ids = _paint_ids(scene, part, size, num_kinds, canvas)
        count = ids.shape[0]
        torch.gather(scene["label"][part], 1, ids.view(count, -1), out=masks[part].view(count, -1))
        if images is not None:
            _render_images_into(images[part], ids, scene, part, work, planes)
    return images, masks


class SynthShapes(Dataset):
    """``n`` synthetic scenes of shapes on textured, noisy, blurred backgrounds (see the module doc).

    ``dataset[i]`` is ``(image (3, size, size) float32, mask (size, size) int64)`` on ``device``;
    :meth:`get_batch` renders many at once. ``num_classes`` (2 .. 6) counts the background;
    with ``binary=True`` the scenes of ``num_classes`` are kept but every shape is labelled 1,
    and ``self.num_classes == 2``. ``CLASS_NAMES`` on an instance names its labels, on the
    class all six. ``size`` must be a multiple of 8 and at least 16.
    """

    CLASS_NAMES: tuple[str, ...] = ALL_CLASS_NAMES
    in_channels: int = 3

    def __init__(self, n: int = 1000, *, size: int = 128, num_classes: int = 4, binary: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.n = _check_int("n", n, 1)
        self.size = _check_int("size", size, 16)
        if size % 8:
            raise ValueError(f"size must be a multiple of 8 (U-Nets halve it several times), got {size!r}")
        _check_int("num_classes", num_classes, 2, MAX_CLASSES)
        if not isinstance(binary, bool):
            raise ValueError(f"binary must be True or False, got {binary!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from error
        self.seed, self.binary, self.num_kinds = seed, binary, num_classes - 1
        self.num_classes = 2 if binary else num_classes
        self.CLASS_NAMES = ("background", "foreground") if binary else ALL_CLASS_NAMES[:num_classes]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """Sample ``i`` (negative counts from the end): image ``(3, S, S)`` float32, mask ``(S, S)`` int64."""
        try:
            i = operator.index(i)
        except TypeError as error:
            raise ValueError(f"index must be an int, got {i!r}") from error
        if not -self.n <= i < self.n:
            raise SampleIndexError(f"index must be in [0, {self.n}) (or negative from the end), got {i}")
        images, masks = self.get_batch(torch.tensor([i % self.n]))
        return images[0], masks[0]

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Samples ``indices (B,)``, rendered at once on ``self.device``: ``(B, 3, S, S)`` float32, ``(B, S, S)`` int64.

        Identical to stacking ``self[i]`` for ``i`` in ``indices``.
        """
        if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.is_floating_point() \
                or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"indices must be a 1-D integer tensor, got {indices!r}"[:200])
        if indices.numel() and not (0 <= int(indices.min()) and int(indices.max()) < self.n):
            raise SampleIndexError(f"indices must lie in [0, {self.n}), got values from "
                                   f"{int(indices.min())} to {int(indices.max())}")
        index = indices.to(self.device, torch.int64)
        return _render(self.seed, index, self.size, self.num_kinds, self.binary)

    def class_frequencies(self, num_samples: int | None = None) -> Tensor:
        """Fraction of the pixels in each class over samples ``0 .. num_samples - 1`` (default: all).

        Returns ``(num_classes,)`` float64 summing to 1, e.g. for inverse-frequency class weights.
        Only the masks are rendered, so this is quick.
        """
        total = self.n if num_samples is None else _check_int("num_samples", num_samples, 1, self.n)
        counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        for start in range(0, total, 256):  # 256 masks at a time bound the memory
            index = torch.arange(start, min(total, start + 256), device=self.device)
            _, masks = _render(self.seed, index, self.size, self.num_kinds, self.binary, with_images=False)
            counts += torch.bincount(masks.view(-1), minlength=self.num_classes)
        return counts.double() / counts.sum()


def synth_batch(batch_size: int, *, size: int = 128, num_classes: int = 4, binary: bool = False, seed: int = 0,
                device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Samples ``0 .. batch_size - 1`` of ``SynthShapes(batch_size, ...)``: ``(B, 3, S, S)``, ``(B, S, S)``."""
    _check_int("batch_size", batch_size, 1)
    dataset = SynthShapes(batch_size, size=size, num_classes=num_classes, binary=binary, seed=seed, device=device)
    return dataset.get_batch(torch.arange(batch_size, device=dataset.device))
