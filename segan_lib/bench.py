"""``segan bench`` (also ``python -m segan_lib.bench``): how fast one training step runs.

One JSON row per line (stdout and ``--out FILE``), each with a *fast* and a *baseline* figure:

* ``synthshapes``: ``SynthShapes.get_batch`` (the engine's data path) on ``--device`` vs the CPU.
* ``supervised``, ``segan``, ``hybrid``: one step of the method's real strategy
  (``build_strategy``) around a U-Net, prepared and run by the real engine (``Trainer``).
  *fast*: the engine's CUDA default (bf16 autocast, channels_last, fused Adam) compiled unless
  ``--no-compile`` (eager if compiling fails); *baseline*: fp32, NCHW, eager,
  ``Adam(foreach=False, fused=False)``. On the CPU both are fp32, NCHW and eager.

``--warmup`` untimed steps (compilation happens there), then ``--repeats`` runs of ``--steps``
steps on one fixed batch on the device, timed with CUDA events (the host synchronises only
around each run) or ``time.perf_counter`` on the CPU. ``ms_per_step``: median over the runs;
``images_per_s = batch * 1000 / ms_per_step``; ``speedup = baseline ms_per_step / fast ms_per_step``;
``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` over the timed runs (null on the CPU);
``flops_per_step``: ``torch.utils.flop_counter.FlopCounterMode`` over one eager fp32 step (forward
and backward of every net, 2 FLOPs per multiply-add; optimiser updates not counted);
``fraction_of_bf16_peak = flops_per_step / (ms_per_step / 1000) / (peak TFLOP/s * 1e12)``, null on
the CPU or an unknown GPU without ``--peak-tflops``; ``host_syncs_per_step`` (CUDA, fast): the
synchronising calls of one step under ``torch.cuda.set_sync_debug_mode("warn")``, 0 is the goal.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from segan_lib.course import seed_everything
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models.unet import UNet
from segan_lib.train import Strategy, TrainConfig, Trainer, build_strategy
from segan_lib.train.hardware import resolve_device, to_device

ROWS: tuple[str, ...] = ("synthshapes", "supervised", "segan", "hybrid")
NUM_CLASSES, IN_CHANNELS = 4, 3  # SynthShapes defaults: background + 3 shape kinds, RGB
# Dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets, dense = without 2:4 sparsity),
# matched against torch.cuda.get_device_name(); the first pattern that matches wins.
# T4 has no bf16: its fp16 figure stands in as an approximation.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = ((r"H200", 989.0), (r"H100.*PCIe", 756.0), (r"H100", 989.0),
                                                   (r"A100", 312.0), (r"\bL4\b", 121.0), (r"\bT4\b", 65.0))
# Defaults per device kind: the target setting on CUDA (31 M-parameter U-Net at
# 128x128, batch 128), a size a 2-core CPU runs in seconds elsewhere.
DEFAULTS = {"cuda": {"size": 128, "batch": 128, "base_channels": 64, "depth": 4, "steps": 20, "warmup": 5,
                     "repeats": 3, "compile": True},
            "cpu": {"size": 64, "batch": 8, "base_channels": 16, "depth": 3, "steps": 3, "warmup": 1,
                    "repeats": 3, "compile": False}}
DESCRIPTION = ("Time one training step of the supervised U-Net, SegAN and the hybrid method (fast path and "
               "plain fp32 baseline) and SynthShapes generation; print one JSON row each.")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


@dataclass
class BenchOptions:
    """The resolved settings of one benchmark run (see :func:`resolve_options`)."""

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


def _release(device: torch.device) -> None:
    gc.collect()  # the trainers, batches and compiled graphs of the last measurement
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _timed(step: Callable[[], object], opts: BenchOptions, device: torch.device,
           after_run: Callable[[], object] = lambda: None) -> dict[str, float | None]:
    """Warm up, then time; returns ms per step, images/s and the peak memory of the timed runs."""
    for _ in range(opts.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    ms = time_runs(step, device, opts.steps, opts.repeats, after_run)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"ms_per_step": round(ms, 3), "images_per_s": round(opts.batch * 1e3 / ms, 1),
            "peak_memory_gib": None if peak is None else round(peak, 3)}


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
        _release(device)
    return figures


def build_trainer(method: str, opts: BenchOptions, *, fast: bool) -> tuple[Trainer, tuple]:
    """The engine around ``method``'s strategy and a fixed batch on its device (see the module doc)."""
    seed_everything(0)
    segmentor = UNet(IN_CHANNELS, NUM_CLASSES, base_channels=opts.base_channels, depth=opts.depth)
    strategy = build_strategy(method, segmentor, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES)
    data = SynthShapes(opts.batch, size=opts.size, num_classes=NUM_CLASSES, device=opts.device)
    config = TrainConfig(batch_size=opts.batch, device=str(opts.device), amp="auto" if fast else "off",
                         channels_last=None if fast else False, compile=fast and opts.compile, progress=False)
    trainer = Trainer(strategy, data, config=config)
    if not fast:
        unfused_optimizers(strategy)
    batch = to_device(data.get_batch(torch.arange(opts.batch)), trainer.device, trainer.channels_last)
    return trainer, batch


def measure_method(method: str, opts: BenchOptions) -> dict[str, object]:
    """Baseline and fast figures of one training step of ``method``; FLOPs from the baseline step."""
    result: dict[str, object] = {}
    for label in ("baseline", "fast"):
        trainer, batch = build_trainer(method, opts, fast=label == "fast")
        step = lambda: trainer._train_step(batch)  # noqa: E731  the engine's step: logs kept, no host read
        if label == "baseline":
            result["flops_per_step"] = count_flops(step)
            result["params"] = {name: sum(p.numel() for p in net.parameters())
                                for name, net in trainer.strategy.nets.items()}
        figures = _timed(step, opts, trainer.device, after_run=trainer._flush_logs)
        trainer._flush_logs()
        strategy = trainer.strategy
        figures.update(amp=str(strategy.amp_dtype).replace("torch.", "") if strategy.amp_dtype else "off",
                       channels_last=trainer.channels_last, compiled=trainer.compiled,
                       optimizer=sorted({optimizer_kind(o, trainer.device) for o in strategy.optimizers.values()}))
        if label == "fast":
            figures["host_syncs_per_step"] = count_host_syncs(step, trainer.device)
        result[label] = figures
        del trainer, batch, step, strategy
        if label == "fast" and opts.compile:
            torch.compiler.reset()
        _release(opts.device)
    return result


def benchmark_row(name: str, opts: BenchOptions) -> dict[str, object]:
    """One output row: the measurements of ``name`` plus the settings that produced them."""
    cuda = opts.device.type == "cuda"
    device_name = torch.cuda.get_device_name(opts.device) if cuda else "cpu"
    peak = opts.peak_tflops if opts.peak_tflops is not None else (bf16_peak_tflops(device_name) if cuda else None)
    row: dict[str, object] = {"row": name, "device": str(opts.device), "device_name": device_name,
                              "torch": torch.__version__, "size": opts.size, "batch": opts.batch}
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


def resolve_options(args: argparse.Namespace) -> BenchOptions:
    """Fill unset options with the device's :data:`DEFAULTS`; ``ValueError`` on sizes that do not fit."""
    device = resolve_device(args.device)
    defaults = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    values = {key: default if getattr(args, key) is None else getattr(args, key) for key, default in defaults.items()}
    size, depth = values["size"], values["depth"]
    if size < 16 or size % 8:
        raise ValueError(f"--size must be a multiple of 8 and at least 16 (SynthShapes), got {size}")
    if size % 2**depth:
        raise ValueError(f"--size must be divisible by 2**depth = {2**depth} (U-Net of depth {depth}), got {size}")
    return BenchOptions(device=device, rows=tuple(args.methods), peak_tflops=args.peak_tflops, **values)


def run_bench(args: argparse.Namespace) -> int:
    """Measure every requested row, print it as one JSON line, save all rows to ``--out``."""
    opts, threads = resolve_options(args), torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    out = open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext()
    try:
        with out:
            for name in (name for name in ROWS if name in opts.rows):
                print(f"segan bench: timing {name} on {opts.device} ...", file=sys.stderr, flush=True)
                line = json.dumps({**benchmark_row(name, opts), "cpu_threads": torch.get_num_threads()})
                print(line, flush=True)
                if args.out:
                    out.write(line + "\n")  # row by row, so a crash keeps the rows measured before it
    finally:
        torch.set_num_threads(threads)
    return 0


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            if kind(text) > 0:
                return kind(text)
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
    return parse


def _rows(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of {', '.join(ROWS)}; got {text!r}")
    return names


def _device(text: str) -> str:
    if not DEVICE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``segan bench``; unset sizes take :data:`DEFAULTS` of the device."""
    add = parser.add_argument
    add("--device", type=_device, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    add("--methods", type=_rows, default=ROWS, metavar="ROWS",
        help=f"comma-separated rows to measure (default all: {','.join(ROWS)})")
    add("--size", type=_positive(int), help="image height and width (default 128 on CUDA, 64 on CPU)")
    add("--batch", type=_positive(int), help="images per step (default 128 on CUDA, 8 on CPU)")
    add("--base-channels", type=_positive(int), help="U-Net channels of the first level (default 64 / 16)")
    add("--depth", type=_positive(int), help="U-Net down-sampling steps (default 4 / 3)")
    add("--steps", type=_positive(int), help="timed steps per run (default 20 / 3)")
    add("--warmup", type=_positive(int), help="untimed steps first, compilation included (default 5 / 1)")
    add("--repeats", type=_positive(int), help="timed runs; the median is reported (default 3)")
    add("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the fast path (default on CUDA, off on CPU; eager if compiling fails)")
    add("--peak-tflops", type=_positive(float), help="the device's dense bf16 peak, TFLOP/s (default: built-in table)")
    add("--threads", type=_positive(int), help="CPU threads of PyTorch (default: PyTorch's own choice)")
    add("--out", help="also write the JSON rows to this file")


def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segan bench`` on the ``segan`` sub-command parsers (handler via ``args.func``)."""
    bench = subparsers.add_parser("bench", help="time training steps (images/s, memory, FLOPs)",
                                  description=DESCRIPTION)
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segan_lib.bench``: the same as ``segan bench``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="segan bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_bench(args)
    except ValueError as error:
        print(f"segan bench: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
