"""The two editions of the course website, and what the student edition does to a lesson.

``segan book`` builds the **student edition** by default: a site a teacher can publish. Each
lesson page shows the outputs of the solved notebook run in quick mode (so its figures are
real), but every cell's *source* is the one of the nbgrader student release
(:func:`segan_lib.assignments.make_release`): exercise cells read ``# YOUR CODE HERE`` /
``raise NotImplementedError()``, hidden tests are gone. The outputs of the graded cells
(exercises and their tests) are dropped too: they come from the solution ("exercise 2
passed", the numbers an exercise asks for), and a student's own run would differ. The page
links the release notebook only.

The **teacher edition** (``--edition teacher``) shows the solved notebooks as they are, hidden
tests included, and links both the source and the release; a banner on every page says not
to publish it.

Both editions drop nbval's marker lines (``# NBVAL_CHECK_OUTPUT``, ``# NBVAL_SKIP``, ...) from
the cells they show: they tell the test runner what to compare, not the reader anything.
"""
from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only core dependencies at import: segan's parser imports this module
    import nbformat

STUDENT, TEACHER = "student", "teacher"
EDITIONS = (STUDENT, TEACHER)
TEACHER_BANNER = ("Teacher edition: this site shows the solutions of the exercises and the hidden tests. "
                  "Do not publish it to students (build the student edition with segan book).")
NBVAL_MARKER = re.compile(r"^[ \t]*# ?NBVAL_[A-Z_]+[ \t]*(\n|$)", re.MULTILINE)


def check_edition(edition: str) -> str:
    """``edition`` if it is one of :data:`EDITIONS`, else ``ValueError`` naming the choices."""
    if edition not in EDITIONS:
        raise ValueError(f"edition: expected one of {', '.join(EDITIONS)}, got {edition!r}")
    return edition


def without_nbval_markers(source: str) -> str:
    """``source`` without its ``# NBVAL_...`` lines (the rest unchanged)."""
    return NBVAL_MARKER.sub("", source)


def _grading(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_graded_cell(cell: nbformat.NotebookNode) -> bool:
    """True for an nbgrader exercise (``solution``) or test (``grade``) cell."""
    grading = _grading(cell)
    return bool(grading.get("solution") or grading.get("grade"))


def with_release_sources(notebook: nbformat.NotebookNode, release: nbformat.NotebookNode,
                         name: str) -> nbformat.NotebookNode:
    """The student page of lesson ``name``: ``notebook`` (solved, maybe executed) with each cell's
    source taken from ``release``, its nbgrader student release, and no outputs on graded cells.

    The release keeps nbgrader's cells in order, so cells are paired one to one; a release
    whose cells do not pair up (another count, type or nbgrader id) raises ``ValueError``
    naming the lesson and the cell, rather than putting a source under the wrong output.
    ``notebook`` is not modified.
    """
    if len(notebook.cells) != len(release.cells):
        raise ValueError(f"{name}: expected the student release to have the notebook's {len(notebook.cells)} "
                         f"cells, got {len(release.cells)}")
    page = copy.deepcopy(notebook)
    for index, (cell, student) in enumerate(zip(page.cells, release.cells)):
        ids = (_grading(cell).get("grade_id"), _grading(student).get("grade_id"))
        if cell.cell_type != student.cell_type or ids[0] != ids[1]:
            raise ValueError(f"{name}: cell {index} of the student release does not match the notebook "
                             f"(expected a {cell.cell_type} cell {ids[0]!r}, got a {student.cell_type} cell {ids[1]!r})")
        cell.source = student.source
        if cell.cell_type == "code" and is_graded_cell(cell):
            cell.outputs = []
            cell.execution_count = None
    return page
