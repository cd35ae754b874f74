"""``segan bench`` (also ``python -m segan_lib.bench``): how fast one training step runs.

One JSON row per line (stdout and ``--out FILE``), each with a *fast* and a *baseline* figure:

* ``synthshapes``: ``SynthShapes.get_batch`` (the engine's data path) on ``--device`` vs the CPU.
* ``supervised``, ``segan``, ``hybrid``: one step of the method's real strategy
  (``build_strategy``) around a U-Net, prepared and run by the real engine
  (``Trainer.train_step``). *fast*: the engine's CUDA default (bf16 autocast, channels_last,
  fused Adam, ``cudnn.benchmark``) compiled unless ``--no-compile`` (eager if compiling fails);
  *baseline*: fp32, NCHW, eager, ``Adam(foreach=False, fused=False)``, ``cudnn.benchmark``
  off. On the CPU *fast* is the engine's CPU default: channels_last, and bf16 autocast where
  the CPU computes bf16 natively (``cpu_bf16`` in the row: ``"amx"``, ``"avx512_bf16"`` or null
  for fp32), eager unless ``--compile``; the baseline is fp32, NCHW and eager.
  ``device_name`` is the GPU's name, or the CPU's model.

``--warmup`` untimed steps (compilation happens there), then ``--repeats`` runs of ``--steps``
steps on one fixed batch on the device, timed with CUDA events (the host synchronises only
around each run) or ``time.perf_counter`` on the CPU. ``ms_per_step``: median over the runs;
``images_per_s = batch * 1000 / ms_per_step``; ``speedup = baseline ms_per_step / fast ms_per_step``;
``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` over the timed runs (null on the CPU);
``flops_per_step``: ``torch.utils.flop_counter.FlopCounterMode`` over one eager fp32 step (forward
and backward of every net, 2 FLOPs per multiply-add; optimiser updates not counted);
``fraction_of_bf16_peak = flops_per_step / (ms_per_step / 1000) / (peak TFLOP/s * 1e12)``, null on
the CPU or an unknown GPU without ``--peak-tflops``; ``host_syncs_per_step`` (CUDA, fast): the
synchronising calls of one step under ``torch.cuda.set_sync_debug_mode("warn")``, 0 is the goal;
``cudnn_benchmark``: whether cuDNN picked its convolution algorithms by timing them (null on the CPU).

Modules: :mod:`~segan_lib.bench.measure` (timers and counters), :mod:`~segan_lib.bench.rows`
(what each row measures), :mod:`~segan_lib.bench.command` (options and the command line).
"""
from segan_lib.bench.command import (
    DESCRIPTION, add_bench_arguments, add_bench_command, main, resolve_options, run_bench,
)
from segan_lib.bench.measure import (
    BF16_PEAK_TFLOPS, bf16_peak_tflops, count_flops, count_host_syncs, optimizer_kind, time_runs, unfused_optimizers,
)
from segan_lib.bench.rows import (
    DEFAULTS, ROWS, BenchOptions, benchmark_row, build_trainer, measure_method, measure_synthshapes,
)

__all__ = [
    "BF16_PEAK_TFLOPS", "DEFAULTS", "DESCRIPTION", "ROWS", "BenchOptions", "add_bench_arguments", "add_bench_command",
    "benchmark_row", "bf16_peak_tflops", "build_trainer", "count_flops", "count_host_syncs", "main",
    "measure_method", "measure_synthshapes", "optimizer_kind", "resolve_options", "run_bench", "time_runs",
    "unfused_optimizers",
]
