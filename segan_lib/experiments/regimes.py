"""Regimes: the data an experiment's arms train and are scored on.

The ``standard`` regime is plain :class:`~segan_lib.data.synthetic.SynthShapes`. A regime
with ``noise_std > 0`` or ``occluders > 0`` wraps it in :class:`CorruptedImages`: the images
get strong pixel noise and solid squares painted over them, while the masks stay as they
were (the truth still covers the hidden parts of a shape). A per-pixel loss then sees speckle
and holes it cannot explain pixel by pixel; that is where a learned shape prior could help.

Every corruption is a pure function of ``(seed, index)``, like SynthShapes itself: the
uniforms come from the same counter-based hash (:func:`~segan_lib.data.synthetic_scene.uniforms`)
under seeds of their own, so sample ``i`` is the same in every batch, epoch and run.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from segan_lib._checks import check_positive
from segan_lib.data.synthetic import SampleIndexError, SynthShapes
from segan_lib.data.synthetic_scene import host_to_device, uniforms

OCCLUDER_SIDE = (0.2, 0.35)  # side of an occluding square, as a fraction of the image side
OCCLUDER_VALUE = 2.0  # each channel of an occluder is uniform in [-2, 2] (images have unit variance)
_OCCLUDER_SEED, _NOISE_SEED = 2**40, 2**41  # added to the data seed: draws independent of the scenes'


@dataclass(frozen=True)
class Regime:
    """Which images a regime's arms see. ``description`` says what and why (recorded in results).

    ``noise_std``: standard deviation of the Gaussian noise added to every pixel and channel
    (images are standardised to unit variance first, so 1.0 means a signal-to-noise ratio
    near 1). ``occluders``: solid squares painted over each image (side 20-35 % of it).
    """

    description: str
    noise_std: float = 0.0
    occluders: int = 0

    def __post_init__(self) -> None:
        check_positive("noise_std", self.noise_std, allow_zero=True)
        if isinstance(self.occluders, bool) or not isinstance(self.occluders, int) or self.occluders < 0:
            raise ValueError(f"occluders must be an int >= 0, got {self.occluders!r}")

    @property
    def corrupts(self) -> bool:
        return self.noise_std > 0 or self.occluders > 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class CorruptedImages(Dataset):
    """``data`` (SynthShapes) with noisy, occluded images and unchanged masks.

    ``get_batch(indices)`` returns ``(images (B, 3, S, S), masks (B, S, S))``: the images of
    ``data`` with ``occluders`` squares painted over them (later ones on top), then
    ``noise_std * z`` added, ``z ~ N(0, 1)`` per pixel and channel by the Box-Muller formula
    ``z = sqrt(-2 ln(1 - u1)) cos(2 pi u2)`` (and ``sin`` for the second half of the draws).
    """

    def __init__(self, data: SynthShapes, *, noise_std: float, occluders: int) -> None:
        if not hasattr(data, "get_batch") or not hasattr(data, "seed"):
            raise ValueError(f"data must be a SynthShapes dataset, got {type(data).__name__}")
        check_positive("noise_std", noise_std, allow_zero=True)
        self.data, self.noise_std, self.occluders = data, float(noise_std), int(occluders)
        self.num_classes, self.CLASS_NAMES = data.num_classes, data.CLASS_NAMES
        self.in_channels, self.seed = data.in_channels, data.seed

    @property
    def device(self) -> torch.device:
        return self.data.device

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """Sample ``i`` (negative counts from the end): image ``(3, S, S)`` float32, mask ``(S, S)`` int64."""
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise SampleIndexError(f"index must be an int in [0, {n}) (or negative from the end), got {i!r}")
        images, masks = self.get_batch(torch.tensor([i % n]))
        return images[0], masks[0]

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Samples ``indices (B,)`` (CPU): corrupted images ``(B, 3, S, S)``, masks ``(B, S, S)``."""
        images, masks = self.data.get_batch(indices)  # bounds-checked there
        index = host_to_device(indices.to(torch.int64), images.device)
        return self._corrupt(images, index), masks

    def _corrupt(self, images: Tensor, index: Tensor) -> Tensor:
        batch, channels, size, _ = images.shape
        coords = (torch.arange(size, device=images.device) + 0.5) / size  # (S,) pixel centres in [0, 1]
        if self.occluders:
            draws = uniforms(self.seed + _OCCLUDER_SEED, index, 6 * self.occluders).view(batch, self.occluders, 6)
            low, high = OCCLUDER_SIDE
            for k in range(self.occluders):  # (B,) centre, side; (B, 3) colour of occluder k
                cx, cy, side = draws[:, k, 0], draws[:, k, 1], low + (high - low) * draws[:, k, 2]
                colour = (draws[:, k, 3:] * 2.0 - 1.0) * OCCLUDER_VALUE
                inside_x = (coords - cx[:, None]).abs() <= side[:, None] / 2  # (B, S) columns
                inside_y = (coords - cy[:, None]).abs() <= side[:, None] / 2  # (B, S) rows
                covered = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]  # (B, 1, S, S)
                images = torch.where(covered, colour[:, :, None, None], images)
        if self.noise_std > 0:
            half = channels * size * size // 2 + 1
            u = uniforms(self.seed + _NOISE_SEED, index, 2 * half).view(batch, 2, half)
            radius = torch.sqrt(-2.0 * torch.log1p(-u[:, 0]))  # 1 - u1 in (0, 1]: finite
            angle = (2.0 * math.pi) * u[:, 1]
            normal = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], 1)  # (B, 2 * half)
            images = images + self.noise_std * normal[:, : channels * size * size].view(images.shape)
        return images


def regime_data(regime: Regime, *, n: int, size: int, num_classes: int, seed: int,
                device: torch.device) -> SynthShapes | CorruptedImages:
    """``n`` images of ``regime`` from SynthShapes seed ``seed`` on ``device``."""
    data = SynthShapes(n, size=size, num_classes=num_classes, seed=seed, device=device)
    if not regime.corrupts:
        return data
    return CorruptedImages(data, noise_std=regime.noise_std, occluders=regime.occluders)
