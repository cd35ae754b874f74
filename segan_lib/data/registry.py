"""One entry point from a dataset name to a Dataset: what ``segan train --dataset NAME`` calls.

``build_dataset(name, root, split, ...)`` with ``name`` in :data:`DATASET_NAMES`:

* ``synth``: ``synthetic.SynthShapes``, generated in memory; ``num_classes`` classes (default 4;
  2 if ``binary``).
* ``folders``: :class:`~segan_lib.data.folders.FolderDataset`, ROOT/images + ROOT/masks.
* ``voc``: :class:`~segan_lib.data.voc.VOCSegmentation`, 21 classes, ROOT = VOCdevkit/VOC2012.
* ``cityscapes``: :class:`~segan_lib.data.cityscapes.CityscapesSegmentation`, 19 classes.
* ``ade20k``: :class:`~segan_lib.data.ade20k.ADE20KSegmentation`, 150 classes.

Every dataset yields ``(image (3, size, size) float32, mask (size, size) int64)`` and has
``num_classes``, ``in_channels`` (3) and ``CLASS_NAMES``. File datasets also have
``class_names``, ``ignore_index`` (255) and ``set_epoch(epoch)`` (augmentation draws are a
function of ``(seed, epoch, index)``); SynthShapes has ``get_batch(indices)``, no ignored
pixels and no augmentation.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from segan_lib.data.files import README_HINT

DATASET_NAMES: tuple[str, ...] = ("synth", "folders", "voc", "cityscapes", "ade20k")
SPLITS: tuple[str, ...] = ("train", "val")
SYNTH_TRAIN_N = 1000  # SynthShapes pairs in the train split when n is None
SYNTH_NUM_CLASSES = 4  # SynthShapes classes (background + 3 shapes) when num_classes is None


def synth_split_size(n: int | None, split: str) -> int:
    """SynthShapes sizes: train ``n`` (default 1000); val ``max(8, n // 5)``, a smaller set."""
    train_n = SYNTH_TRAIN_N if n is None else n
    return train_n if split == "train" else max(8, train_n // 5)


def file_split_cap(n: int | None, split: str) -> int | None:
    """File datasets: at most ``n`` train pairs and ``max(1, n // 5)`` val pairs (None: all)."""
    if n is None:
        return None
    return n if split == "train" else max(1, n // 5)


def build_dataset(
    name: str, root: str | Path | None, split: str, *, size: int = 128, seed: int = 0, n: int | None = None,
    binary: bool = False, num_classes: int | None = None, augment: bool | None = None,
) -> Dataset:
    """The ``split`` ("train" or "val") of dataset ``name``, images resized to ``size x size``.

    * ``synth``: ``SynthShapes`` with seed ``seed`` (train) or ``seed + 1`` (val), sizes from
      :func:`synth_split_size`, ``num_classes`` classes (None: 4); ``root`` and ``augment``
      are not used.
    * ``folders``: ``binary`` (0/1 or 0/255 masks, 2 classes; ``num_classes`` not used) or
      ``num_classes`` index masks (None: as many as ``ROOT/classes.txt`` names).
    * ``voc``, ``cityscapes``, ``ade20k``: fixed classes; ``num_classes`` is not used and
      ``binary=True`` is an error.

    File datasets take at most ``n`` train / ``max(1, n // 5)`` val pairs, augment the train
    split unless ``augment=False`` and normalise with statistics of the train split. A missing
    ``root`` raises an error that names the expected layout and points at data/README.md.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"name must be one of {DATASET_NAMES}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n is not None and n <= 0:
        raise ValueError(f"n must be a positive number of samples or None, got {n!r}")
    if name == "synth":
        from segan_lib.data.synthetic import SynthShapes

        return SynthShapes(synth_split_size(n, split), size=size, binary=binary,
                           num_classes=SYNTH_NUM_CLASSES if num_classes is None else num_classes,
                           seed=seed if split == "train" else seed + 1)
    if root is None:
        raise ValueError(f"root is required for dataset {name!r} (the folder you unpacked it into), "
                         f"got None. {README_HINT}")
    common = dict(size=size, seed=seed, n=file_split_cap(n, split), augment=augment)
    if name == "folders":
        from segan_lib.data.folders import FolderDataset

        # binary fixes 2 classes; a num_classes given along (the CLI's default) is not used
        return FolderDataset(root, split, num_classes=None if binary else num_classes, binary=binary, **common)
    if binary:
        raise ValueError(f"binary=True is only for 'synth' and 'folders'; {name!r} has fixed multi-class labels")
    if name == "voc":
        from segan_lib.data.voc import VOCSegmentation

        return VOCSegmentation(root, split, **common)
    if name == "cityscapes":
        from segan_lib.data.cityscapes import CityscapesSegmentation

        return CityscapesSegmentation(root, split, **common)
    from segan_lib.data.ade20k import ADE20KSegmentation

    return ADE20KSegmentation(root, split, **common)
