"""Deterministic batches: the same samples in the same order for a fresh, a resumed and
a distributed run.

Epoch ``e`` visits the training samples in the order ``epoch_permutation(n, seed, e)``,
a permutation drawn from its own generator seeded with ``(seed, e)`` (never from the
global RNG), cut into global batches of ``batch_size``; the last incomplete batch is
dropped. So a run resumed after ``k`` steps of epoch ``e`` starts at global batch ``k`` of
that same permutation without replaying anything. Under DDP with ``W`` processes, rank
``r`` takes columns ``r*b .. (r+1)*b - 1`` of each global batch, ``b = batch_size // W``.

Datasets with a vectorised ``get_batch(indices)`` (SynthShapes) are batched directly on
their device; any other ``torch.utils.data.Dataset`` goes through a ``DataLoader`` whose
``batch_sampler`` is exactly that list of index batches.

No host synchronisation per step: the index batches are drawn on the CPU once per epoch,
so ``get_batch`` receives CPU indices it can bounds-check without reading the GPU. With
``pin_memory`` (the engine sets it on CUDA) the epoch's index table is copied to pinned
memory once, so each batch's indices go to the GPU by an asynchronous copy
(``non_blocking=True``), which never waits for the kernels queued before it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader

_SEED_STRIDE = 1_000_003  # a prime, so (seed, epoch) pairs map to distinct generator seeds


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> Tensor:
    """The order of the samples in ``epoch``: ``randperm(num_samples)`` (int64, CPU) from a
    generator seeded with ``(seed * 1_000_003 + epoch) mod 2**63``."""
    generator = torch.Generator().manual_seed((seed * _SEED_STRIDE + epoch) % 2**63)
    return torch.randperm(num_samples, generator=generator)


def steps_in_epoch(num_samples: int, batch_size: int, steps_per_epoch: int | None = None) -> int:
    """``num_samples // batch_size`` (last partial batch dropped), or ``steps_per_epoch`` if given.

    Raises ``ValueError`` if the data holds less than one batch or fewer samples than
    ``steps_per_epoch`` batches need.
    """
    full_batches = num_samples // batch_size
    if full_batches < 1:
        raise ValueError(
            f"train_data has {num_samples} samples, fewer than one batch of batch_size={batch_size}; "
            "lower batch_size or use more data"
        )
    if steps_per_epoch is None:
        return full_batches
    if steps_per_epoch > full_batches:
        raise ValueError(
            f"steps_per_epoch={steps_per_epoch} needs {steps_per_epoch * batch_size} samples per epoch, "
            f"train_data has {num_samples}; at most {full_batches} steps fit"
        )
    return steps_per_epoch


def as_tuple(batch: object) -> tuple:
    """A dataset item or batch as a tuple: ``(x, y)`` stays, a lone tensor becomes ``(x,)``."""
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    return (batch,)


class TrainBatches:
    """The training batches of each epoch for one process (see the module docstring).

    Args:
        data: a ``Dataset`` (``len`` and ``__getitem__``), optionally with ``get_batch``
            and ``set_epoch(epoch)`` (called at the start of each epoch).
        batch_size: the global batch (all processes together).
        seed: seeds the per-epoch permutations and the DataLoader's generator.
        rank, world_size: this process and the number of processes.
        num_workers, pin_memory: passed to the DataLoader; with ``get_batch``, ``pin_memory``
            pins each epoch's index table (see the module docstring).
    """

    def __init__(self, data: object, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, pin_memory: bool = False) -> None:
        if batch_size % world_size != 0:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by the number of processes ({world_size}); "
                "it is the global batch, split evenly across processes"
            )
        self.data = data
        self.batch_size = batch_size
        self.local_batch_size = batch_size // world_size
        self.seed = seed
        self.rank = rank
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    def index_batches(self, epoch: int, steps: int) -> Tensor:
        """This process's sample indices ``(steps, batch_size // world_size)`` for ``epoch``."""
        order = epoch_permutation(len(self.data), self.seed, epoch)[: steps * self.batch_size]
        global_batches = order.view(steps, self.batch_size)  # (steps, B)
        start = self.rank * self.local_batch_size
        return global_batches[:, start : start + self.local_batch_size]  # (steps, B / W)

    def epoch(self, epoch: int, steps: int, start: int = 0) -> Iterator[tuple]:
        """Batches ``start .. steps - 1`` of ``epoch``, each a tuple (e.g. ``(images, masks)``)."""
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        indices = self.index_batches(epoch, steps)[start:]
        if hasattr(self.data, "get_batch"):
            indices = indices.contiguous()  # (steps, B / W): each row one block of memory
            if self.pin_memory:
                indices = indices.pin_memory()  # rows then reach the GPU asynchronously
            for batch_indices in indices:  # CPU rows (B / W,), views of the table
                yield as_tuple(self.data.get_batch(batch_indices))
            return
        yield from (as_tuple(batch) for batch in self._loader(indices.tolist(), epoch))

    def _loader(self, batch_sampler: Sequence[list[int]], epoch: int) -> DataLoader:
        # The generator seeds the workers; without one, DataLoader would draw from the global RNG.
        generator = torch.Generator().manual_seed((self.seed * _SEED_STRIDE + epoch) % 2**63)
        return DataLoader(self.data, batch_sampler=batch_sampler, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, generator=generator)


def eval_batches(data: object, batch_size: int, *, num_workers: int = 0, pin_memory: bool = False) -> Iterator[tuple]:
    """Every sample of ``data`` once, in index order, in batches of ``batch_size`` (the last
    one may be smaller); touches no global RNG."""
    num_samples = len(data)
    if hasattr(data, "get_batch"):
        for start in range(0, num_samples, batch_size):
            yield as_tuple(data.get_batch(torch.arange(start, min(start + batch_size, num_samples))))
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))
    yield from (as_tuple(batch) for batch in loader)
