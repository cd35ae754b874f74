"""ADE20K scene parsing, the 150-class MIT Scene Parsing Benchmark (Zhou et al., "Scene Parsing
through ADE20K Dataset", CVPR 2017).

Layout (``root`` may be ``ADEChallengeData2016`` or the folder holding it)::

    ADEChallengeData2016/images/{training,validation}/ADE_*_<n>.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_*_<n>.png

The annotation PNGs hold 0..150: 0 is "other" (pixels outside the 150 classes, not
counted by the benchmark) and k = 1..150 is class k (names in ``objectInfo150``). Here
0 -> 255 = ignore and k -> k - 1, so the classes are 0..149 (the usual "reduce zero
label"). Splits: "train" (20,210 images) and "val" (2,000).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segan_lib.data.files import IGNORE_INDEX, missing_root_error
from segan_lib.data.paired import PairedSegmentationDataset

# Short names of objectInfo150 (CSAILVision/sceneparsing), in label order 1..150.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
ADE20K_LAYOUT = ("ADEChallengeData2016/images/{training,validation}/<name>.jpg and "
                 "ADEChallengeData2016/annotations/{training,validation}/<name>.png")
ADE20K_SPLITS = {"train": "training", "val": "validation"}


def find_ade20k_root(root: str | Path) -> Path:
    """The ``ADEChallengeData2016`` folder: ``root`` itself or ``root/ADEChallengeData2016``."""
    root = Path(root)
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise missing_root_error("ADE20K (ADEChallengeData2016)", root, ADE20K_LAYOUT)


def ade20k_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(images/<folder>/<name>.jpg, annotations/<folder>/<name>.png)`` for ``split``, sorted."""
    folder = ADE20K_SPLITS[split]
    image_dir = root / "images" / folder
    if not image_dir.is_dir():
        raise FileNotFoundError(f"split folder {image_dir} is missing: expected {ADE20K_LAYOUT}")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".jpg" and not p.name.startswith("."))
    if not images:
        raise FileNotFoundError(f"no .jpg images in {image_dir}: expected {ADE20K_LAYOUT}")
    pairs = []
    for image_path in images:
        mask_path = root / "annotations" / folder / f"{image_path.stem}.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"mask missing for image {image_path}: expected {mask_path}")
        pairs.append((image_path, mask_path))
    return pairs


def ade20k_labels(raw: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Annotation ``(H, W)`` in 0..150 -> labels ``(H, W)`` int64: 0 -> 255 (ignore), k -> k - 1.

    Values above 150 are an error naming ``path``.
    """
    if raw.ndim != 2:
        raise ValueError(f"mask {path} must be a single-channel annotation PNG, got shape {raw.shape}")
    labels = raw.astype(np.int64)
    if labels.min() < 0 or labels.max() > len(ADE20K_CLASSES):
        bad = np.unique(labels[(labels < 0) | (labels > len(ADE20K_CLASSES))])[:8].tolist()
        raise ValueError(f"mask {path} holds values {bad} outside 0..150 (0 = other, 1..150 = classes)")
    return np.where(labels == 0, IGNORE_INDEX, labels - 1)


class ADE20KSegmentation(PairedSegmentationDataset):
    """ADE20K scene parsing: ``split`` "train" or "val"; 150 classes (0..149), 255 = ignore.

    Items are ``(image (3, h, w) float32 normalised, mask (h, w) int64)``; normalisation
    statistics come from the training images; ``augment`` defaults to ``split == "train"``.
    """

    CLASS_NAMES = ADE20K_CLASSES

    def __init__(
        self, root: str | Path, split: str = "train", *, size: int | Sequence[int] = 128, augment: bool | None = None,
        seed: int = 0, n: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
    ) -> None:
        if split not in ADE20K_SPLITS:
            raise ValueError(f"split must be one of {tuple(ADE20K_SPLITS)}, got {split!r}")
        self.root = find_ade20k_root(root)
        pairs = ade20k_pairs(self.root, split)
        stats_pairs = pairs if split == "train" else ade20k_pairs(self.root, "train")
        super().__init__(pairs, class_names=ADE20K_CLASSES, stats_pairs=stats_pairs, size=size,
                         augment=split == "train" if augment is None else augment, seed=seed, n=n, mean=mean, std=std)

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """0 -> 255 (ignore), k -> k - 1."""
        return ade20k_labels(raw, path)
