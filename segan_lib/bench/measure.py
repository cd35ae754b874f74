"""Timers and counters of ``segan bench``: wall time per step, FLOPs, host syncs, optimiser kinds."""
from __future__ import annotations

import gc
import re
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from segan_lib.train import Strategy

# Dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets, dense = without 2:4 sparsity),
# matched against torch.cuda.get_device_name(); the first pattern that matches wins.
# T4 has no bf16: its fp16 figure stands in as an approximation.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = ((r"H200", 989.0), (r"H100.*PCIe", 756.0), (r"H100", 989.0),
                                                   (r"A100", 312.0), (r"\bL4\b", 121.0), (r"\bT4\b", 65.0))


def bf16_peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU named ``device_name`` from :data:`BF16_PEAK_TFLOPS`, or None."""
    return next((peak for pattern, peak in BF16_PEAK_TFLOPS if re.search(pattern, device_name)), None)


def unfused_optimizers(strategy: Strategy) -> None:
    """Rebuild each optimiser of ``strategy`` (before its first step) as the plain for-loop
    version: same class, parameter groups and hyper-parameters, ``foreach=False, fused=False``."""
    for name, opt in strategy.optimizers.items():
        groups = [{**group, "foreach": False, "fused": False} for group in opt.param_groups]
        strategy.optimizers[name] = type(opt)(groups, **{**opt.defaults, "foreach": False, "fused": False})


def optimizer_kind(opt: torch.optim.Optimizer, device: torch.device) -> str:
    """How ``opt`` updates its parameters: "fused", "foreach" or "for-loop" (PyTorch's default
    for ``foreach=None`` is foreach on CUDA, the for-loop on the CPU)."""
    if opt.defaults.get("fused"):
        return "fused"
    foreach = opt.defaults.get("foreach")
    return "foreach" if foreach or (foreach is None and device.type == "cuda") else "for-loop"


def time_runs(step: Callable[[], object], device: torch.device, steps: int, repeats: int,
              after_run: Callable[[], object] = lambda: None) -> float:
    """Median over ``repeats`` runs of the mean milliseconds of ``step()`` over ``steps`` calls;
    ``after_run`` (e.g. reading the logged losses back) runs between runs, untimed."""
    cuda, per_run = device.type == "cuda", []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        began = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            end.record()
            end.synchronize()
        per_run.append(start.elapsed_time(end) / steps if cuda else (time.perf_counter() - began) * 1e3 / steps)
        after_run()
    return statistics.median(per_run)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls and convolutions, forward and backward, of one ``step()``."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def count_host_syncs(step: Callable[[], object], device: torch.device) -> int | None:
    """Synchronising CUDA calls made by one ``step()`` (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def release_memory(device: torch.device) -> None:
    """Free what the last measurement left: its trainers, batches and compiled graphs."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed(step: Callable[[], object], *, warmup: int, steps: int, repeats: int, batch: int,
          device: torch.device, after_run: Callable[[], object] = lambda: None) -> dict[str, float | None]:
    """``warmup`` untimed calls, then :func:`time_runs`; returns ``ms_per_step``, ``images_per_s``
    (``batch`` images per call) and ``peak_memory_gib`` of the timed runs (None off CUDA)."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    ms = time_runs(step, device, steps, repeats, after_run)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"ms_per_step": round(ms, 3), "images_per_s": round(batch * 1e3 / ms, 1),
            "peak_memory_gib": None if peak is None else round(peak, 3)}
