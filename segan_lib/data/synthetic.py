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
(:mod:`segan_lib.data.synthetic_scene`), not from a global generator, and rendering uses exactly
rounded elementwise float operations only (no BLAS, no convolution), so a sample is bit-for-bit
the same on the CPU whatever batch it is rendered in. Geometry and colours do not depend on
``size``: one seed and index give the same scene at every resolution. Different seeds give
unrelated sets (train seed 0, validation seed 1 by convention). The shapes (kinds, sizes,
rasterisation) are in :mod:`segan_lib.data.synthetic_shapes`.

On a GPU, :meth:`SynthShapes.get_batch` of CPU indices never synchronises with the host, so the
training engine renders each batch on the device while the GPU still runs earlier steps: the
indices are bounds-checked on the CPU and copied asynchronously, constant tables reach the
device once, and the shapes are painted by a path whose tensor sizes are all known in advance.
"""
from __future__ import annotations

import operator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from segan_lib.data.synthetic_scene import TEXTURE_RANK, draw_scenes, host_to_device
from segan_lib.data.synthetic_shapes import paint_ids

ALL_CLASS_NAMES: tuple[str, ...] = ("background", "disc", "rectangle", "triangle", "ring", "cross")
MAX_CLASSES = len(ALL_CLASS_NAMES)
_PIXELS_PER_CHUNK = 1 << 19  # CPU: render ~32 images of 128x128 at a time, so temporaries stay in cache
_noise_banks: dict[tuple[int, str], Tensor] = {}


class SampleIndexError(ValueError, IndexError):
    """An index outside ``[0, n)``; an ``IndexError`` too, so ``for x in dataset`` stops."""


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return value


def _wave(t: Tensor) -> Tensor:
    """A smooth periodic wave of period 1 in ``[-1, 1]``: a triangle wave shaped by ``w (3 - w^2) / 2``."""
    w = ((t - t.floor()) - 0.5).abs() * 4.0 - 1.0
    return w * (1.5 - 0.5 * (w * w))


def _noise_windows(size: int, device: torch.device) -> Tensor:
    """A fixed bank of N(0, 1) noise viewed as overlapping windows ``(3 size^2 + 1, 3 size^2)``."""
    key = (size, str(device))
    if key not in _noise_banks:
        generator = torch.Generator().manual_seed(0x5E6A2 + size)
        _noise_banks[key] = host_to_device(torch.randn(6 * size * size, generator=generator), device)
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
    wave_y = _wave(freq_y[..., None] * coords + phase_y[..., None]) * (amp[..., None] / (4.0 * TEXTURE_RANK))
    texture, product = planes[: 2 * count * pixels].view(2, count, size, size)
    torch.mul(wave_y[:, 0, :, None], wave_x[:, 0, None, :], out=texture)                # (C, S, S)
    for r in range(1, TEXTURE_RANK):
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
    scene = draw_scenes(seed, index, num_kinds, binary)
    batch, dev = index.shape[0], index.device
    images = torch.empty(batch, 3, size, size, device=dev) if with_images else None
    masks = torch.empty(batch, size, size, dtype=torch.int64, device=dev)
    step = max(1, min(batch, _PIXELS_PER_CHUNK // (size * size) if dev.type == "cpu" else batch))
    canvas = torch.empty(step * size * size, dtype=torch.int64, device=dev)
    work, planes = torch.empty(step * 3 * size * size, device=dev), torch.empty(step * 2 * size * size, device=dev)
    for start in range(0, batch, step):  # chunks of whole samples; every op is vectorised over a chunk
        part = slice(start, min(batch, start + step))
        ids = paint_ids(scene, part, size, num_kinds, canvas)
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

        Identical to stacking ``self[i]`` for ``i`` in ``indices``; an index outside ``[0, n)``
        raises :class:`SampleIndexError`. Pass the indices on the CPU, as the training engine
        does: the bounds check then reads CPU memory only and the indices reach the GPU by an
        asynchronous copy, so rendering never makes the host wait for the GPU. Indices already
        on the GPU cost one host synchronisation, to read their range for the check.
        """
        if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.is_floating_point() \
                or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"indices must be a 1-D integer tensor, got {indices!r}"[:200])
        if indices.numel():
            low, high = torch.stack(indices.aminmax()).tolist()  # free on the CPU; a host sync for GPU indices
            if low < 0 or high >= self.n:
                raise SampleIndexError(f"indices must lie in [0, {self.n}), got values from {low} to {high}")
        index = indices.to(torch.int64)
        index = host_to_device(index, self.device) if index.device.type == "cpu" else index.to(self.device)
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
    return dataset.get_batch(torch.arange(batch_size))  # CPU indices: no host sync on a GPU
