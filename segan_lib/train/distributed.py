"""Multi-process training with ``torchrun`` and DistributedDataParallel (DDP).

``torchrun --nproc_per_node=N -m segan_lib.cli train ...`` starts ``N`` processes with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; the
engine calls :func:`init_from_env`, which joins the process group (NCCL on GPUs, gloo on
CPU). Then:

* ``batch_size`` is the *global* batch: each of the ``W`` processes takes its own
  ``batch_size / W`` samples of every global batch (see :mod:`segan_lib.train.batches`).
  Since DDP averages gradients over processes, a step equals the single-process step on
  the whole global batch for losses that are means over samples (up to float rounding).
* every network of ``strategy.nets`` with trainable parameters is wrapped in DDP, after
  its optimiser is built; DDP copies rank 0's weights to all processes at that point.
* batch norm: on GPUs, networks with batch-norm layers are converted to ``SyncBatchNorm``
  first, so the statistics are those of the global batch. PyTorch's SyncBatchNorm is
  GPU-only; on CPU each process normalises with its own shard's statistics and DDP copies
  rank 0's running statistics to the others at each forward pass (``broadcast_buffers``).
* only rank 0 shows progress, evaluates and writes checkpoints; logged losses are means
  over processes, so every process sees the same numbers and stops together on a NaN.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from segan_lib.train.strategy import unwrap


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, GPU ``local_rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process: DDP wrapping and collectives are on."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def launched_with_torchrun() -> bool:
    """Whether the torchrun variables describe a job of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def current_context() -> DistContext:
    """The context of an initialised process group, or a single-process one."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group described by the torchrun variables (no-op for one process).

    ``device`` is ``TrainConfig.device``: NCCL is used when it resolves to CUDA, gloo
    otherwise. Returns the context of this process.
    """
    if dist.is_available() and dist.is_initialized():
        return current_context()
    if not launched_with_torchrun():
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current_context()


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def convert_sync_batchnorm(nets: nn.ModuleDict, device: torch.device) -> list[str]:
    """On CUDA, turn the batch-norm layers of every net into ``SyncBatchNorm`` (in place).

    Parameters are reused, so optimisers built afterwards (or before) still hold them.
    Returns the names of the converted nets; on other devices returns ``[]`` (see the
    module docstring).
    """
    if device.type != "cuda":
        return []
    converted = []
    for name in list(nets):
        if has_batch_norm(nets[name]):
            nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(nets[name])
            converted.append(name)
    return converted


def wrap_nets(nets: nn.ModuleDict, device: torch.device, *, find_unused_parameters: bool = False) -> list[str]:
    """Replace every net with trainable parameters by its DDP wrapper (in place).

    A net with no trainable parameter (e.g. a frozen feature extractor) stays bare: DDP
    refuses such modules and there is nothing to synchronise. Strategies then call
    ``self.nets[name](...)`` for forward passes and ``self.unwrapped(name)`` for anything
    else. Returns the names of the wrapped nets.
    """
    wrapped = []
    for name in list(nets):
        net = nets[name]
        if not any(p.requires_grad for p in net.parameters()):
            continue
        device_ids = [device.index] if device.type == "cuda" else None
        nets[name] = nn.parallel.DistributedDataParallel(
            net, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )
        wrapped.append(name)
    return wrapped


@contextlib.contextmanager
def bare_nets(nets: nn.ModuleDict, enabled: bool) -> Iterator[None]:
    """Swap each entry of ``nets`` for its bare module (no DDP or compile wrapper) meanwhile.

    Under DDP, evaluation runs on rank 0 alone, so it must not call the DDP wrappers (their
    forward talks to the other processes). ``enabled=False`` (one process) changes nothing.
    """
    if not enabled:
        yield
        return
    wrapped = dict(nets.items())
    for name, net in wrapped.items():
        nets[name] = unwrap(net)
    try:
        yield
    finally:
        for name, net in wrapped.items():
            nets[name] = net


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all processes (a new tensor; one all-reduce)."""
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


def broadcast_from_main(obj: object) -> object:
    """Rank 0's ``obj`` on every process (picklable objects; a no-op for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process (a no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
