"""Where and how fast the engine runs: device, bf16 autocast, channels_last, torch.compile
(with its one eager fallback, :func:`with_eager_fallback`), cuDNN benchmarking and fused Adam.

Each helper is one small decision or action, so the engine reads top to bottom and the
rules are tested one by one.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from segan_lib.train import distributed
from segan_lib.train.checkpoint import capture_rng_state, restore_rng_state

if TYPE_CHECKING:
    from segan_lib.train.strategy import Strategy

T = TypeVar("T")


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


def use_compile(setting: bool | None, device: torch.device) -> bool:
    """``TrainConfig.compile``: None means on for CUDA, where compiled kernels pay back the
    compile time (about a minute) within a real run; off elsewhere. True/False force it."""
    return device.type == "cuda" if setting is None else setting


def enable_cudnn_benchmark(device: torch.device) -> bool:
    """On CUDA, set ``torch.backends.cudnn.benchmark = True`` (process-wide, left set): cuDNN
    times its convolution algorithms on the first batch of each input shape and keeps the
    fastest, which pays off because training batches all have one shape. Left alone when
    deterministic algorithms were requested (``torch.use_deterministic_algorithms(True)`` or
    ``torch.backends.cudnn.deterministic = True``), since benchmarking may pick a different
    algorithm from run to run. Returns whether benchmarking is on for ``device``."""
    if device.type != "cuda":
        return False
    if not (torch.are_deterministic_algorithms_enabled() or torch.backends.cudnn.deterministic):
        torch.backends.cudnn.benchmark = True
    return bool(torch.backends.cudnn.benchmark)


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


def with_eager_fallback(nets: nn.ModuleDict, run: Callable[[], T], *,
                        undo: Callable[[], None] | None = None) -> tuple[T, bool]:
    """``(run(), True)``, or ``(run(), False)`` after falling back to eager mode.

    Compiled nets compile at their first call, inside ``run``. If that fails
    (:func:`is_compile_error`), the nets go back to eager mode with a warning
    (:func:`decompile_nets`), ``undo()`` puts back whatever the failed call changed, and
    ``run`` runs again, so the result is the one of an eager run. Other errors propagate.
    The engine's first training step (with :func:`undo_step`) and its evaluation both go
    through here: the one place where a failed compile is handled.
    """
    try:
        return run(), True
    except Exception as error:
        if not is_compile_error(error):
            raise
        decompile_nets(nets, error)
        if undo is not None:
            undo()
        return run(), False


def undo_step(strategy: Strategy) -> Callable[[], None]:
    """A function that puts ``strategy`` back as it is now: weights, optimiser states, RNG
    states, and no gradients (to undo a training step that failed half-way)."""
    saved_state, saved_rng = copy.deepcopy(strategy.state_dict()), capture_rng_state()

    def undo() -> None:
        strategy.load_state_dict(saved_state)
        restore_rng_state(saved_rng)
        for net in strategy.nets.values():
            net.zero_grad(set_to_none=True)

    return undo


def place_nets(strategy: Strategy, device: torch.device, *, channels_last: bool, ddp: bool, compile: bool) -> None:
    """Get ``strategy``'s nets ready to train, in the order of the strategy contract: (under
    DDP on GPUs, SyncBatchNorm) nets on ``device`` (and channels_last) -> ``configure_optimizers()``
    -> DDP wrappers -> compiled wrappers (:func:`compile_nets`)."""
    if ddp:
        distributed.convert_sync_batchnorm(strategy.nets, device)
    strategy.nets.to(device)
    if channels_last:
        strategy.nets.to(memory_format=torch.channels_last)  # 4-D weights only
    strategy.configure_optimizers()
    if ddp:
        distributed.wrap_nets(strategy.nets, device,
                              find_unused_parameters=getattr(strategy, "find_unused_parameters", False))
    if compile:
        compile_nets(strategy.nets)


def make_adam(params: list[nn.Parameter], device: torch.device, *, lr: float,
              weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused CUDA kernel on GPUs (one launch updates every parameter); PyTorch's
    default implementation elsewhere."""
    fused = True if device.type == "cuda" else None
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)
