"""The ``segan bench`` command line: options, their device defaults, and the run that prints the rows."""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Sequence
from typing import TextIO

import torch

from segan_lib._files import check_writable_file
from segan_lib.bench.rows import DEFAULTS, ROWS, BenchOptions, benchmark_row
from segan_lib.cli_types import positive_float, positive_int
from segan_lib.train.hardware import resolve_device

DESCRIPTION = ("Time one training step of the supervised U-Net, SegAN and the hybrid method (fast path and "
               "plain fp32 baseline) and SynthShapes generation; print one JSON row each.")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


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
    """Measure every requested row, print it as one JSON line, save all rows to ``--out``.

    PyTorch's thread count and ``torch.backends.cudnn.benchmark`` are restored afterwards."""
    opts, threads, cudnn_benchmark = resolve_options(args), torch.get_num_threads(), torch.backends.cudnn.benchmark
    out = _open_out(args.out) if args.out else contextlib.nullcontext()
    torch.set_num_threads(args.threads or threads)
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
        torch.backends.cudnn.benchmark = cudnn_benchmark
    return 0


def _open_out(path: str) -> TextIO:
    """``--out`` opened for writing (mode ``0o666`` less the umask), or a one-line ``ValueError`` naming it."""
    check_writable_file(path, "--out")
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as error:  # e.g. an existing file without write permission
        raise ValueError(f"--out {path} cannot be written ({error.strerror or error})") from error


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
    add("--size", type=positive_int, help="image height and width (default 128 on CUDA, 64 on CPU)")
    add("--batch", type=positive_int, help="images per step (default 128 on CUDA, 8 on CPU)")
    add("--base-channels", type=positive_int, help="U-Net channels of the first level (default 64 / 16)")
    add("--depth", type=positive_int, help="U-Net down-sampling steps (default 4 / 3)")
    add("--steps", type=positive_int, help="timed steps per run (default 20 / 3)")
    add("--warmup", type=positive_int, help="untimed steps first, compilation included (default 5 / 1)")
    add("--repeats", type=positive_int, help="timed runs; the median is reported (default 3)")
    add("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the fast path (default on CUDA, off on CPU; eager if compiling fails)")
    add("--peak-tflops", type=positive_float, help="the device's dense bf16 peak, TFLOP/s (default: built-in table)")
    add("--threads", type=positive_int, help="CPU threads of PyTorch (default: PyTorch's own choice)")
    add("--out", help="also write the JSON rows to this file (checked before any timing)")


def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segan bench`` on the ``segan`` sub-command parsers (handler via ``args.func``)."""
    bench = subparsers.add_parser("bench", help="time training steps (images/s, memory, FLOPs)",
                                  description=DESCRIPTION)
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench)


def plain_text(docstring: str) -> str:
    """``docstring`` as a terminal shows it: reStructuredText's ``literal``, *emphasis* and
    :role:`target` marks removed, the words kept (``segan bench --help`` prints the package's
    docstring, which the website renders)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring)
    text = text.replace("``", "")
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segan_lib.bench``: the same as ``segan bench``; returns the exit status."""
    import segan_lib.bench as package  # its docstring explains every field of the rows

    parser = argparse.ArgumentParser(prog="segan bench", description=plain_text(package.__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_bench(args)
    except ValueError as error:  # an input error (sizes that do not fit, no CUDA, --out): as argparse's, status 2
        print(f"segan bench: error: {error}", file=sys.stderr)
        return 2
