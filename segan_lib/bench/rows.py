"""What each row of ``segan bench`` measures: SynthShapes rendering and one training step per method."""
from __future__ import annotations

import itertools
import platform
from dataclasses import dataclass

import torch

from segan_lib.bench.measure import (
    bf16_peak_tflops, count_flops, count_host_syncs, optimizer_kind, release_memory, timed, unfused_optimizers,
)
from segan_lib.course import seed_everything
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models.unet import UNet
from segan_lib.train import TrainConfig, Trainer, build_strategy
from segan_lib.train.hardware import cpu_bf16_support, to_device

ROWS: tuple[str, ...] = ("synthshapes", "supervised", "segan", "hybrid")
NUM_CLASSES, IN_CHANNELS = 4, 3  # SynthShapes defaults: background + 3 shape kinds, RGB
# Defaults per device kind: the target setting on CUDA (31 M-parameter U-Net at
# 128x128, batch 128), a size a 2-core CPU runs in seconds elsewhere.
DEFAULTS = {"cuda": {"size": 128, "batch": 128, "base_channels": 64, "depth": 4, "steps": 20, "warmup": 5,
                     "repeats": 3, "compile": True},
            "cpu": {"size": 64, "batch": 8, "base_channels": 16, "depth": 3, "steps": 3, "warmup": 1,
                    "repeats": 3, "compile": False}}


@dataclass
class BenchOptions:
    """The resolved settings of one benchmark run (see ``segan_lib.bench.resolve_options``)."""

    device: torch.device
    rows: tuple[str, ...]
    size: int
    batch: int
    base_channels: int
    depth: int
    steps: int
    warmup: int
    repeats: int
    compile: bool
    peak_tflops: float | None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), or ``"cpu"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _timed(step, opts: BenchOptions, device: torch.device, after_run=lambda: None) -> dict[str, float | None]:
    return timed(step, warmup=opts.warmup, steps=opts.steps, repeats=opts.repeats, batch=opts.batch,
                 device=device, after_run=after_run)


def measure_synthshapes(opts: BenchOptions) -> dict[str, dict]:
    """Rendering rate of SynthShapes batches on ``opts.device`` (fast) and on the CPU (baseline);
    each call renders ``opts.batch`` different scenes."""
    calls = opts.warmup + opts.steps * opts.repeats
    figures = {}
    for label, device in (("fast", opts.device), ("baseline", torch.device("cpu"))):
        data = SynthShapes(opts.batch * calls, size=opts.size, num_classes=NUM_CLASSES, device=device)
        counter = itertools.count()

        def render() -> object:
            start = (next(counter) % calls) * opts.batch
            return data.get_batch(torch.arange(start, start + opts.batch))  # CPU indices, as the engine passes

        figures[label] = {**_timed(render, opts, device), "device": str(device)}
        release_memory(device)
    return figures


def build_trainer(method: str, opts: BenchOptions, *, fast: bool) -> tuple[Trainer, tuple]:
    """The engine around ``method``'s strategy and a fixed batch on its device (see ``segan_lib.bench``).

    The baseline gets plain for-loop Adam and, on CUDA, ``cudnn.benchmark`` off (PyTorch's
    default; the flag is process-wide, so it is set again by the next trainer built)."""
    seed_everything(0)
    segmentor = UNet(IN_CHANNELS, NUM_CLASSES, base_channels=opts.base_channels, depth=opts.depth)
    strategy = build_strategy(method, segmentor, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES)
    data = SynthShapes(opts.batch, size=opts.size, num_classes=NUM_CLASSES, device=opts.device)
    config = TrainConfig(batch_size=opts.batch, device=str(opts.device), amp="auto" if fast else "off",
                         channels_last=None if fast else False, compile=fast and opts.compile, progress=False)
    trainer = Trainer(strategy, data, config=config)
    if not fast:
        unfused_optimizers(strategy)
        if trainer.device.type == "cuda":
            torch.backends.cudnn.benchmark = trainer.cudnn_benchmark = False
    batch = to_device(data.get_batch(torch.arange(opts.batch)), trainer.device, trainer.channels_last)
    return trainer, batch


def measure_method(method: str, opts: BenchOptions) -> dict[str, object]:
    """Baseline and fast figures of one training step of ``method``; FLOPs from the baseline step."""
    result: dict[str, object] = {}
    for label in ("baseline", "fast"):
        trainer, batch = build_trainer(method, opts, fast=label == "fast")
        step = lambda: trainer.train_step(batch)  # noqa: E731  the engine's step: logs kept, no host read
        if label == "baseline":
            result["flops_per_step"] = count_flops(step)
            result["params"] = {name: sum(p.numel() for p in net.parameters())
                                for name, net in trainer.strategy.nets.items()}
        figures = _timed(step, opts, trainer.device, after_run=trainer.flush_logs)
        trainer.flush_logs()
        strategy, cuda = trainer.strategy, trainer.device.type == "cuda"
        figures.update(amp=str(strategy.amp_dtype).replace("torch.", "") if strategy.amp_dtype else "off",
                       channels_last=trainer.channels_last, compiled=trainer.compiled,
                       cudnn_benchmark=trainer.cudnn_benchmark if cuda else None,
                       optimizer=sorted({optimizer_kind(o, trainer.device) for o in strategy.optimizers.values()}))
        if label == "fast":
            figures["host_syncs_per_step"] = count_host_syncs(step, trainer.device)
        result[label] = figures
        del trainer, batch, step, strategy
        if label == "fast" and opts.compile:
            torch.compiler.reset()
        release_memory(opts.device)
    return result


def benchmark_row(name: str, opts: BenchOptions) -> dict[str, object]:
    """One output row: the measurements of ``name`` plus the settings that produced them."""
    cuda = opts.device.type == "cuda"
    device_name = torch.cuda.get_device_name(opts.device) if cuda else cpu_model()
    peak = opts.peak_tflops if opts.peak_tflops is not None else (bf16_peak_tflops(device_name) if cuda else None)
    row: dict[str, object] = {"row": name, "device": str(opts.device), "device_name": device_name,
                              "torch": torch.__version__, "size": opts.size, "batch": opts.batch}
    if not cuda:
        row["cpu_bf16"] = cpu_bf16_support()  # how the CPU computes bf16 natively, or None (fast path fp32)
    if name == "synthshapes":
        row.update(measure_synthshapes(opts))
    else:
        row.update(base_channels=opts.base_channels, depth=opts.depth, peak_bf16_tflops=peak)
        row.update(measure_method(name, opts))
        for label in ("fast", "baseline"):
            figures = row[label]
            achieved = row["flops_per_step"] / (figures["ms_per_step"] / 1e3)  # FLOP/s
            figures["fraction_of_bf16_peak"] = round(achieved / (peak * 1e12), 4) if peak and cuda else None
    row["speedup"] = round(row["baseline"]["ms_per_step"] / row["fast"]["ms_per_step"], 3)
    return row
