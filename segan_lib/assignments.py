"""Classroom assignments: the course notebooks as nbgrader assignments, made by nbgrader itself.

``segan assignments --out DIR`` builds an nbgrader course directory::

    DIR/nbgrader_config.py               course settings, read by ``nbgrader ...`` run inside DIR
    DIR/gradebook.db                     nbgrader's gradebook: assignments, graded cells, points
    DIR/source/<name>/<name>.ipynb       the teacher's copy of each notebook (edit points here)
    DIR/release/<name>/<name>.ipynb      student version (``nbgrader generate_assignment``):
                                         solutions replaced by ``raise NotImplementedError()``,
                                         hidden tests removed, outputs cleared, test cells locked
    DIR/solutions/<name>/<name>.ipynb    matching solutions (``nbgrader generate_solution``,
                                         not executed, so without outputs like the committed ones)

Each notebook is its own assignment, named after the notebook (``02_unet``, ``03_losses``, ...),
so a teacher hands out one lesson at a time and nbgrader grades each on its own. The notebooks
import ``segan_lib`` and need no other files.

Grading stays nbgrader's: put submissions in ``DIR/submitted/<student>/<name>/`` (or use
``nbgrader collect``), then run ``nbgrader autograde <name>`` inside DIR, which reads the
course settings from ``DIR/nbgrader_config.py``. nbgrader is a development dependency
(``pip install -e ".[dev]"``) and is imported only when a release is made.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segan_lib._files import check_writable_dir

COURSE_ID = "segan-course"
SOLUTION_DIRECTORY = "solutions"
# Seconds one cell may run under nbgrader autograde before it counts as failed (nbgrader's
# default of 30 s is too short for the training cells of a full-mode notebook).
CELL_TIMEOUT_S = 600
# Seconds to wait for a cell's last output after it finished: nbgrader fails the notebook
# after nbclient's default of 4 s, which a busy machine exceeds (a whole notebook lost).
IOPUB_TIMEOUT_S = 60
# nbgrader's OverwriteCells, silent for an untouched cell whose hidden tests it restores (its module docstring).
RESTORE_HIDDEN_TESTS = "segan_lib.autograde.RestoreHiddenTests"
NBGRADER_CONFIG = f'''\
# nbgrader settings of this course directory, written by `segan assignments`.
# Run nbgrader commands from this folder, e.g. `nbgrader autograde 03_losses`.
c = get_config()
c.CourseDirectory.course_id = "{COURSE_ID}"
c.CourseDirectory.solution_directory = "{SOLUTION_DIRECTORY}"
c.Execute.timeout = {CELL_TIMEOUT_S}
c.Execute.iopub_timeout = {IOPUB_TIMEOUT_S}
# At autograde nbgrader puts the hidden tests back into each graded test cell. segan's version of
# its OverwriteCells step does so without warning "Attribute 'checksum' ... has changed!" for a
# cell the student left as released (a changed one is still reported): see segan_lib/autograde.py.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "{RESTORE_HIDDEN_TESTS}",
    "nbgrader.preprocessors.CheckCellMetadata",
]
'''


class AssignmentError(RuntimeError):
    """An nbgrader step failed; the message carries nbgrader's own log."""


@dataclass(frozen=True)
class Assignment:
    """One notebook as an nbgrader assignment: its name and its three copies in the course directory."""

    name: str
    source: Path
    release: Path
    solution: Path


def default_notebooks_dir() -> Path:
    """``./notebooks`` if it exists, else the ``notebooks/`` folder of the checkout holding segan_lib."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "notebooks"


def course_notebooks(notebooks_dir: str | Path | None = None, only: Sequence[str] | None = None) -> list[Path]:
    """The course notebooks ``notebooks_dir/*.ipynb`` in order, or those whose name starts with one of ``only``.

    Raises ``FileNotFoundError`` if the folder has no notebooks and ``ValueError`` for an entry
    of ``only`` that matches no notebook.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"notebooks_dir: expected a folder with .ipynb notebooks, got {str(folder)!r}")
    if only is None:
        return notebooks
    chosen = []
    for prefix in only:
        matches = [path for path in notebooks if path.stem.startswith(prefix)]
        if not matches:
            names = ", ".join(path.stem for path in notebooks)
            raise ValueError(f"only: expected the start of a notebook name ({names}), got {prefix!r}")
        chosen += [path for path in matches if path not in chosen]
    return sorted(chosen)


@contextlib.contextmanager
def _scripts_on_path():
    """Put this interpreter's scripts folder (``.venv/bin``) first on ``PATH`` for the duration.

    nbgrader's gradebook runs the ``alembic`` command by name, which fails with
    ``FileNotFoundError: 'alembic'`` when the course is used through ``.venv/bin/segan`` (or
    ``.venv/bin/python``) without activating the virtual environment.
    """
    old = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join(filter(None, [sysconfig.get_path("scripts"), old]))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old


def _run_nbgrader(step: str, root: Path, assignment: str) -> None:
    """Run nbgrader's own converter of ``step`` on one assignment of the course directory ``root``.

    ``step`` is "generate_assignment" or "generate_solution" (the converters behind those
    ``nbgrader`` commands), with the settings of the course's nbgrader_config.py. Raises
    ``AssignmentError`` with nbgrader's log if it fails.
    """
    try:
        from nbgrader.apps.api import capture_log
        from nbgrader.converters import GenerateAssignment, GenerateSolution
        from nbgrader.coursedir import CourseDirectory
    except ImportError as error:
        raise ImportError('nbgrader is needed for assignments: pip install -e ".[dev]" (or pip install nbgrader)') from error
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = COURSE_ID
    config.CourseDirectory.solution_directory = SOLUTION_DIRECTORY
    config.CourseDirectory.assignment_id = assignment
    # generate_solution without its Execute step: solutions stay output-free like the repository's.
    config.GenerateSolution.preprocessors = [
        "nbgrader.preprocessors.IncludeHeaderFooter", "nbgrader.preprocessors.LockCells",
        "nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.ClearMarkScheme",
    ]
    converter_class = {"generate_assignment": GenerateAssignment, "generate_solution": GenerateSolution}[step]
    converter = converter_class(coursedir=CourseDirectory(config=config), config=config)
    converter.force = True  # regenerate from the source copy; student submissions are not touched
    with _scripts_on_path():
        result = capture_log(converter)
    if not result["success"]:
        raise AssignmentError(f"nbgrader {step} {assignment} failed:\n{result.get('log', '')}\n{result.get('error', '')}")


def make_release(out: str | Path, notebooks_dir: str | Path | None = None, *,
                 only: Sequence[str] | None = None, force: bool = False) -> list[Assignment]:
    """Build the course directory ``out``: source copies, the student release and the solutions.

    Copies each notebook to ``out/source/<name>/``, then runs nbgrader's ``generate_assignment``
    (student version in ``out/release/<name>/``, gradebook entries in ``out/gradebook.db``) and
    ``generate_solution`` (``out/solutions/<name>/``). An existing source copy (a teacher may have
    edited its points) is kept unless ``force``; release and solutions are always regenerated
    from it. Raises ``AssignmentError`` with nbgrader's log if a step fails.
    """
    root = check_writable_dir(Path(out).resolve(), "out")
    notebooks = course_notebooks(notebooks_dir, only)
    root.mkdir(parents=True, exist_ok=True)
    config_file = root / "nbgrader_config.py"
    if force or not config_file.exists():
        config_file.write_text(NBGRADER_CONFIG)
    assignments = []
    for notebook in notebooks:
        name = notebook.stem
        source = root / "source" / name / notebook.name
        if force or not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, source)
        _run_nbgrader("generate_assignment", root, name)
        assignments.append(Assignment(name, source, root / "release" / name / notebook.name,
                                      root / SOLUTION_DIRECTORY / name / notebook.name))
    for assignment in assignments:  # after generate_assignment: it needs the gradebook entry
        _run_nbgrader("generate_solution", root, assignment.name)
    return assignments


def add_assignments_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segan assignments`` on the ``segan`` sub-command parsers (handler via ``args.func``)."""
    command = subparsers.add_parser(
        "assignments", help="nbgrader student release and solutions of the notebooks",
        description="Build an nbgrader course directory: OUT/source (teacher copies), OUT/release "
                    "(student notebooks, made by nbgrader generate_assignment) and OUT/solutions. "
                    "Each notebook is one assignment named after it. Grade with nbgrader "
                    "autograde run inside OUT (see the README, 'Teaching with this course').")
    command.add_argument("--out", required=True, help="course directory to create or update")
    command.add_argument("--notebooks", help="folder of the course notebooks (default ./notebooks)")
    command.add_argument("--only", nargs="+", metavar="NAME",
                         help="only these notebooks (start of the name, e.g. 02 03_losses)")
    command.add_argument("--force", action="store_true",
                         help="overwrite existing source copies and nbgrader_config.py with the course's")
    command.set_defaults(func=run_assignments)


def run_assignments(args: argparse.Namespace) -> int:
    """Handler of ``segan assignments``: builds the course directory and prints where things are.

    Input errors (``--out``, ``--notebooks``, ``--only``) reach ``segan_lib.cli.main`` (exit status 2);
    a failed nbgrader step is printed with nbgrader's log and exits with status 1."""
    check_writable_dir(args.out, "--out")
    try:
        assignments = make_release(args.out, args.notebooks, only=args.only, force=args.force)
    except AssignmentError as error:
        print(f"segan: error: {error}", file=sys.stderr)
        return 1
    root = Path(args.out).resolve()
    for assignment in assignments:
        print(f"{assignment.name}: release {assignment.release.relative_to(root)}, "
              f"solution {assignment.solution.relative_to(root)}")
    print(f"course directory {root} (gradebook.db, nbgrader_config.py); "
          f"grade with: cd {root} && nbgrader autograde ASSIGNMENT")
    return 0
