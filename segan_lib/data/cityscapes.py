"""Cityscapes fine annotations with the official 19 training classes (Cordts et al., "The
Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016).

Layout (``root`` is the folder holding both)::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The masks hold label ids 0..33; :data:`CITYSCAPES_LABELS` is the table of
``cityscapesscripts/helpers/labels.py`` (mcordts/cityscapesScripts), and
:data:`LABEL_ID_TO_TRAIN_ID` its ``id -> trainId`` map: 19 training classes 0..18; every
other id (void, and the rare classes ignored in evaluation) becomes 255 = ignore. The
``license plate`` label (id -1) is never written into labelId images, so it is left out.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from segan_lib.data.files import IGNORE_INDEX, missing_root_error
from segan_lib.data.paired import PairedSegmentationDataset


class CityscapesLabel(NamedTuple):
    name: str
    label_id: int  # value in *_gtFine_labelIds.png
    train_id: int  # 0..18, or 255 = ignore


CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = tuple(CityscapesLabel(*row) for row in (
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255), ("out of roi", 3, 255),
    ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255), ("road", 7, 0), ("sidewalk", 8, 1),
    ("parking", 9, 255), ("rail track", 10, 255), ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4),
    ("guard rail", 14, 255), ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9), ("sky", 23, 10),
    ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14), ("bus", 28, 15),
    ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16), ("motorcycle", 32, 17), ("bicycle", 33, 18),
))
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {label.label_id: label.train_id for label in CITYSCAPES_LABELS}
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(
    label.name for label in sorted(CITYSCAPES_LABELS, key=lambda lab: lab.train_id) if label.train_id != IGNORE_INDEX
)
CITYSCAPES_LAYOUT = ("ROOT/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png and "
                     "ROOT/gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png")
CITYSCAPES_SPLITS = ("train", "val")

_INVALID = -1
_LOOKUP = np.full(256, _INVALID, dtype=np.int64)  # label id -> train id; unknown ids stay -1
for _id, _train in LABEL_ID_TO_TRAIN_ID.items():
    _LOOKUP[_id] = _train


def label_ids_to_train_ids(label_ids: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Map a labelIds array ``(H, W)`` to train ids ``(H, W)`` int64 (0..18, 255 = ignore).

    Ids outside 0..33 are an error naming ``path``.
    """
    if label_ids.ndim != 2:
        raise ValueError(f"mask {path} must be a single-channel labelIds image, got shape {label_ids.shape}")
    if label_ids.min() < 0 or label_ids.max() >= len(_LOOKUP):
        raise ValueError(f"mask {path} holds label ids outside the Cityscapes label ids 0..33: "
                         f"min {label_ids.min()}, max {label_ids.max()}")
    train_ids = _LOOKUP[label_ids]
    if (train_ids == _INVALID).any():
        bad = np.unique(label_ids[train_ids == _INVALID])[:8].tolist()
        raise ValueError(f"mask {path} holds label ids {bad} outside the Cityscapes label ids 0..33")
    return train_ids


def cityscapes_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(leftImg8bit image, gtFine labelIds mask)`` for every image of ``split``, sorted."""
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"split folder {image_dir} is missing: expected {CITYSCAPES_LAYOUT}")
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise FileNotFoundError(f"no *_leftImg8bit.png images in {image_dir}/<city>/: expected {CITYSCAPES_LAYOUT}")
    pairs = []
    for image_path in images:
        name = image_path.name[: -len("_leftImg8bit.png")]
        mask_path = root / "gtFine" / split / image_path.parent.name / f"{name}_gtFine_labelIds.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"mask missing for image {image_path}: expected {mask_path}")
        pairs.append((image_path, mask_path))
    return pairs


class CityscapesSegmentation(PairedSegmentationDataset):
    """Cityscapes gtFine: ``split`` train (2,975 images) or val (500); 19 classes, 255 = ignore.

    Items are ``(image (3, h, w) float32 normalised, mask (h, w) int64 train ids)``. The
    frames are 1024 x 2048: ``size=(64, 128)`` or ``(128, 256)`` keeps their aspect ratio.
    Normalisation statistics come from the train split; ``augment`` defaults to
    ``split == "train"``.
    """

    CLASS_NAMES = CITYSCAPES_CLASSES

    def __init__(
        self, root: str | Path, split: str = "train", *, size: int | Sequence[int] = 128, augment: bool | None = None,
        seed: int = 0, n: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
    ) -> None:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"split must be one of {CITYSCAPES_SPLITS}, got {split!r}")
        self.root = Path(root)
        if not (self.root / "leftImg8bit").is_dir() or not (self.root / "gtFine").is_dir():
            raise missing_root_error("Cityscapes", self.root, CITYSCAPES_LAYOUT)
        pairs = cityscapes_pairs(self.root, split)
        stats_pairs = pairs if split == "train" else cityscapes_pairs(self.root, "train")
        super().__init__(pairs, class_names=CITYSCAPES_CLASSES, stats_pairs=stats_pairs, size=size,
                         augment=split == "train" if augment is None else augment, seed=seed, n=n, mean=mean, std=std)

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """labelIds -> trainIds through the official table."""
        return label_ids_to_train_ids(raw, path)
