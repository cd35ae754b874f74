"""The random parameters of SynthShapes scenes, drawn without a random generator.

Every parameter of sample ``i`` (which slots hold a shape, their kinds, positions, sizes,
turns and colours, the background colour, texture and noise) is a uniform in ``[0, 1)`` made
from a counter-based integer hash of ``(seed, i, draw number)`` (lowbias32, C. Wellons) and
then mapped by exactly rounded elementwise float operations. So a scene is a pure function of
``(seed, i, num_classes, binary)``, the same in every batch, at every image size and on every
device, and drawing a batch never touches a global RNG.

:func:`draw_scenes` returns them as ``(B, M)`` tensors per slot plus the colour tables of the
painted ids; :mod:`segan_lib.data.synthetic` renders them. On CUDA nothing here reads a value
back to the host, and the small constant tables are copied to the device once (:func:`constant`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from segan_lib.data.synthetic_shapes import KIND_HUE, KIND_RADIUS, KIND_WEIGHT

MAX_OBJECTS = 5           # object slots per image; slot 0 is always used
EXTRA_OBJECT_PROB = 0.55  # chance that each of the slots 1..4 holds a shape
TEXTURE_RANK = 3          # texture = sum of this many products of 1-D waves
OBJECT_DRAWS = 11         # uniforms per slot: active, kind, cx, cy, radius, turn, extra, h, s, v, shade
SCENE_DRAWS = MAX_OBJECTS * OBJECT_DRAWS + 7 + 5 * TEXTURE_RANK
_MASK32 = 0xFFFFFFFF
_CONSTANTS: dict[tuple, Tensor] = {}


def host_to_device(x: Tensor, device: torch.device) -> Tensor:
    """The CPU tensor ``x`` on ``device``. To CUDA through pinned memory with ``non_blocking=True``:
    a copy from pageable memory would first wait for every kernel queued on the GPU."""
    if device.type == "cuda":
        return (x if x.is_pinned() else x.pin_memory()).to(device, non_blocking=True)
    return x.to(device)


def constant(values: tuple, device: torch.device) -> Tensor:
    """``torch.tensor(values)`` on ``device``, made once per device (not a host-to-device copy per batch)."""
    key = (values, str(device), torch.get_default_dtype())
    if key not in _CONSTANTS:
        _CONSTANTS[key] = host_to_device(torch.tensor(values), device)
    return _CONSTANTS[key]


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in ``[0, 2**32)``, split in 16-bit halves so no product overflows."""
    return (((x & 0xFFFF) * c) + ((((x >> 16) * c) & 0xFFFF) << 16)) & _MASK32


def hash32(x: Tensor) -> Tensor:
    """lowbias32 integer hash of int64 values in ``[0, 2**32)``, elementwise."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash32_int(x: int) -> int:
    """:func:`hash32` of one Python int in ``[0, 2**32)`` (the same integer arithmetic, on the host)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def uniforms(seed: int, index: Tensor, count: int) -> Tensor:
    """``(B, count)`` float32 uniforms in ``[0, 1)``, each a pure function of (seed, index, column)."""
    seed %= 2**64
    keys = [hash32_int(value) for value in (seed & _MASK32, seed >> 32, 0x5EED)]  # per seed, on the host
    sample_key = hash32((index & _MASK32) ^ keys[0]) ^ keys[1]                                  # (B,)
    draw_key = (torch.arange(count, device=index.device) * 0x9E3779B9) & _MASK32                # (count,)
    bits = hash32(hash32(sample_key[:, None] ^ draw_key) ^ keys[2])                             # (B, count)
    return (bits >> 8).float() * 2.0**-24


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in ``[0, 1]`` (any shape ``(...)``) to RGB ``(..., 3)``: ``v (1 - s (1 - hue_rgb(h)))``."""
    offsets = constant((0.0, 2 / 3, 1 / 3), h.device)
    phase = h[..., None] + offsets
    hue_rgb = ((phase - phase.floor()) * 6.0 - 3.0).abs().sub(1.0).clamp(0.0, 1.0)              # (..., 3)
    return v[..., None] * (1.0 - s[..., None] * (1.0 - hue_rgb))


def kind_thresholds(num_kinds: int, device: torch.device) -> Tensor:
    """``(num_kinds - 1,)`` float32 cumulative kind frequencies: a uniform ``u`` draws kind ``#{t <= u}``."""
    weights = torch.tensor(KIND_WEIGHT[:num_kinds], dtype=torch.float64)
    return constant(tuple((weights.cumsum(0) / weights.sum())[:-1].float().tolist()), device)


def draw_scenes(seed: int, index: Tensor, num_kinds: int, binary: bool) -> dict[str, Tensor]:
    """Every random parameter of the scenes of ``index`` (B,): per-slot ``(B, M)`` tensors and tables."""
    u = uniforms(seed, index, SCENE_DRAWS)
    obj = u[:, : MAX_OBJECTS * OBJECT_DRAWS].reshape(-1, MAX_OBJECTS, OBJECT_DRAWS)             # (B, M, draws)
    bg = u[:, MAX_OBJECTS * OBJECT_DRAWS:]                                                      # (B, 7 + 5R)
    active = obj[..., 0] < EXTRA_OBJECT_PROB
    active[:, 0] = True
    kind = (obj[..., 1, None] >= kind_thresholds(num_kinds, index.device)).sum(-1)  # (B, M) in [0, num_kinds)
    radius_lo, radius_hi = constant(KIND_RADIUS, index.device)[kind].unbind(-1)
    radius = radius_lo + (radius_hi - radius_lo) * obj[..., 4]                                  # (B, M)
    turn = obj[..., 5] * 2.0 - 1.0  # tan(angle / 2) for an angle in [-90, 90] degrees
    hue = constant(KIND_HUE, index.device)[kind] + (obj[..., 7] - 0.5) * 0.36
    bg_value = 0.2 + 0.6 * bg[:, 2:3]                                                           # (B, 1)
    # Object brightness differs from the background's by 0.25 .. 0.6, up or down as drawn (if it fits).
    delta = 0.25 + 0.7 * (obj[..., 9] - 0.5).abs()
    brighter, darker = bg_value + delta, bg_value - delta
    use_brighter = ((obj[..., 9] < 0.5) & (brighter <= 1.0)) | (darker < 0.05)
    value = torch.where(use_brighter, brighter, darker).clamp(0.05, 1.0)
    rgb = hsv_to_rgb(hue, 0.45 + 0.55 * obj[..., 8], value)                                     # (B, M, 3)
    bg_rgb = hsv_to_rgb(bg[:, 0], 0.6 * bg[:, 1], bg_value[:, 0])                               # (B, 3)
    bg_tint = hsv_to_rgb(bg[:, 3], torch.full_like(bg[:, 3], 0.5), 0.05 + 0.3 * bg[:, 4])
    labels = torch.ones_like(kind) if binary else kind + 1
    return {
        "active": active, "kind": kind, "radius": radius,  # centres keep the bounding circle inside the image:
        "cx": radius + (1.0 - 2.0 * radius) * obj[..., 2], "cy": radius + (1.0 - 2.0 * radius) * obj[..., 3],
        "cos": (1.0 - turn * turn) / (1.0 + turn * turn), "sin": 2.0 * turn / (1.0 + turn * turn),
        "extra": obj[..., 6],
        # Tables indexed by the painted slot id (0 = background, m + 1 = slot m):
        "label": torch.cat([torch.zeros_like(labels[:, :1]), labels], 1),                       # (B, M+1)
        "colour": torch.cat([bg_rgb[:, None], rgb], 1).transpose(1, 2).contiguous(),            # (B, 3, M+1)
        "shade": torch.cat([bg_tint[:, None], rgb * (0.25 * obj[..., 10, None])], 1).transpose(1, 2).contiguous(),
        "noise_offset": bg[:, 5], "noise_amp": 0.01 + 0.05 * bg[:, 6],
        "texture": bg[:, 7:].reshape(-1, TEXTURE_RANK, 5),                                      # (B, R, 5)
    }
