"""Where and how fast the engine runs: device, bf16 autocast, channels_last, torch.compile.

Each helper is a small pure decision so the engine reads top to bottom and the rules are
tested one by one.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn



def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of ``TrainConfig.device``: ``"auto"`` is CUDA when available, else the CPU.

    A bare ``"cuda"`` becomes ``cuda:<local_rank>`` (one GPU per process under torchrun).
    Raises ``ValueError`` if CUDA or MPS is requested but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available on this machine; use device='cpu' or 'auto'")
        index = local_rank if name == "cuda" else int(name.split(":")[1])
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' but MPS is not available on this machine; use device='cpu' or 'auto'")
    return torch.device(name)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``"auto"`` is bf16 on CUDA and off (None) elsewhere; ``"bf16"``
    forces bf16 (CPU autocast supports it too); ``"off"`` is None (float32 throughout)."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" else None


def use_channels_last(setting: bool | None, device: torch.device) -> bool:
    """``TrainConfig.channels_last``: None means on for CUDA (faster convs with tensor cores)."""
    return device.type == "cuda" if setting is None else setting


def to_device(batch: tuple, device: torch.device, channels_last: bool) -> tuple:
    """Move every tensor of ``batch`` to ``device``; 4-D ones (images ``(B, C, H, W)``) go
    channels_last when asked. Anything else (masks ``(B, H, W)``, labels, points) keeps its layout."""
    moved = []
    for item in batch:
        if isinstance(item, torch.Tensor):
            item = item.to(device, non_blocking=True)
            if channels_last and item.dim() == 4:
                item = item.contiguous(memory_format=torch.channels_last)
        moved.append(item)
    return tuple(moved)


def compile_module(module: nn.Module) -> nn.Module:
    """``torch.compile(module)``; a module-level function so tests can swap the backend."""
    return torch.compile(module)


def is_compile_error(error: BaseException) -> bool:
    """Whether ``error`` came from TorchDynamo/Inductor (a failed compile), not from user code."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # pragma: no cover - torch without dynamo
        return False
    if isinstance(error, TorchDynamoException):
        return True
    return type(error).__module__.startswith(("torch._dynamo", "torch._inductor"))


def compile_nets(nets: nn.ModuleDict) -> None:
    """Replace each entry of ``nets`` by its compiled wrapper (in place). Nothing is compiled
    yet: compilation happens at the first call, which is where a failure shows up."""
    for name in list(nets):
        nets[name] = compile_module(nets[name])


def decompile_nets(nets: nn.ModuleDict, error: BaseException) -> None:
    """Undo :func:`compile_nets` after ``error`` (warns once, naming the error): each entry
    becomes the module inside its compiled wrapper again (a DDP wrapper stays)."""
    warnings.warn(
        f"torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}); "
        "training continues in eager mode",
        RuntimeWarning,
        stacklevel=3,
    )
    for name in list(nets):
        module = nets[name]
        if hasattr(module, "_orig_mod"):
            nets[name] = module._orig_mod
