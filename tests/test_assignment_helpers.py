"""`segan assignments` without running nbgrader: the command's options, its output and exit codes,
and where the notebooks are found. (nbgrader itself runs in test_assignments.py.)"""
import argparse
from pathlib import Path

from segan_lib import assignments
from segan_lib.assignments import Assignment, AssignmentError, add_assignments_command, default_notebooks_dir

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="segan")
    add_assignments_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_command_options():
    args = parse(["assignments", "--out", "course"])
    assert (args.out, args.notebooks, args.only, args.force) == ("course", None, None, False)
    args = parse(["assignments", "--out", "c", "--notebooks", "nb", "--only", "02", "03_losses", "--force"])
    assert (args.notebooks, args.only, args.force) == ("nb", ["02", "03_losses"], True)
    assert args.func is assignments.run_assignments


def test_run_prints_each_release_and_how_to_grade(tmp_path, monkeypatch, capsys):
    root = tmp_path / "course"
    made = [Assignment("02_unet", root / "source/02_unet/02_unet.ipynb", root / "release/02_unet/02_unet.ipynb",
                       root / "solutions/02_unet/02_unet.ipynb")]
    calls = []
    monkeypatch.setattr(assignments, "make_release", lambda *a, **k: calls.append((a, k)) or made)
    assert assignments.run_assignments(parse(["assignments", "--out", str(root), "--only", "02", "--force"])) == 0
    assert calls == [((str(root), None), {"only": ["02"], "force": True})]
    out = capsys.readouterr().out
    assert "02_unet: release release/02_unet/02_unet.ipynb, solution solutions/02_unet/02_unet.ipynb" in out
    assert f"grade with: cd {root} && nbgrader autograde ASSIGNMENT" in out


def test_an_nbgrader_failure_is_exit_code_1_with_its_log(tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssignmentError("nbgrader generate_assignment 02_unet failed:\nthe log")

    monkeypatch.setattr(assignments, "make_release", fail)
    assert assignments.run_assignments(parse(["assignments", "--out", str(tmp_path)])) == 1
    assert "segan: error: nbgrader generate_assignment 02_unet failed:\nthe log" in capsys.readouterr().err


def test_notebooks_are_found_in_the_working_directory_else_in_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_notebooks_dir() == REPO / "notebooks"  # no ./notebooks here
    (tmp_path / "notebooks").mkdir()
    assert default_notebooks_dir() == tmp_path / "notebooks"
