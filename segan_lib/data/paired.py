"""The base class of every file dataset: a list of (image, mask) files, a mask decoder, a transform.

Paired folders, VOC, Cityscapes and ADE20K differ only in where their files are and how a
mask file's values become class indices; :class:`PairedSegmentationDataset` does the rest.
Every one returns ``(image (3, h, w) float32 normalised, mask (h, w) int64)`` with labels
in ``0..K-1`` or 255 (ignore).

Augmentation draws are a pure function of ``(seed, epoch, index)``: call
``set_epoch(epoch)`` before each epoch's DataLoader iterator (as with
``DistributedSampler``), and a resumed run draws the same crops and flips as an unbroken
one, with any number of workers. Bad data raises an error naming the file and the fault.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segan_lib.data.files import IGNORE_INDEX, check_labels, read_image, read_mask
from segan_lib.data.transforms import PairedTransform, as_size, channel_stats, image_to_tensor, resize_image

STATS_MAX_IMAGES = 256  # normalisation statistics use at most this many evenly spaced training images
_STATS_CACHE: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def training_stats(
    stats_pairs: Sequence[tuple[Path, Path]], size: int | Sequence[int]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of the training images, in ``[0, 1]`` units, at the working ``size``.

    :func:`~segan_lib.data.transforms.channel_stats` of at most ``STATS_MAX_IMAGES`` evenly
    spaced images of ``stats_pairs`` (``(image_path, mask_path)``), each resized to ``size``
    first. Cached per process by (image paths, size).
    """
    if not stats_pairs:
        raise ValueError("the training split is empty, so no normalisation statistics can be computed; "
                         "pass mean= and std=")
    count = len(stats_pairs)
    picks = np.unique(np.linspace(0, count - 1, min(count, STATS_MAX_IMAGES)).round().astype(int))
    paths = tuple(str(stats_pairs[i][0]) for i in picks)
    key = (paths, as_size(size))
    if key not in _STATS_CACHE:
        images = (resize_image(image_to_tensor(read_image(Path(p))), size) for p in paths)
        _STATS_CACHE[key] = channel_stats(images)
    return _STATS_CACHE[key]


class PairedSegmentationDataset(torch.utils.data.Dataset):
    """A list of ``(image_path, mask_path)`` pairs, a mask decoder and a :class:`PairedTransform`.

    Item ``i``: ``(image (3, h, w) float32, (x - mean) / std per channel; mask (h, w) int64
    in 0..K-1 or 255)``, ``(h, w) = size``. ``mean``/``std`` default to
    :func:`training_stats` of ``stats_pairs`` (the training split). The first ``n`` pairs
    are kept when ``n`` is given. Subclasses implement :meth:`decode_mask`.
    """

    in_channels = 3
    ignore_index = IGNORE_INDEX

    def __init__(
        self, pairs: Sequence[tuple[Path, Path]], *, class_names: Sequence[str],
        stats_pairs: Sequence[tuple[Path, Path]], size: int | Sequence[int] = 128, augment: bool = False,
        seed: int = 0, n: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
    ) -> None:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ValueError(f"n must be a positive number of pairs or None, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean!r}, std={std!r}")
        if len(class_names) < 2:
            raise ValueError(f"class_names must name at least 2 classes, got {list(class_names)}")
        self.pairs = list(pairs)[:n] if n is not None else list(pairs)
        if not self.pairs:
            raise ValueError(f"{type(self).__name__} has no image/mask pairs to load")
        self.class_names = tuple(class_names)
        self.CLASS_NAMES = self.class_names  # the spelling SynthShapes uses
        self.num_classes = len(self.class_names)
        self.seed = int(seed)
        self.epoch = 0
        if mean is None or std is None:
            mean, std = training_stats(stats_pairs, size)
        elif len(mean) != self.in_channels or len(std) != self.in_channels:
            raise ValueError(f"mean and std must have {self.in_channels} entries (one per RGB channel), "
                             f"got {list(mean)} and {list(std)}")
        self.transform = PairedTransform(size, mean=mean, std=std, augment=augment)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.transform.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.transform.std

    training_stats = staticmethod(training_stats)  # also reachable as a method, as before the split

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw mask array as read by :func:`~segan_lib.data.files.read_mask` -> labels ``(H, W)``
        int64 (255 = ignore). Each dataset says how its mask files encode the classes."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode_mask(raw, path)")

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``index`` untransformed and validated: image ``(H, W, 3)`` uint8, labels ``(H, W)`` int64.

        Raises ``ValueError`` naming the file(s) for an unreadable file, an image/mask size
        mismatch, or a label outside ``0..num_classes-1`` and 255.
        """
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if raw.shape[:2] != image.shape[:2]:
            (h, w), (mh, mw) = image.shape[:2], raw.shape[:2]
            raise ValueError(f"image {image_path} is {w}x{h} pixels but its mask {mask_path} is {mw}x{mh}")
        labels = self.decode_mask(raw, mask_path)
        check_labels(labels, self.num_classes, mask_path)
        return image, labels

    def sample_generator(self, index: int) -> torch.Generator:
        """The generator of sample ``index`` this epoch, seeded from ``(seed, epoch, index)``."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s augmentation draws (call before iterating each epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        image, labels = self.load_pair(index)
        return self.transform(image_to_tensor(image), torch.from_numpy(labels), self.sample_generator(index))
