"""Paired image/mask folders: your own data, matched by file stem.

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

JPEG masks are an error (lossy compression changes label values). Items, augmentation and
bad-data errors are those of :class:`~segan_lib.data.paired.PairedSegmentationDataset`.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segan_lib.data.files import README_HINT, check_lossless_mask, missing_root_error
from segan_lib.data.paired import PairedSegmentationDataset
from segan_lib.data.palette import Palette, decode_colour_mask

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")  # JPEG only to explain why it fails
FOLDER_LAYOUT = ("ROOT/images/<stem>.png|.jpg|.tif and ROOT/masks/<stem>.png (same stems), "
                 "or ROOT/train/{images,masks} and ROOT/val/{images,masks}; optional ROOT/classes.txt")
SPLITS = ("train", "val", "all")


def files_by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """``{stem: path}`` of the files in ``folder`` with one of ``extensions`` (hidden files skipped).

    Two files with one stem (``a.png`` and ``a.jpg``) are an error naming both.
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.stem in found:
            raise ValueError(f"{found[path.stem]} and {path} share the stem {path.stem!r}: keep one file per stem")
        found[path.stem] = path
    return found


def list_folder_pairs(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """Match ``image_dir/<stem>.*`` with ``mask_dir/<stem>.*``, sorted by stem.

    Errors name the file: a missing folder (with the expected layout), no images, an image
    without a mask, a JPEG mask. Masks without an image are left out.
    """
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {folder} does not exist: expected {FOLDER_LAYOUT}. {README_HINT}")
    images = files_by_stem(image_dir, IMAGE_EXTENSIONS)
    masks = files_by_stem(mask_dir, MASK_EXTENSIONS)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
    missing = [images[stem] for stem in images if stem not in masks]
    if missing:
        more = f" ({len(missing) - 1} more images have no mask)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"mask missing for image {missing[0]}: expected {mask_dir / missing[0].stem}.png "
                                f"(or .tif/.tiff/.bmp with the same stem){more}")
    pairs = [(images[stem], masks[stem]) for stem in sorted(images)]
    for _, mask_path in pairs:
        check_lossless_mask(mask_path)
    return pairs


def read_class_names(path: Path) -> list[str]:
    """Class names from a ``classes.txt``: one per line; blank lines and ``#`` comments skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


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
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        self.root = Path(root)
        if not (self.root / "images").is_dir() and not (self.root / "train" / "images").is_dir():
            raise missing_root_error("paired-folder dataset", self.root, FOLDER_LAYOUT)
        self.binary, self.palette = binary, palette
        names = self._class_names(num_classes, class_names)
        train_pairs = self._split_pairs("train", val_fraction)  # also the normalisation statistics
        val_pairs = self._split_pairs("val", val_fraction) if split != "train" else []
        pairs = {"train": train_pairs, "val": val_pairs, "all": train_pairs + val_pairs}[split]
        if not pairs:
            raise ValueError(f"split {split!r} of {self.root} is empty (val_fraction={val_fraction}); "
                             "add data, change val_fraction or use ROOT/train and ROOT/val folders")
        super().__init__(sorted(pairs), class_names=names, stats_pairs=train_pairs, size=size,
                         augment=split == "train" if augment is None else augment, seed=seed, n=n, mean=mean, std=std)

    def _split_pairs(self, split: str, val_fraction: float) -> list[tuple[Path, Path]]:
        """The pairs of ``split`` ("train" or "val"): its own folders, else by ``crc32(stem)``."""
        if (self.root / "train" / "images").is_dir():
            return list_folder_pairs(self.root / split / "images", self.root / split / "masks")
        pairs = list_folder_pairs(self.root / "images", self.root / "masks")
        in_val = [zlib.crc32(img.stem.encode()) % 1000 < round(1000 * val_fraction) for img, _ in pairs]
        return [pair for pair, v in zip(pairs, in_val) if v == (split == "val")]

    def _class_names(self, num_classes: int | None, class_names: Sequence[str] | None) -> tuple[str, ...]:
        """Names of the classes: see the class docstring for where the count comes from."""
        names_file = self.root / "classes.txt"
        if class_names is None and names_file.is_file():
            class_names = read_class_names(names_file)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
            raise ValueError(f"num_classes must be an int >= 2 or None, got {num_classes!r}")
        if self.binary and num_classes not in (None, 2):
            raise ValueError(f"binary=True means 2 classes (background, foreground), got num_classes={num_classes}")
        if self.binary:
            count = 2
        elif num_classes is not None:
            count = num_classes
        elif class_names is not None:
            count = len(class_names)
        elif self.palette is not None and not isinstance(self.palette, Mapping):
            count = len(self.palette)
        else:
            raise ValueError(f"num_classes is required for the masks in {self.root} "
                             "(or list the class names in ROOT/classes.txt, or pass binary=True)")
        if count < 2:
            raise ValueError(f"num_classes must be >= 2, got {count}")
        if class_names is not None and len(class_names) != count:
            raise ValueError(f"{count} classes expected (num_classes/binary) but class names list "
                             f"{len(class_names)}: {list(class_names)} (from class_names or {names_file})")
        default = ("background", "foreground") if self.binary else tuple(f"class {k}" for k in range(count))
        return tuple(class_names) if class_names is not None else default

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw mask ``(H, W)`` or ``(H, W, C)`` -> labels ``(H, W)`` int64.

        Binary: 0 -> 0, 1 or 255 -> 1, anything else an error naming ``path``. Index: values
        kept. Colour (RGB/RGBA) with ``palette``: through the palette. A colour mask without a
        palette is an error unless its colour channels are equal (a grey picture).
        """
        if raw.ndim == 3:
            if self.palette is not None and raw.shape[2] >= 3:
                return decode_colour_mask(raw[..., :3], self.palette, path)
            channels = raw[..., :1] if raw.shape[2] <= 2 else raw[..., :3]  # drop alpha (LA, RGBA)
            if not (channels == channels[..., :1]).all():
                raise ValueError(f"mask {path} is a colour image; pass palette= (colours -> classes) "
                                 "or store class indices in a single-channel PNG")
            raw = raw[..., 0]
        if self.binary:
            values = np.unique(raw)
            bad = values[~np.isin(values, (0, 1, 255))]
            if bad.size:
                raise ValueError(f"binary mask {path} holds values {bad[:8].tolist()}; expected 0 (background) "
                                 "and 1 or 255 (foreground)")
            return (raw != 0).astype(np.int64)
        return raw.astype(np.int64)
