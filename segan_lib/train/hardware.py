"""Where and how fast the engine runs: device, bf16 autocast, channels_last, torch.compile
(with its one eager fallback, :func:`with_eager_fallback`), cuDNN benchmarking and fused Adam.

Each helper is one small decision or action, so the engine reads top to bottom and the
rules are tested one by one.
"""
from __future__ import annotations

import copy
import os
import sys
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


def cpu_bf16_support() -> str | None:
    """How this CPU computes bf16 natively: ``"amx"`` (Intel AMX tiles), ``"avx512_bf16"``, or
    None when it would only emulate bf16 (slower than float32 there, so the engine stays fp32).

    The one place that asks PyTorch's private ``torch.cpu._is_amx_tile_supported()`` and
    ``torch.cpu._is_avx512_bf16_supported()`` (torch 2.x); a PyTorch without them, or one whose
    check fails, answers None. ``SEGAN_CPU_BF16=0`` or ``=1`` overrides the detection (to compare
    the two paths on one machine, or to force fp32)."""
    forced = os.environ.get("SEGAN_CPU_BF16")
    if forced in ("0", "1"):
        return "forced" if forced == "1" else None
    checks = (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    for name, attribute in checks:
        try:
            if getattr(torch.cpu, attribute)():
                return name
        except Exception:  # noqa: BLE001 - a missing or failing private check means "not native"
            continue
    return None


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``"auto"`` is bf16 on CUDA and on CPUs that compute bf16 natively
    (:func:`cpu_bf16_support`), off (None, float32) elsewhere; ``"bf16"`` forces bf16 (CPU
    autocast supports it everywhere, slowly where emulated); ``"off"`` is None (float32 throughout).
    Weights, losses, metrics and optimiser states stay float32 in every case."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_bf16_support() else None


def use_channels_last(setting: bool | None, device: torch.device, amp: str = "auto") -> bool:
    """``TrainConfig.channels_last``: None means on for CUDA (faster convs with tensor cores) and,
    unless ``amp="off"`` asks for the plain fp32 path, on the CPU (oneDNN's convolutions measured
    15-25 % faster in NHWC for the course's U-Nets, in fp32 and bf16; BENCHMARKS.md)."""
    if setting is not None:
        return setting
    return device.type == "cuda" or (device.type == "cpu" and amp != "off")


def describe_compute(device: torch.device, amp_dtype: torch.dtype | None, channels_last: bool,
                     compiled: bool) -> dict[str, object]:
    """The numeric path a run takes, as plain data (stored in checkpoints and experiment records):
    device, autocast dtype (``"bf16"`` / ``"off"``), memory layout, compiled or eager, and on the
    CPU how bf16 is supported (``cpu_bf16``)."""
    info: dict[str, object] = {"device": device.type, "amp": "bf16" if amp_dtype == torch.bfloat16 else "off",
                               "channels_last": bool(channels_last), "compiled": bool(compiled)}
    if device.type == "cpu":
        info["cpu_bf16"] = cpu_bf16_support()
    return info


def compute_summary(info: dict[str, object]) -> str:
    """One line for people, e.g. ``"cpu: bf16 autocast (avx512_bf16) + channels_last, eager"``."""
    precision = "bf16 autocast" if info["amp"] == "bf16" else "fp32"
    if info["amp"] == "bf16" and info.get("cpu_bf16"):
        precision += f" ({info['cpu_bf16']})"
    layout = " + channels_last" if info["channels_last"] else ", NCHW"
    return f"{info['device']}: {precision}{layout}, {'compiled' if info['compiled'] else 'eager'}"


_ANNOUNCED: set[str] = set()


def announce_compute(info: dict[str, object]) -> None:
    """Print the numeric path once per process (each different path once), to standard error."""
    line = compute_summary(info)
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        print(f"segan: training path {line}", file=sys.stderr, flush=True)


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
