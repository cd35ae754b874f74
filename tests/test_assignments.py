"""Classroom assignments: valid nbgrader metadata in every notebook, a student release made by
nbgrader with no solution code in it, solutions that score full points under nbgrader autograde,
and an unfilled release that scores zero.

The course directory is built once per module with ``segan assignments``. nbgrader autograde
runs once, in a module-scoped fixture marked slow, on two notebooks: the solutions of one (full
points, end to end through nbgrader) and the untouched release of another (zero points, hidden
tests restored, no error but the unfilled exercises'). Executing every other release
again would double the suite's time, so for every notebook the same two facts are checked on
the release's code instead: each graded test cell uses a name the exercise before it leaves
unfinished (so an unfilled exercise scores zero), and no cell of the lesson itself uses one (so
the rest of the notebook runs for a learner who has not solved it). That the solutions of every
notebook pass every test cell, hidden tests included, is what nbval checks when it runs
``notebooks/`` (the solution notebooks are the course notebooks:
``test_solutions_match_the_notebooks``).
"""
from __future__ import annotations

import ast
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import pytest

from segan_lib import cli
from segan_lib.assignments import RESTORE_HIDDEN_TESTS, course_notebooks, make_release

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402
from nbgrader.nbgraderformat import MetadataValidator  # noqa: E402

from segan_lib.autograde import RestoreHiddenTests  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
COURSE = ("01_gan_basics", "02_unet", "03_losses", "04_adversarial_segmentation", "05_semi_supervised",
          "06_does_it_help")
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
# Only a guard against a hung kernel, not a speed check: far above any normal run.
AUTOGRADE_TIMEOUT_S = 3600
each_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
# Autograded end to end (module docstring): the solutions of the losses lesson and the untouched
# release of the last, two of the notebooks that run fastest.
SOLVED = [NOTEBOOK_DIR / "03_losses.ipynb"]
BLANK = [NOTEBOOK_DIR / "05_semi_supervised.ipynb"]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def graded_cells(notebook: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """grade_id -> cell, for every cell with nbgrader metadata."""
    return {cell.metadata.nbgrader.grade_id: cell for cell in notebook.cells if "nbgrader" in cell.metadata}


def marked_lines(source: str, markers: tuple[str, str]) -> list[str]:
    """Non-blank lines strictly between each ``markers[0]`` line and the next ``markers[1]`` line."""
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() in markers:
            inside = line.strip() == markers[0]
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def test_every_course_notebook_is_checked():
    assert {path.stem for path in NOTEBOOKS} >= set(COURSE)


@each_notebook
def test_nbgrader_metadata_is_valid(path):
    notebook = read(path)
    MetadataValidator().validate_nb(notebook)  # nbgrader's own schema check (raises on bad metadata)
    cells = [(index, cell) for index, cell in enumerate(notebook.cells) if "nbgrader" in cell.metadata]
    ids = [cell.metadata.nbgrader.grade_id for _, cell in cells]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {ids}"
    solutions = [index for index, cell in cells if cell.metadata.nbgrader.solution]
    assert len(solutions) >= 3, "at least three exercises"
    for index, cell in cells:
        meta = cell.metadata.nbgrader
        assert meta.schema_version == 3 and cell.cell_type == "code", meta.grade_id
        assert not meta.task, meta.grade_id
        if meta.grade:
            assert meta.locked and not meta.solution and meta.points > 0, meta.grade_id
        else:
            assert meta.solution and not meta.locked, f"{meta.grade_id}: an ungraded cell must be a solution cell"
    for index in solutions:
        source = notebook.cells[index].source.splitlines()
        begins = [n for n, line in enumerate(source) if line.strip() == SOLUTION_MARKERS[0]]
        ends = [n for n, line in enumerate(source) if line.strip() == SOLUTION_MARKERS[1]]
        assert begins and len(begins) == len(ends) and all(b < e for b, e in zip(begins, ends)), index
        following = notebook.cells[index + 1].metadata.get("nbgrader", {})
        assert following.get("grade") and following.get("points", 0) > 0, \
            f"exercise cell {index} must be followed by a graded test cell"
    for index, cell in enumerate(notebook.cells):
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            assert SOLUTION_MARKERS[0] not in cell.source, f"solution marker outside a solution cell: {index}"
        hidden = [line.strip() for line in cell.source.splitlines() if line.strip() in HIDDEN_MARKERS]
        assert hidden == list(HIDDEN_MARKERS) * (len(hidden) // 2), f"unbalanced hidden tests in cell {index}"
        assert not hidden or meta.get("grade"), f"hidden tests outside a graded cell: {index}"


def test_some_tests_are_hidden():
    """Hidden tests exist, so the release and autograde checks below also cover them."""
    assert any(HIDDEN_MARKERS[0] in cell.source for path in NOTEBOOKS for cell in read(path).cells)


def test_notebook_selection_errors(tmp_path, capsys):
    assert cli.main(["assignments", "--out", str(tmp_path), "--only", "99"]) == 2
    assert "segan: error: only: expected the start of a notebook name" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="notebooks_dir"):
        course_notebooks(tmp_path)
    with pytest.raises(ValueError, match="only: .*'99'"):
        course_notebooks(NOTEBOOK_DIR, only=["99"])
    assert [path.stem for path in course_notebooks(NOTEBOOK_DIR, only=["03", "02_"])] == ["02_unet", "03_losses"]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory made by ``segan assignments`` from the repository's notebooks."""
    root = tmp_path_factory.mktemp("course")
    assert cli.main(["assignments", "--out", str(root), "--notebooks", str(NOTEBOOK_DIR)]) == 0
    return root


@each_notebook
def test_release_has_no_solution_code(course, path):
    source, release = read(path), read(course / "release" / path.stem / path.name)
    assert len(release.cells) == len(source.cells)
    released = graded_cells(release)
    assert released.keys() == graded_cells(source).keys()
    text = "\n".join(cell.source for cell in release.cells)
    for marker in SOLUTION_MARKERS + HIDDEN_MARKERS:
        assert marker not in text
    for grade_id, cell in graded_cells(source).items():
        student_cell = released[grade_id]
        hidden_or_solution = marked_lines(cell.source, SOLUTION_MARKERS) + marked_lines(cell.source, HIDDEN_MARKERS)
        kept = {line.strip() for line in student_cell.source.splitlines()}
        leaked = [line for line in hidden_or_solution if line in kept]
        assert not leaked, f"{grade_id} keeps {leaked}"
        if cell.metadata.nbgrader.solution:
            assert "# YOUR CODE HERE" in student_cell.source and "raise NotImplementedError()" in student_cell.source
        else:
            assert student_cell.metadata.nbgrader.points == cell.metadata.nbgrader.points
            assert student_cell.metadata.get("editable") is False  # locked by nbgrader
    for cell, student_cell in zip(source.cells, release.cells):
        assert student_cell.cell_type == cell.cell_type
        if "nbgrader" not in cell.metadata:
            assert student_cell.source == cell.source  # the lesson itself is untouched
        if cell.cell_type == "code":
            assert student_cell.outputs == []


@each_notebook
def test_solutions_match_the_notebooks(course, path):
    source, solution = read(path), read(course / "solutions" / path.stem / path.name)
    assert [cell.source for cell in solution.cells] == [cell.source for cell in source.cells]
    assert all(cell.outputs == [] for cell in solution.cells if cell.cell_type == "code")


def test_gradebook_has_each_notebook_with_its_points(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "segan-course") as gradebook:
        for path in NOTEBOOKS:
            assignment = gradebook.find_assignment(path.stem)
            expected = sum(cell.metadata.nbgrader.points for cell in graded_cells(read(path)).values()
                           if cell.metadata.nbgrader.grade)
            assert [notebook.name for notebook in assignment.notebooks] == [path.stem]
            assert assignment.max_score == expected


def test_teacher_changes_points_and_exercises(tmp_path):
    """Edit the source copy (points, drop an exercise); a re-run keeps the edit, --force restores."""
    (assignment,) = make_release(tmp_path, NOTEBOOK_DIR, only=["02"])
    notebook = read(assignment.source)
    tests = [i for i, cell in enumerate(notebook.cells) if cell.metadata.get("nbgrader", {}).get("grade")]
    notebook.cells[tests[0]].metadata.nbgrader.points = 3
    dropped = notebook.cells[tests[-1]].metadata.nbgrader.grade_id
    del notebook.cells[tests[-1] - 1:tests[-1] + 1]  # the last exercise and its test cell
    nbformat.write(notebook, assignment.source)

    make_release(tmp_path, NOTEBOOK_DIR, only=["02"])
    released = graded_cells(read(assignment.release))
    assert released[notebook.cells[tests[0]].metadata.nbgrader.grade_id].metadata.nbgrader.points == 3
    assert dropped not in released
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}", "segan-course") as gradebook:
        kept_points = sum(notebook.cells[i].metadata.nbgrader.points for i in tests[1:-1])
        assert gradebook.find_assignment(assignment.name).max_score == 3 + kept_points

    make_release(tmp_path, NOTEBOOK_DIR, only=["02"], force=True)
    assert read(assignment.source).cells == read(NOTEBOOK_DIR / assignment.source.name).cells


def read_scores(root: Path) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """(student, assignment) -> {grade_id: (score, max_score)} from nbgrader's gradebook in ``root``."""
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "segan-course") as gradebook:
        for assignment in gradebook.assignments:
            for submission in assignment.submissions:
                (notebook,) = submission.notebooks
                scores[submission.student_id, assignment.name] = {
                    grade.name: (float(grade.score), float(grade.max_score)) for grade in notebook.grades}
    return scores


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory) -> dict[str, Path]:
    """``nbgrader autograde "*"`` run as a teacher runs it, inside the course directory.

    Student "solved" submitted the solution notebooks of :data:`SOLVED`, "blank" the release
    notebooks of :data:`BLANK`, untouched. The two are graded at the same time, each in its
    own copy of the course directory (so two processes never write one gradebook), with one
    torch thread per kernel. Cells may run as long as they need (``--Execute.timeout``): the
    whole run has only a hang guard. Returns student -> its course directory copy.
    """
    runs = {}
    start = time.perf_counter()
    for student, folder, submitted in (("solved", "solutions", SOLVED), ("blank", "release", BLANK)):
        root = tmp_path_factory.mktemp(f"grading-{student}")
        shutil.copytree(course, root, dirs_exist_ok=True)
        for path in submitted:
            target = root / "submitted" / student / path.stem
            target.mkdir(parents=True)
            shutil.copyfile(root / folder / path.stem / path.name, target / path.name)
        # nbgrader runs `alembic` by name: the teacher's activated venv, as the README says.
        path = os.pathsep.join(filter(None, [sysconfig.get_path("scripts"), os.environ.get("PATH")]))
        env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(root / "autograde.log", "w") as log:
            command = [sys.executable, "-m", "nbgrader", "autograde", "*", "--force",
                       f"--Execute.timeout={AUTOGRADE_TIMEOUT_S}"]
            runs[student] = root, subprocess.Popen(command, cwd=root, env=env, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + AUTOGRADE_TIMEOUT_S
    try:
        for _, process in runs.values():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for _, process in runs.values():
            if process.poll() is None:  # timed out: stop nbgrader and the kernel it started
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for student, (root, process) in runs.items():
        log = (root / "autograde.log").read_text()
        assert process.returncode == 0, f"nbgrader autograde ({student}) failed:\n{log[-5000:]}"
    print(f"autograde of {len(SOLVED) + len(BLANK)} notebooks took {time.perf_counter() - start:.0f} s")
    return {student: root for student, (root, _) in runs.items()}


def errors_in(notebook: nbformat.NotebookNode) -> dict[str, list[str]]:
    """grade_id (or cell index) -> names of the errors in that cell's outputs."""
    found = {}
    for index, cell in enumerate(notebook.cells):
        names = [out.ename for out in cell.get("outputs", []) if out.output_type == "error"]
        if names:
            found[cell.metadata.get("nbgrader", {}).get("grade_id", str(index))] = names
    return found


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLVED, ids=lambda path: path.stem)
def test_solutions_score_full_points(graded, path):
    scores = read_scores(graded["solved"])[("solved", path.stem)]
    tests = [i for i, c in graded_cells(read(path)).items() if c.metadata.nbgrader.grade]
    assert sorted(scores) == sorted(tests)
    assert all(score == maximum > 0 for score, maximum in scores.values()), scores
    assert errors_in(read(graded["solved"] / "autograded" / "solved" / path.stem / path.name)) == {}


@pytest.mark.slow
@pytest.mark.parametrize("path", BLANK, ids=lambda path: path.stem)
def test_unfilled_release_scores_zero(graded, path):
    source = read(path)
    scores = read_scores(graded["blank"])[("blank", path.stem)]
    tests = {i: c for i, c in graded_cells(source).items() if c.metadata.nbgrader.grade}
    assert sorted(scores) == sorted(tests)
    assert all(score == 0 and maximum > 0 for score, maximum in scores.values()), scores
    autograded = read(graded["blank"] / "autograded" / "blank" / path.stem / path.name)
    # Zero because the learner's cells are unfilled, and nothing else went wrong before them.
    assert errors_in(autograded) == {grade_id: ["NotImplementedError"] for grade_id in tests}
    restored = graded_cells(autograded)  # nbgrader put the hidden tests back before grading
    for grade_id, cell in tests.items():
        assert restored[grade_id].source == cell.source
    assert any(HIDDEN_MARKERS[0] in cell.source for cell in tests.values())  # so the next line tests something
    for student in ("blank", "solved"):  # an untouched release and the solutions: nothing looks tampered with
        assert "has changed!" not in (graded[student] / "autograde.log").read_text()


def sanitized(course: Path, name: str, notebook: nbformat.NotebookNode, caplog) -> nbformat.NotebookNode:
    """``notebook`` after the course's own grade-cell step of ``nbgrader autograde`` (nothing executed)."""
    resources = {"nbgrader": {"notebook": name, "assignment": name, "db_url": f"sqlite:///{course / 'gradebook.db'}"}}
    caplog.clear()
    notebook, _ = RestoreHiddenTests(log=logging.getLogger("test_assignments.autograde")).preprocess(notebook, resources)
    return notebook


@each_notebook
def test_autograde_restores_hidden_tests_warning_only_about_changed_cells(course, path, caplog):
    """The course's step puts every hidden test back; it warns nothing for an untouched release
    (nbgrader's own step warns for every cell with hidden tests) and still warns for an edited cell."""
    source, release = read(path), read(course / "release" / path.stem / path.name)
    tests = {grade_id: cell for grade_id, cell in graded_cells(source).items() if cell.metadata.nbgrader.grade}
    untouched = sanitized(course, path.stem, release, caplog)
    assert {grade_id: graded_cells(untouched)[grade_id].source for grade_id in tests} == \
        {grade_id: cell.source for grade_id, cell in tests.items()}
    assert "has changed!" not in caplog.text
    edited = read(course / "release" / path.stem / path.name)
    grade_id = next(iter(tests))
    graded_cells(edited)[grade_id].source += "\nassert True  # a student's edit"
    restored = sanitized(course, path.stem, edited, caplog)
    assert graded_cells(restored)[grade_id].source == tests[grade_id].source
    assert f"Attribute 'checksum' for cell {grade_id} has changed!" in caplog.text
    assert caplog.text.count("has changed!") == 1


def test_the_course_config_is_nbgraders_autograde_with_the_quiet_restore(course):
    """The course's nbgrader_config.py changes one step of nbgrader's autograde, nothing else."""
    from nbgrader.converters import Autograde
    from traitlets.config import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    default = [f"{step.__module__.rsplit('.', 1)[0]}.{step.__name__}"
               for step in Autograde.class_traits()["sanitize_preprocessors"].default()]
    assert config.Autograde.sanitize_preprocessors == [
        RESTORE_HIDDEN_TESTS if step == "nbgrader.preprocessors.OverwriteCells" else step for step in default]


def _code(source: str) -> ast.Module:
    """A code cell's Python, its IPython magics and shell lines left out."""
    return ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))


def bound_names(tree: ast.Module) -> set[str]:
    """Names a cell binds at its top level (assignments, definitions, imports, loop and with targets)."""
    names = set()
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in statement.names)
        else:
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def used_names(tree: ast.Module) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def unfinished_names(solution: str, release: str) -> set[str]:
    """Names the solution cell binds that the release leaves undefined or raising NotImplementedError."""
    kept = set()
    for statement in _code(release).body:
        if "NotImplementedError" not in ast.unparse(statement):
            kept |= bound_names(ast.Module(body=[statement], type_ignores=[]))
    return bound_names(_code(solution)) - kept


@each_notebook
def test_unfilled_exercises_fail_only_their_own_tests(course, path):
    """In the release, every test cell uses a name its exercise leaves unfinished; no lesson cell does."""
    source, release = read(path), read(course / "release" / path.stem / path.name)
    unfinished: dict[str, int] = {}  # name -> index of the exercise cell that leaves it unfinished
    for index, (cell, student_cell) in enumerate(zip(source.cells, release.cells)):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            names = unfinished_names(cell.source, student_cell.source)
            assert names, f"exercise cell {index} leaves no name unfinished in the release"
            unfinished.update(dict.fromkeys(names, index))
            continue
        tree = _code(cell.source)
        if meta.get("grade"):
            exercise = max((i for i in unfinished.values() if i < index), default=None)
            needs = {name for name in used_names(tree) if unfinished.get(name) == exercise}
            assert needs, f"test cell {index} ({meta['grade_id']}) uses nothing its exercise leaves unfinished"
        else:
            broken = {name: unfinished[name] for name in used_names(tree) - bound_names(tree) if name in unfinished}
            assert not broken, f"lesson cell {index} uses {broken} (name -> exercise cell): it fails unsolved"
        for name in bound_names(tree):
            unfinished.pop(name, None)  # bound again: usable from here on
