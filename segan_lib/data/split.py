"""A labelled / unlabelled split of any dataset, for semi-supervised training.

``split_labelled(dataset, fraction=0.125, seed=0)`` keeps the labels of a fixed, seeded
subset and hides them everywhere else:

* :class:`LabelledSubset` -- ``(image, mask)`` pairs of the labelled indices: what the training
  engine iterates over, exactly like a full dataset (``get_batch`` and ``set_epoch`` are
  passed on when the dataset has them, and so are attributes such as ``num_classes``);
* :class:`UnlabelledImages` -- the images of the other indices *only*: ``view[i]`` is an image
  ``(C, H, W)`` and ``view.images(indices)`` a batch ``(n, C, H, W)``. Its masks are never
  returned, so they cannot reach a loss or a metric.

The split is a function of ``(len(dataset), count, seed)`` alone (a permutation from its own
generator, never the global RNG), so a resumed or distributed run rebuilds the same one;
``indices`` of both views say which samples they hold, to be stored with a checkpoint.
Hung et al. (BMVC 2018) split PASCAL VOC the same way: a random ``fraction`` of the training
images keep their labels (``int(fraction * N)`` of them), the rest are used as unlabelled.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from segan_lib._checks import check_positive


def labelled_count(num_samples: int, *, fraction: float | None = None, count: int | None = None) -> int:
    """How many of ``num_samples`` keep their labels: ``count``, or ``floor(fraction * num_samples)``.

    Exactly one of ``fraction`` (in (0, 1)) and ``count`` must be given; the result must leave at
    least one labelled and one unlabelled sample, else ``ValueError`` naming the argument.
    """
    if (fraction is None) == (count is None):
        raise ValueError(f"give exactly one of fraction and count, got fraction={fraction!r}, count={count!r}")
    if fraction is not None:
        check_positive("fraction", fraction)
        if fraction >= 1:
            raise ValueError(f"fraction must be in (0, 1) (the share of samples that keep labels), got {fraction!r}")
        count = math.floor(fraction * num_samples)
        name = f"fraction={fraction!r} of {num_samples} samples"
    else:
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError(f"count must be an int, got {count!r}")
        name = f"count={count!r}"
    if not 1 <= count <= num_samples - 1:
        raise ValueError(f"{name} gives {count} labelled samples; need 1 .. {num_samples - 1} "
                         "so that both the labelled and the unlabelled part hold a sample")
    return count


def split_labelled(dataset: object, *, fraction: float | None = None, count: int | None = None,
                   seed: int = 0) -> tuple[LabelledSubset, UnlabelledImages]:
    """Split ``dataset`` into a labelled subset and an unlabelled image view (see the module docstring).

    The labelled indices are the first :func:`labelled_count` entries of
    ``randperm(len(dataset))`` drawn from a generator seeded with ``seed``; the unlabelled ones
    are the rest. Both index lists are sorted. Returns ``(labelled, unlabelled)``.
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise ValueError(f"dataset must be a Dataset with a length, got {type(dataset).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    num_samples = len(dataset)
    n_labelled = labelled_count(num_samples, fraction=fraction, count=count)
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    labelled = order[:n_labelled].sort().values
    unlabelled = order[n_labelled:].sort().values
    return LabelledSubset(dataset, labelled), UnlabelledImages(dataset, unlabelled)


def _as_index_tensor(indices: Tensor | list[int], num_samples: int) -> Tensor:
    indices = torch.as_tensor(indices, dtype=torch.int64).flatten()
    if indices.numel() == 0:
        raise ValueError("indices must name at least one sample, got none")
    if int(indices.min()) < 0 or int(indices.max()) >= num_samples:
        raise ValueError(f"indices must lie in 0 .. {num_samples - 1}, got values from "
                         f"{int(indices.min())} to {int(indices.max())}")
    return indices


class LabelledSubset:
    """The ``(image, mask)`` pairs of ``dataset`` at ``indices`` (int64 ``(n,)``), in that order.

    ``get_batch(positions)`` exists when ``dataset`` has one (positions index this subset);
    ``set_epoch(epoch)`` is passed on to ``dataset`` (seeded augmentation per epoch); any other
    public attribute (``num_classes``, ``in_channels``, ``class_names``, ...) is read from ``dataset``.
    """

    def __init__(self, dataset: object, indices: Tensor | list[int]) -> None:
        self.dataset = dataset
        self.indices = _as_index_tensor(indices, len(dataset))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> object:
        return self.dataset[int(self.indices[i])]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getattr__(self, name: str) -> object:
        # Only called for names not found on the subset itself; "dataset" may be missing while unpickling.
        if name.startswith("_") or "dataset" not in self.__dict__:
            raise AttributeError(name)
        if name == "get_batch":
            if not hasattr(self.dataset, "get_batch"):
                raise AttributeError(name)  # the engine then uses a DataLoader on __getitem__
            return lambda positions: self.dataset.get_batch(self.indices[positions])
        return getattr(self.dataset, name)


class UnlabelledImages:
    """The images of ``dataset`` at ``indices`` (int64 ``(n,)``), never their masks.

    ``view[i]`` is the image ``(C, H, W)`` of sample ``indices[i]`` (the first element of a
    ``(image, mask)`` item, or the item itself if it is a tensor); ``view.images(positions)``
    a batch ``(n, C, H, W)``, through ``dataset.get_batch`` when it has one.
    """

    def __init__(self, dataset: object, indices: Tensor | list[int]) -> None:
        self.dataset = dataset
        self.indices = _as_index_tensor(indices, len(dataset))

    def __len__(self) -> int:
        return len(self.indices)

    @staticmethod
    def _image(item: object) -> Tensor:
        return item if isinstance(item, Tensor) else item[0]

    def __getitem__(self, i: int) -> Tensor:
        return self._image(self.dataset[int(self.indices[i])])

    def images(self, positions: Tensor) -> Tensor:
        """Images ``(n, C, H, W)`` of the view's samples at ``positions`` (int64 ``(n,)``, CPU)."""
        samples = self.indices[positions]
        if hasattr(self.dataset, "get_batch"):
            return self._image(self.dataset.get_batch(samples))
        return torch.stack([self._image(self.dataset[int(i)]) for i in samples])
