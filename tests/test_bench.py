"""``segan bench``: JSON rows with the promised figures, FLOPs against a hand count, the
plain baseline's optimisers, the peak table, the command line and its errors (CPU, tiny sizes)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from segan_lib import bench, cli

from builders import HANG_GUARD_S

TINY = ["--device", "cpu", "--size", "32", "--batch", "2", "--base-channels", "8", "--depth", "2",
        "--steps", "2", "--warmup", "1", "--repeats", "1", "--threads", "1"]
TIMING_KEYS = {"ms_per_step", "images_per_s", "peak_memory_gib"}
STEP_KEYS = TIMING_KEYS | {"amp", "channels_last", "compiled", "cudnn_benchmark", "optimizer", "fraction_of_bf16_peak"}


def tiny_options(**changes) -> bench.BenchOptions:
    settings = dict(device=torch.device("cpu"), rows=bench.ROWS, size=16, batch=2, base_channels=4, depth=1,
                    steps=1, warmup=1, repeats=1, compile=False, peak_tflops=None)
    return bench.BenchOptions(**{**settings, **changes})


def test_every_row_is_a_json_line_with_positive_figures(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    assert bench.main([*TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in printed]
    assert [row["row"] for row in rows] == list(bench.ROWS)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    for row in rows:
        assert row["size"] == 32 and row["batch"] == 2 and row["torch"] == torch.__version__
        assert row["cpu_threads"] == 1
        for label in ("fast", "baseline"):
            figures = row[label]
            assert TIMING_KEYS <= set(figures)
            assert figures["ms_per_step"] > 0
            assert figures["images_per_s"] == pytest.approx(2e3 / figures["ms_per_step"], rel=1e-2)
            assert figures["peak_memory_gib"] is None  # no per-run peak on the CPU
        assert row["speedup"] == pytest.approx(row["baseline"]["ms_per_step"] / row["fast"]["ms_per_step"], rel=1e-2)
    steps = {row["row"]: row for row in rows[1:]}
    for row in steps.values():
        assert STEP_KEYS <= set(row["fast"]) and STEP_KEYS <= set(row["baseline"])
        plain = {key: row["baseline"][key] for key in STEP_KEYS - TIMING_KEYS}
        assert plain == {"amp": "off", "channels_last": False, "compiled": False, "optimizer": ["for-loop"],
                         "fraction_of_bf16_peak": None, "cudnn_benchmark": None}
        assert row["fast"]["host_syncs_per_step"] is None and row["peak_bf16_tflops"] is None
    # The adversarial steps run the same U-Net plus a second network, forward and backward.
    assert steps["segan"]["params"]["segmentor"] == steps["supervised"]["params"]["segmentor"]
    assert steps["segan"]["flops_per_step"] > steps["supervised"]["flops_per_step"] > 0
    assert steps["hybrid"]["flops_per_step"] > steps["supervised"]["flops_per_step"]
    assert set(steps["hybrid"]["params"]) == {"segmentor", "discriminator"}


def conv_flops(batch: int, c_in: int, c_out: int, kernel: int, side: int) -> int:
    """2 * multiply-adds of a convolution producing ``(batch, c_out, side, side)``."""
    return 2 * batch * c_in * c_out * kernel * kernel * side * side


def test_supervised_step_flops_equal_a_hand_count():
    """U-Net(3 -> 4 classes, base c=4, depth 1) on (2, 3, 16, 16): backward costs two forwards
    per conv (input and weight gradients), except the first conv, whose input needs no gradient."""
    b, s, c = 2, 16, 4
    first = conv_flops(b, 3, c, 3, s)
    forward = (first + conv_flops(b, c, c, 3, s)                                   # stem
               + conv_flops(b, c, 2 * c, 3, s // 2) + conv_flops(b, 2 * c, 2 * c, 3, s // 2)  # down
               + 2 * b * 2 * c * c * 2 * 2 * (s // 2) ** 2                         # 2x2 transposed conv
               + conv_flops(b, 2 * c, c, 3, s) + conv_flops(b, c, c, 3, s)          # up
               + conv_flops(b, c, 4, 1, s))                                         # 1x1 head
    trainer, batch = bench.build_trainer("supervised", tiny_options(), fast=False)
    assert bench.count_flops(lambda: trainer.train_step(batch)) == 3 * forward - first


def test_baseline_optimisers_are_plain_for_loops_with_the_same_settings():
    fast, _ = bench.build_trainer("segan", tiny_options(), fast=True)
    plain, _ = bench.build_trainer("segan", tiny_options(), fast=False)
    assert set(plain.strategy.optimizers) == set(fast.strategy.optimizers) == {"segmentor", "critic"}
    for name, opt in plain.strategy.optimizers.items():
        reference = fast.strategy.optimizers[name]
        assert type(opt) is type(reference) and opt.defaults["foreach"] is False and opt.defaults["fused"] is False
        assert {k: v for k, v in opt.defaults.items() if k not in ("foreach", "fused")} == \
               {k: v for k, v in reference.defaults.items() if k not in ("foreach", "fused")}
        assert [p.shape for p in opt.param_groups[0]["params"]] == [p.shape for p in reference.param_groups[0]["params"]]
        assert all(p is q for p, q in zip(opt.param_groups[0]["params"], plain.strategy.unwrapped(name).parameters()))
        assert bench.optimizer_kind(opt, torch.device("cuda")) == "for-loop"
    fused = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], fused=True)
    assert bench.optimizer_kind(fused, torch.device("cuda")) == "fused"


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0),
                                        ("NVIDIA H100 PCIe", 756.0), ("NVIDIA A100-SXM4-80GB", 312.0),
                                        ("NVIDIA L4", 121.0), ("Tesla T4", 65.0), ("NVIDIA L40S", None)])
def test_bf16_peak_table(name, peak):
    assert bench.bf16_peak_tflops(name) == peak


def test_timing_reports_the_median_run():
    durations = iter([0.0, 0.06, 0.06])  # seconds slept by the one step of each run
    ms = bench.time_runs(lambda: time.sleep(next(durations)), torch.device("cpu"), steps=1, repeats=3)
    assert ms >= 60  # the mean (40 ms) or the fastest run (0 ms) would be lower


def test_help_of_both_entry_points(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0 and "--peak-tflops" in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "segan_lib.bench", "--help"], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0 and "usage: segan bench" in done.stdout and "--no-compile" in done.stdout
    assert "``" not in done.stdout and "segan bench (also python -m segan_lib.bench)" in done.stdout  # no RST marks


def test_plain_text_drops_rst_marks_and_keeps_arithmetic():
    from segan_lib.bench.command import plain_text

    text = "``--out FILE``, *fast* and :mod:`~segan_lib.bench.rows`: ``a = b * 1000 / c`` (*x* * 2)"
    assert plain_text(text) == "--out FILE, fast and segan_lib.bench.rows: a = b * 1000 / c (x * 2)"


@pytest.mark.parametrize("args, message", [
    (["--size", "36"], "--size must be a multiple of 8"),
    (["--size", "8"], "--size must be a multiple of 8 and at least 16"),
    (["--size", "40", "--depth", "4"], "divisible by 2**depth = 16"),
])
def test_sizes_that_cannot_run_are_clear_errors(args, message, capsys):
    assert bench.main(["--device", "cpu", *args]) == 2  # input errors: argparse's status
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    assert bench.main(["--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("args, named", [(["--batch", "0"], "--batch"), (["--methods", "pix2pix"], "--methods"),
                                         (["--device", "gpu"], "--device"), (["--peak-tflops", "-3"], "--peak-tflops")])
def test_bad_arguments_are_argparse_errors_naming_the_argument(args, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and named in err and "Traceback" not in err
