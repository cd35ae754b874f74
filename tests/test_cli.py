"""The ``segan`` command: help, argument errors, a tiny train + eval + resume, an output folder
that cannot be written refused before training (by every command with ``--out``), and the ``--quick`` promise (validation mean
foreground Dice > 0.8; how long it takes is measured for the README, not asserted here)."""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

from segan_lib import cli
from segan_lib.train import TrainConfig, load_checkpoint

TINY = ["--dataset", "synth", "--samples", "16", "--size", "32", "--base-channels", "4", "--depth", "2",
        "--batch-size", "8", "--epochs", "1", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["data"], ["data", "export"], ["bench"]])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: segan" in capsys.readouterr().out


@pytest.mark.parametrize("args, named", [
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--method", "pix2pix"], "--method"),
    (["train", "--device", "gpu"], "--device"),
    (["train", "--loss", "hinge"], "--loss"),
    (["train", "--epochs", "two"], "--epochs"),
    (["train", "--lr", "-1"], "--lr"),
    (["eval"], "checkpoint"),
    (["fly"], "COMMAND"),
])
def test_bad_arguments_are_argparse_errors_naming_the_argument(args, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "segan" in err and named in err and "Traceback" not in err


def test_quick_preset_and_explicit_flags():
    parser = cli.build_parser()
    quick = cli.resolve_train_options(parser.parse_args(["train", "--quick", "--epochs", "3"]))
    assert quick == {**cli.QUICK_PRESET, "epochs": 3}
    assert cli.resolve_train_options(parser.parse_args(["train"])) == cli.FULL_PRESET


def test_compile_is_automatic_unless_forced_and_reaches_the_run(tmp_path, capsys):
    parser = cli.build_parser()
    assert parser.parse_args(["train"]).compile is None  # TrainConfig decides: on with CUDA
    assert parser.parse_args(["train", "--compile"]).compile is True
    assert parser.parse_args(["train", "--no-compile"]).compile is False
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--no-compile" in capsys.readouterr().out
    assert cli.main(["train", *TINY, "--no-compile", "--out", str(tmp_path)]) == 0
    assert load_checkpoint(tmp_path / "last.pt")["train"]["compile"] is False


def test_format_scores_prints_each_class_and_the_foreground_mean():
    text = cli.format_scores({"dice": [1.0, 0.5], "iou": [1.0, 1 / 3], "mean_dice": 0.5, "mean_iou": 1 / 3,
                              "pixel_accuracy": 0.9}, ["background", "disc"])
    assert text.splitlines()[2] == "disc         0.500   0.333"
    assert "validation mean Dice (foreground): 0.500" in text


def test_train_eval_and_resume_on_tiny_synthshapes(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    dice = float(re.search(r"validation mean Dice \(foreground\): ([0-9.]+|nan)", printed).group(1))
    history = json.loads((out / "history.json").read_text())
    assert history["val_mean_dice"][-1] == pytest.approx(dice, abs=5e-4)
    saved = load_checkpoint(out / "last.pt", method="supervised")
    assert saved["step"] == 2 and saved["meta"]["model"]["base_channels"] == 4
    assert saved["meta"]["dataset"] == {"name": "synth", "root": None, "size": 32, "num_classes": None,
                                        "binary": False, "n": 16}

    assert cli.main(["eval", str(out / "last.pt"), "--device", "cpu"]) == 0
    evaluated = capsys.readouterr().out
    assert "rectangle" in evaluated and "triangle" in evaluated
    assert f"validation mean Dice (foreground): {dice:.3f}" in evaluated

    assert cli.main(["train", *TINY[:-3], "--epochs", "2", "--no-progress", "--out", str(out), "--resume"]) == 0
    assert load_checkpoint(out / "last.pt")["step"] == 4
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--base-channels", "8", "--out", str(out), "--resume"]) == 2
    assert "last.pt was written for model=" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "--method", "segan", "--out", str(out), "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"segan: error: checkpoint {out / 'last.pt'} was written by method 'supervised', not 'segan'; only a "
        "supervised run can resume from it (segan train --method supervised), while segan eval and segan predict "
        "take the method from the checkpoint\n")


def test_adversarial_method_on_binary_masks(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--method", "segan", "--binary", "--out", str(tmp_path)]) == 0
    assert "foreground" in capsys.readouterr().out
    saved = load_checkpoint(tmp_path / "last.pt", method="segan")
    assert set(saved["strategy"]["nets"]) == {"segmentor", "critic"}
    assert saved["meta"]["model"]["num_classes"] == 1 and saved["meta"]["num_classes"] == 2  # one sigmoid channel


def test_runtime_errors_are_one_line_messages(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path / "none.pt")]) == 2
    assert "segan: error: no checkpoint file at" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "--dataset", "folders", "--root", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segan: error:") and "absent" in err


def test_python_dash_m_segan_lib_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "segan_lib", "eval", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: segan eval" in done.stdout


@pytest.mark.slow
def test_quick_training_reaches_dice_above_0_8(tmp_path):
    done = subprocess.run([sys.executable, "-m", "segan_lib.cli", "train", "--quick", "--no-progress",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    dice = float(re.search(r"validation mean Dice \(foreground\): ([0-9.]+)", done.stdout).group(1))
    assert dice > 0.8, done.stdout


def _probe_fails_with(monkeypatch, code: int) -> None:
    """Creating a file anywhere fails with ``code``, as the kernel answers a non-root user in a
    folder without write permission (EACCES) or on a read-only file system (EROFS). The tests run
    as root in CI, where ``chmod`` does not stop a write, so the kernel's answer is simulated."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)


def _no_data_may_be_built(monkeypatch) -> None:
    def build(*args, **kwargs):
        raise AssertionError("the data was built before the output folder was checked")

    monkeypatch.setattr(cli, "build_data", build)


def test_out_behind_a_file_fails_before_training_naming_the_path(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "sub"
    _no_data_may_be_built(monkeypatch)
    assert cli.main(["train", *TINY, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"segan: error: --out {out} cannot be created: {tmp_path / 'afile'} "
                                       "is a file, not a folder\n")


# Every other command that writes into --out, with arguments that are otherwise fine or never read.
OUT_COMMANDS = {
    "predict": ["predict", "none.pt", "photo.png", "--no-progress"],
    "data export": ["data", "export", "--n", "2", "--size", "16"],
    "experiment": ["experiment", "adversarial", "--no-progress"],
    "assignments": ["assignments", "--only", "02"],
    "book": ["book", "--no-execute"],
}


@pytest.mark.parametrize("behind", [False, True], ids=["out is a file", "out is behind a file"])
@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_every_command_refuses_an_out_that_cannot_be_a_folder_as_train_does(command, behind, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    out = afile / "sub" if behind else afile
    assert cli.main([*OUT_COMMANDS[command], "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"segan: error: --out {out} cannot be created: {afile} is a file, not a folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and afile.read_text() == "not a folder"


def test_bench_refuses_an_out_that_cannot_be_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    for out, problem in ((tmp_path, "is a folder, not a file"),
                         (tmp_path / "afile" / "rows.jsonl", f"cannot be created: {tmp_path / 'afile'} is a file")):
        assert cli.main(["bench", "--device", "cpu", "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith(f"segan: error: --out {out} {problem}")


def test_out_without_write_permission_fails_before_training(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)  # read and enter, no write
    out = locked / "run"
    try:
        if os.geteuid() == 0:  # root writes through the mode bits
            _probe_fails_with(monkeypatch, errno.EACCES)
        _no_data_may_be_built(monkeypatch)
        assert cli.main(["train", *TINY, "--out", str(out)]) == 2
    finally:
        locked.chmod(0o700)
    assert capsys.readouterr().err == f"segan: error: --out {out} cannot be written (Permission denied)\n"
    assert not out.exists()


def test_out_on_a_read_only_file_system_fails_before_training(tmp_path, monkeypatch, capsys):
    _probe_fails_with(monkeypatch, errno.EROFS)
    _no_data_may_be_built(monkeypatch)
    out = tmp_path / "runs" / "ro"
    assert cli.main(["train", *TINY, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"segan: error: --out {out} cannot be written (Read-only file system)\n"
    assert not (tmp_path / "runs").exists()  # the check creates nothing


def test_train_config_refuses_an_unwritable_checkpoint_dir_at_once(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match=r"^checkpoint_dir .*afile/sub cannot be created: .*afile is a file"):
        TrainConfig(checkpoint_dir=str(tmp_path / "afile" / "sub"))
    assert TrainConfig(checkpoint_dir=tmp_path / "new" / "run").checkpoint_dir == str(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # checked, not created: the engine creates it when it saves
    _probe_fails_with(monkeypatch, errno.EROFS)
    with pytest.raises(ValueError, match=r"^checkpoint_dir .*new/run cannot be written \(Read-only file system\)$"):
        TrainConfig(checkpoint_dir=tmp_path / "new" / "run")


@pytest.mark.parametrize("flag, annealed", [(["--cosine"], True), ([], False)])
def test_cosine_flag_anneals_an_adversarial_method_only_when_asked(flag, annealed, tmp_path):
    """--cosine anneals both players of any method; without it SegAN, hybrid and semi keep their rates."""
    assert cli.main(["train", *TINY, "--method", "hybrid", "--lr", "0.01", *flag, "--out", str(tmp_path)]) == 0
    saved = load_checkpoint(tmp_path / "last.pt", method="hybrid")
    rates = {name: state["param_groups"][0]["lr"] for name, state in saved["strategy"]["optimizers"].items()}
    assert set(rates) == {"segmentor", "discriminator"}
    if annealed:  # the last step's rate: lr * (1 + cos(pi * t / T)) / 2 with t = T - 1 >= 1, below lr
        assert all(0 < rate < 0.01 for rate in rates.values())
    else:
        assert rates == {"segmentor": 0.01, "discriminator": 0.01}
