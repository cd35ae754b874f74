"""PASCAL VOC 2012 semantic segmentation (Everingham et al., "The PASCAL Visual Object Classes
Challenge", IJCV 2010; VOC2012 development kit).

Layout (``root`` may be ``VOCdevkit/VOC2012`` itself, ``VOCdevkit`` or the folder holding it)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png          (palette 'P' PNGs)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

21 classes (background + 20 objects). The masks are palette PNGs whose *indices* are the
labels: 0..20, and 255 on object borders and "difficult" regions, which stays 255 = ignore.
Masks re-saved as RGB are decoded through the VOC colour map (:func:`voc_colormap`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segan_lib.data.files import IGNORE_INDEX, missing_root_error
from segan_lib.data.paired import PairedSegmentationDataset
from segan_lib.data.palette import decode_colour_mask, voc_colormap  # voc_colormap re-exported here

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_LAYOUT = ("VOCdevkit/VOC2012/JPEGImages/<id>.jpg, VOCdevkit/VOC2012/SegmentationClass/<id>.png and "
              "VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt")
VOC_SPLITS = ("train", "val", "trainval")


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder under ``root`` (``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``)."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    raise missing_root_error("PASCAL VOC 2012", root, VOC_LAYOUT)


def voc_pairs(voc_root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(JPEGImages/<id>.jpg, SegmentationClass/<id>.png)`` for each id listed in the split file."""
    split_file = voc_root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"split file {split_file} is missing: expected {VOC_LAYOUT}")
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    pairs = [(voc_root / "JPEGImages" / f"{i}.jpg", voc_root / "SegmentationClass" / f"{i}.png") for i in ids]
    for image_path, mask_path in pairs:
        if not image_path.is_file():
            raise FileNotFoundError(f"image {image_path} listed in {split_file} is missing")
        if not mask_path.is_file():
            raise FileNotFoundError(f"mask missing for image {image_path}: expected {mask_path}")
    return pairs


class VOCSegmentation(PairedSegmentationDataset):
    """PASCAL VOC 2012 segmentation: ``split`` in train (1,464 images), val (1,449), trainval.

    Items are ``(image (3, h, w) float32 normalised, mask (h, w) int64 in 0..20 or 255)``;
    normalisation statistics come from the train split; ``augment`` defaults to
    ``split == "train"``.
    """

    CLASS_NAMES = VOC_CLASSES

    def __init__(
        self, root: str | Path, split: str = "train", *, size: int | Sequence[int] = 128, augment: bool | None = None,
        seed: int = 0, n: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
    ) -> None:
        if split not in VOC_SPLITS:
            raise ValueError(f"split must be one of {VOC_SPLITS}, got {split!r}")
        self.root = find_voc_root(root)
        pairs = voc_pairs(self.root, split)
        stats_pairs = pairs if split == "train" else voc_pairs(self.root, "train")
        super().__init__(pairs, class_names=VOC_CLASSES, stats_pairs=stats_pairs, size=size,
                         augment=split == "train" if augment is None else augment, seed=seed, n=n, mean=mean, std=std)

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """'P' (or 'L') PNG: indices are labels. RGB: decoded through the VOC colour map (border -> 255)."""
        if raw.ndim == 3:
            colours = voc_colormap()
            palette = {tuple(int(c) for c in colours[k]): k for k in range(len(VOC_CLASSES))}
            palette[tuple(int(c) for c in colours[IGNORE_INDEX])] = IGNORE_INDEX
            return decode_colour_mask(raw[..., :3], palette, path)
        return raw.astype(np.int64)
