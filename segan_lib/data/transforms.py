"""Paired image + mask transforms: one geometry for both, never an interpolated label.

A segmentation sample is an image ``(3, H, W)`` and a mask ``(H, W)`` of class indices.
Every geometric step here moves both by exactly the same map:

* :func:`resize_pair`: the image with bilinear interpolation (antialiased when shrinking),
  the mask with nearest-neighbour (``"nearest-exact"``, the pixel-centre convention that
  matches ``align_corners=False`` bilinear), so every output label is one of the input
  labels, ``ignore_index`` included.
* :func:`random_crop_pair` and :func:`hflip_pair`: exact copies of pixels, no resampling.
* :func:`normalize`: ``(x - mean_c) / std_c`` per channel on the image only, with
  statistics from :func:`channel_stats` over the training split.

:class:`PairedTransform` chains them: training (``augment=True``) resizes to
``s * size`` with ``s ~ U[1, max_scale]``, takes a random ``size`` crop, flips
horizontally with probability 1/2, then normalises; evaluation resizes to ``size`` and
normalises. All randomness comes from the ``torch.Generator`` passed in, so a sample is a
pure function of that generator's seed (the datasets seed it from ``(seed, epoch, index)``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Size = tuple[int, int]


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def as_size(size: int | Sequence[int], name: str = "size") -> Size:
    """``128 -> (128, 128)``; ``(h, w)`` is kept. Anything else (non-positive, float, three
    numbers, a string) raises ``ValueError`` naming ``name``."""
    if _is_int(size):
        pair: tuple = (int(size), int(size))
    elif isinstance(size, Sequence) and not isinstance(size, str) and all(_is_int(s) for s in size):
        pair = tuple(int(s) for s in size)
    else:
        pair = ()
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of positive ints, got {size!r}")
    return pair  # type: ignore[return-value]


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """8-bit RGB array ``(H, W, 3)`` -> float32 tensor ``(3, H, W)`` in ``[0, 1]`` (x / 255)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def _check_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.dim() != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float tensor of shape (C, H, W), got {image.dtype} {tuple(image.shape)}")
    if mask.dim() != 2 or mask.dtype != torch.int64:
        raise ValueError(f"mask must be an int64 tensor of shape (H, W), got {mask.dtype} {tuple(mask.shape)}")
    if image.shape[1:] != mask.shape:
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in height/width")


def resize_pair(
    image: torch.Tensor, mask: torch.Tensor, size: int | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize image ``(C, H, W)`` bilinearly and mask ``(H, W)`` by nearest neighbour to ``size``.

    The mask never gets an interpolated value: each output label is copied from the input
    pixel whose centre is nearest, ``ignore_index`` (255) included.
    """
    _check_pair(image, mask)
    h, w = as_size(size)
    if mask.shape == (h, w):
        return image, mask
    # labels <= 255 are exact in float32; (1, 1, H, W) -> (h, w)
    labels = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].long()
    return resize_image(image, (h, w)), labels


def resize_image(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``(C, H, W)`` to ``size`` (``align_corners=False``; antialiased when shrinking)."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.is_floating_point():
        described = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor of shape (C, H, W), got {described}")
    h, w = as_size(size)
    if image.shape[1:] == (h, w):
        return image
    shrinking = h < image.shape[1] or w < image.shape[2]
    return F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False, antialias=shrinking)[0]


def random_crop_pair(
    image: torch.Tensor, mask: torch.Tensor, size: int | Sequence[int], generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the same random ``size`` window out of image ``(C, H, W)`` and mask ``(H, W)``.

    The top-left corner is uniform over all windows that fit: ``top ~ U{0..H-h}``,
    ``left ~ U{0..W-w}``.
    """
    _check_pair(image, mask)
    h, w = as_size(size)
    height, width = mask.shape
    if h > height or w > width:
        raise ValueError(f"crop size {(h, w)} must not exceed the image size {(height, width)}")
    top = int(torch.randint(height - h + 1, (1,), generator=generator))
    left = int(torch.randint(width - w + 1, (1,), generator=generator))
    return image[:, top:top + h, left:left + w], mask[top:top + h, left:left + w]


def hflip_pair(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror image ``(C, H, W)`` and mask ``(H, W)`` left-right."""
    _check_pair(image, mask)
    return image.flip(-1), mask.flip(-1)


def _channel_vectors(
    image: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as ``(C, 1, 1)`` tensors for ``image (C, H, W)`` or ``(B, C, H, W)``;
    one entry per channel or a ``ValueError`` (never a silent broadcast of one value)."""
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or not image.is_floating_point():
        described = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor of shape (C, H, W) or (B, C, H, W), got {described}")
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device)
    channels = image.shape[-3]
    if mean_t.shape != (channels,) or std_t.shape != (channels,):
        raise ValueError(f"mean and std must have {channels} entries (one per channel), "
                         f"got {list(mean)} and {list(std)}")
    return mean_t[:, None, None], std_t[:, None, None]  # (C,) -> (C, 1, 1)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean_c) / std_c`` for each channel ``c`` of ``image (C, H, W)`` (or ``(B, C, H, W)``).

    ``mean`` and ``std`` need one entry per channel; every ``std_c`` must be > 0.
    """
    mean_t, std_t = _channel_vectors(image, mean, std)
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be > 0 for every channel, got {list(std)}")
    return (image - mean_t) / std_t


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``x * std_c + mean_c``, clamped to ``[0, 1]`` for display.

    ``image (C, H, W)`` or ``(B, C, H, W)``, channels first (for ``imshow``'s channels-last
    arrays use :func:`segan_lib.viz.segmentation.denormalize`).
    """
    mean_t, std_t = _channel_vectors(image, mean, std)
    return (image * std_t + mean_t).clamp(0.0, 1.0)


def channel_stats(images: Iterable[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation over all pixels of all images.

    ``images`` yields ``(C, H, W)`` tensors (sizes may differ). With ``N`` pixels in all,
    ``mean_c = sum x / N`` and ``std_c = sqrt(sum x^2 / N - mean_c^2)``, accumulated in
    float64. A constant channel (std 0) gets std 1, so normalising only centres it.
    """
    total = sq_total = None
    count = 0
    for image in images:
        pixels = image.detach().to(torch.float64).flatten(1)  # (C, H, W) -> (C, H*W)
        total = pixels.sum(1) if total is None else total + pixels.sum(1)
        sq_total = pixels.square().sum(1) if sq_total is None else sq_total + pixels.square().sum(1)
        count += pixels.shape[1]
    if total is None or sq_total is None or count == 0:
        raise ValueError("images must yield at least one image to compute channel statistics, got none")
    mean = total / count
    std = (sq_total / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


class PairedTransform:
    """Resize (+ random scale, crop and flip when augmenting), then normalise; same map for both.

    ``__call__(image (3, H, W) float in [0, 1], mask (H, W) int64, generator)`` returns
    ``(image (3, h, w) float32 normalised, mask (h, w) int64)`` with ``(h, w) = size``.

    Training (``augment=True``): ``s ~ U[1, max_scale]``; resize both to
    ``(round(s h), round(s w))``; crop a random ``(h, w)`` window; flip left-right with
    probability 1/2. Evaluation (``augment=False``): resize both to ``(h, w)``. The aspect
    ratio is not kept unless ``size`` has the data's aspect (e.g. ``(64, 128)`` for
    Cityscapes' 1024 x 2048 frames).
    """

    def __init__(
        self, size: int | Sequence[int], *, mean: Sequence[float], std: Sequence[float],
        augment: bool = False, max_scale: float = 1.25,
    ) -> None:
        self.size = as_size(size)
        if max_scale < 1.0:
            raise ValueError(f"max_scale must be >= 1, got {max_scale!r}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        normalize(torch.zeros(len(self.mean), 1, 1), self.mean, self.std)  # validates mean/std early
        self.augment = augment
        self.max_scale = max_scale

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.size
        if self.augment:
            scale = 1.0 + (self.max_scale - 1.0) * float(torch.rand((), generator=generator))
            image, mask = resize_pair(image, mask, (max(h, round(scale * h)), max(w, round(scale * w))))
            image, mask = random_crop_pair(image, mask, (h, w), generator)
            if float(torch.rand((), generator=generator)) < 0.5:
                image, mask = hflip_pair(image, mask)
        else:
            image, mask = resize_pair(image, mask, (h, w))
        return normalize(image, self.mean, self.std).contiguous(), mask.contiguous()

    def __repr__(self) -> str:
        return (f"PairedTransform(size={self.size}, augment={self.augment}, max_scale={self.max_scale}, "
                f"mean={tuple(round(m, 4) for m in self.mean)}, std={tuple(round(s, 4) for s in self.std)})")
