"""Paired image/mask folders (your own data) and the base class of every file dataset.

Layout, with ``ROOT`` the ``root`` you pass::

    ROOT/images/<stem>.png | .jpg | .jpeg | .tif | .tiff | .bmp
    ROOT/masks/<stem>.png  | .tif | .tiff | .bmp        (same stem as its image)
    ROOT/classes.txt                                    (optional: one class name per line)

or with explicit splits, ``ROOT/train/{images,masks}`` and ``ROOT/val/{images,masks}``.
Without split folders a pair is in "val" when ``crc32(stem) % 1000 < 1000 * val_fraction``,
so a pair stays in its split when you add more data. Masks, read with Pillow:

* ``binary=True``: 0 is background, 1 or 255 is foreground (0/1 and 0/255 files both work).
* index masks (``L``/``P``/16-bit PNG or TIFF): values are class indices, 255 = ignore.
* colour masks (RGB) with ``palette=``: each colour maps to its class; others are an error.

Every file dataset (folders, VOC, Cityscapes, ADE20K) returns ``(image (3, H, W) float32
normalised, mask (H, W) int64)``. Augmentation draws are a pure function of ``(seed, epoch,
index)``: call ``set_epoch(epoch)`` before each epoch's DataLoader iterator (as with
``DistributedSampler``), and a resumed run draws the same crops and flips as an unbroken
one, with any number of workers. Bad data raises an error naming the file and the fault.
"""
from __future__ import annotations

import operator
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segan_lib.data.transforms import (
    Palette, PairedTransform, as_size, channel_stats, decode_colour_mask, image_to_tensor, resize_image,
)

IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")  # JPEG only to explain why it fails
STATS_MAX_IMAGES = 256  # normalisation statistics use at most this many evenly spaced training images
README_HINT = ("See data/README.md in the segan-course repository for each dataset's layout, "
               "where it is published and where to unpack it. Nothing is downloaded at run time.")
FOLDER_LAYOUT = ("ROOT/images/<stem>.png|.jpg|.tif and ROOT/masks/<stem>.png (same stems), "
                 "or ROOT/train/{images,masks} and ROOT/val/{images,masks}; optional ROOT/classes.txt")
_STATS_CACHE: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def missing_root_error(dataset: str, root: str | Path, layout: str) -> FileNotFoundError:
    """The error for a dataset root that is absent or not laid out as expected."""
    return FileNotFoundError(f"{dataset} not found at {root}: expected {layout}. {README_HINT}")


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to 8-bit RGB ``(H, W, 3)``; unreadable or truncated files name the file.

    Greyscale is repeated over three channels; 16-bit greyscale ``x`` becomes
    ``round(255 x / 65535)``. Floating-point images are refused.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith("I"):  # 16/32-bit integer greyscale
                values = np.asarray(img).astype(np.int64)
            elif img.mode == "F":
                values = None
            else:
                return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"image {path} cannot be read ({exc}): the file is truncated, corrupt "
                         "or not an image Pillow can open") from exc
    if values is None or values.min() < 0 or values.max() > 65535:
        raise ValueError(f"image {path} is a floating-point or 32-bit image; store it as 8- or 16-bit")
    grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(255 x / 65535)
    return np.repeat(grey[..., None], 3, axis=2)  # (H, W) -> (H, W, 3)


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask file without changing its values: ``(H, W)`` indices (``P`` masks give their
    palette indices) or ``(H, W, C)`` for colour masks."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "1":
                return np.asarray(img, dtype=np.uint8)  # bool -> 0/1
            return np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"mask {path} cannot be read ({exc}): the file is truncated, corrupt "
                         "or not an image Pillow can open") from exc


def _jpeg_hint(path: Path) -> str:
    lossy = path.suffix.lower() in (".jpg", ".jpeg")
    return " (JPEG compression changes label values: store masks as PNG)" if lossy else ""


def check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Labels must lie in ``0..num_classes-1`` or be 255 (ignore); otherwise name the file and values."""
    bad = (labels < 0) | ((labels >= num_classes) & (labels != IGNORE_INDEX))
    if bad.any():
        values = np.unique(labels[bad])[:8].tolist()
        raise ValueError(f"mask {path} holds label values {values} outside the {num_classes} classes "
                         f"0..{num_classes - 1} (255 = ignore){_jpeg_hint(path)}")


class PairedSegmentationDataset(torch.utils.data.Dataset):
    """A list of ``(image_path, mask_path)`` pairs, a mask decoder and a :class:`PairedTransform`.

    Item ``i``: ``(image (3, h, w) float32, (x - mean) / std per channel; mask (h, w) int64
    in 0..K-1 or 255)``. ``mean``/``std`` default to :func:`channel_stats` of (at most
    ``STATS_MAX_IMAGES`` evenly spaced) training images ``stats_pairs`` resized to ``size``,
    in ``[0, 1]`` units; they are cached per process. Subclasses implement :meth:`decode_mask`.
    """

    in_channels = 3
    ignore_index = IGNORE_INDEX

    def __init__(
        self, pairs: Sequence[tuple[Path, Path]], *, class_names: Sequence[str],
        stats_pairs: Sequence[tuple[Path, Path]], size: int | Sequence[int] = 128, augment: bool = False,
        seed: int = 0, n: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
    ) -> None:
        if n is not None and n <= 0:
            raise ValueError(f"n must be a positive number of pairs or None, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean!r}, std={std!r}")
        self.pairs = list(pairs)[:n] if n is not None else list(pairs)
        if not self.pairs:
            raise ValueError(f"{type(self).__name__} has no image/mask pairs to load")
        self.class_names = tuple(class_names)
        self.CLASS_NAMES = self.class_names  # the spelling SynthShapes uses
        self.num_classes = len(self.class_names)
        self.seed = int(seed)
        self.epoch = 0
        if mean is None or std is None:
            mean, std = self.training_stats(stats_pairs, size)
        self.transform = PairedTransform(size, mean=mean, std=std, augment=augment)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.transform.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.transform.std

    @staticmethod
    def training_stats(
        stats_pairs: Sequence[tuple[Path, Path]], size: int | Sequence[int]
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean/std of the training images at the working ``size`` (see class docstring)."""
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

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw mask array as read by :func:`read_mask` -> labels ``(H, W)`` int64 (255 = ignore)."""
        raise NotImplementedError

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``index`` untransformed and validated: image ``(H, W, 3)`` uint8, labels ``(H, W)`` int64."""
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


def _files_by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.stem in found:
            raise ValueError(f"{found[path.stem]} and {path} share the stem {path.stem!r}: keep one file per stem")
        found[path.stem] = path
    return found


def list_folder_pairs(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """Match ``image_dir/<stem>.*`` with ``mask_dir/<stem>.*``; a missing mask names its image."""
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {folder} does not exist: expected {FOLDER_LAYOUT}. {README_HINT}")
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
    masks = _files_by_stem(mask_dir, MASK_EXTENSIONS)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
    missing = [images[stem] for stem in images if stem not in masks]
    if missing:
        more = f" ({len(missing) - 1} more images have no mask)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"mask missing for image {missing[0]}: expected {mask_dir / missing[0].stem}.png "
                                f"(or .tif/.tiff/.bmp with the same stem){more}")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


class FolderDataset(PairedSegmentationDataset):
    """Your own data as paired folders (layout in the module docstring).

    ``split`` is "train", "val" or "all". Classes: ``binary=True`` gives 2 (background,
    foreground); otherwise ``num_classes``, else the names in ``class_names`` or
    ``ROOT/classes.txt``, else the length of a colour-list ``palette``. ``augment`` defaults to
    ``split == "train"``.
    """

    def __init__(
        self, root: str | Path, split: str = "train", *, num_classes: int | None = None, binary: bool = False,
        palette: Palette | None = None, class_names: Sequence[str] | None = None, size: int | Sequence[int] = 128,
        augment: bool | None = None, seed: int = 0, n: int | None = None, val_fraction: float = 0.2,
        mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
    ) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be one of ('train', 'val', 'all'), got {split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        self.root = Path(root)
        if not (self.root / "images").is_dir() and not (self.root / "train" / "images").is_dir():
            raise missing_root_error("paired-folder dataset", self.root, FOLDER_LAYOUT)
        self.binary, self.palette = binary, palette
        splits = {name: self._split_pairs(name, val_fraction) for name in ("train", "val")}
        pairs = splits["train"] + splits["val"] if split == "all" else splits[split]
        if not pairs:
            raise ValueError(f"split {split!r} of {self.root} is empty (val_fraction={val_fraction}); "
                             "add data, change val_fraction or use ROOT/train and ROOT/val folders")
        names = self._class_names(num_classes, class_names)
        super().__init__(sorted(pairs), class_names=names, stats_pairs=splits["train"], size=size,
                         augment=split == "train" if augment is None else augment, seed=seed, n=n, mean=mean, std=std)

    def _split_pairs(self, split: str, val_fraction: float) -> list[tuple[Path, Path]]:
        if (self.root / "train" / "images").is_dir():
            return list_folder_pairs(self.root / split / "images", self.root / split / "masks")
        pairs = list_folder_pairs(self.root / "images", self.root / "masks")
        in_val = [zlib.crc32(img.stem.encode()) % 1000 < round(1000 * val_fraction) for img, _ in pairs]
        return [pair for pair, v in zip(pairs, in_val) if v == (split == "val")]

    def _class_names(self, num_classes: int | None, class_names: Sequence[str] | None) -> tuple[str, ...]:
        names_file = self.root / "classes.txt"
        if class_names is None and names_file.is_file():
            lines = names_file.read_text(encoding="utf-8").splitlines()
            class_names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if self.binary:
            count = 2
        elif num_classes is not None:
            count = num_classes
        elif class_names is not None:
            count = len(class_names)
        elif self.palette is not None and not isinstance(self.palette, Mapping):
            count = len(self.palette)
        else:
            raise ValueError(f"num_classes is required for the index masks in {self.root} "
                             "(or list the class names in ROOT/classes.txt, or pass binary=True)")
        if count < 2:
            raise ValueError(f"num_classes must be >= 2, got {count}")
        if class_names is not None and len(class_names) != count:
            raise ValueError(f"{count} classes expected (num_classes/binary) but class names list "
                             f"{len(class_names)}: {list(class_names)} (from class_names or {names_file})")
        default = ("background", "foreground") if self.binary else tuple(f"class {k}" for k in range(count))
        return tuple(class_names) if class_names is not None else default

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Binary: 0 -> 0, 1 or 255 -> 1. Index: values kept. Colour (RGB): through ``palette``."""
        if raw.ndim == 3:
            if self.palette is not None and raw.shape[2] >= 3:
                return decode_colour_mask(raw[..., :3], self.palette, path)
            channels = raw[..., : min(3, raw.shape[2])]  # drop alpha
            if not (channels == channels[..., :1]).all():
                raise ValueError(f"mask {path} is a colour image; pass palette= (colours -> classes) "
                                 "or store class indices in a single-channel PNG")
            raw = raw[..., 0]
        if self.binary:
            values = np.unique(raw)
            bad = values[~np.isin(values, (0, 1, 255))]
            if bad.size:
                raise ValueError(f"binary mask {path} holds values {bad[:8].tolist()}; expected 0 (background) "
                                 f"and 1 or 255 (foreground){_jpeg_hint(path)}")
            return (raw != 0).astype(np.int64)
        return raw.astype(np.int64)
