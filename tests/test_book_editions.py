"""The two editions of the course website: the student edition (default) holds no solution and
no hidden test anywhere a reader can reach; the teacher edition holds them all.

``solution_lines`` and ``hidden_test_lines`` read the solved notebooks: the lines between
``### BEGIN SOLUTION`` / ``### END SOLUTION`` (and between the hidden-test markers), stripped,
of at least 12 characters, that no student release also holds (a line such as
``with torch.no_grad():`` may be hidden in one test and shown in another lesson). ``site_texts`` reads what a built site serves: the text of
every HTML page (tags taken out, entities decoded, so highlighted code reads as typed),
``searchindex.js``, and every file under ``_downloads`` and ``_sources`` (the cells' sources of
a notebook, as typed). The student site must contain none of those lines; the teacher site
must contain every one, which shows the search itself can find them.

The sites are built without executing the lessons (sources are what can leak; the executed
student site of ``tests/test_book.py`` is searched the same way).
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import nbformat
import pytest

from segan_lib.assignments import course_notebooks
from segan_lib.book import build as book_build
from segan_lib.book.edition import TEACHER, with_release_sources, without_nbval_markers
from segan_lib.book.execute import prepare_page

REPO = Path(__file__).resolve().parents[1]
MIN_LINE = 12  # shorter lines (``pass``, ``return x``) say nothing about a solution


def _between(text: str, begin: str, end: str) -> list[str]:
    return [line.strip() for block in re.findall(rf"{begin}\n(.*?){end}", text, re.DOTALL)
            for line in block.splitlines()]


def secret_lines(notebook: Path, released: str) -> dict[str, list[str]]:
    """``{"solution": [...], "hidden test": [...]}``: the lines of ``notebook`` a student must not
    see, less those found in ``released``, the text of the student releases (a line such as
    ``with torch.no_grad():`` is hidden in one test and visible code elsewhere)."""
    solved = "\n".join(cell.source for cell in nbformat.read(notebook, as_version=4).cells)
    found = {"solution": _between(solved, "### BEGIN SOLUTION", r"[ \t]*### END SOLUTION"),
             "hidden test": _between(solved, "### BEGIN HIDDEN TESTS", r"[ \t]*### END HIDDEN TESTS")}
    return {kind: [line for line in lines if len(line) >= MIN_LINE and line not in released]
            for kind, lines in found.items()}


def site_texts(site: Path) -> dict[str, str]:
    """Path (relative to ``site``) -> the text a reader gets from it (see the module docstring)."""
    texts = {}
    for path in sorted(site.rglob("*")):
        relative = path.relative_to(site).as_posix()
        if not path.is_file() or not (path.suffix == ".html" or relative == "searchindex.js"
                                      or relative.startswith(("_downloads/", "_sources/"))):
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".html":
            raw = html.unescape(re.sub(r"<[^>]+>", "", raw))
        elif path.suffix == ".ipynb":
            raw = raw + "\n" + "\n".join(cell.source for cell in nbformat.reads(raw, as_version=4).cells)
        texts[relative] = raw
    return texts


def leaks(site: Path, secrets: dict[str, list[str]]) -> list[str]:
    """``"<kind> line <line> in <file>"`` for every secret line found in the site."""
    texts = site_texts(site)
    return [f"{kind} line {line!r} in {name}" for kind, lines in secrets.items() for line in lines
            for name, text in texts.items() if line in text]


# ---------------------------------------------------------------- a lesson page, cell by cell

def _lesson(solution: str, tests: str) -> nbformat.NotebookNode:
    grade = {"grade": False, "grade_id": "ex1", "locked": False, "solution": True, "schema_version": 3}
    test = {"grade": True, "grade_id": "ex1-test", "locked": True, "points": 1, "solution": False, "schema_version": 3}
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 09 · A lesson\n\n**Prerequisites.** none"),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1 + 1)",
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="2\n")]),
        nbformat.v4.new_code_cell(solution, metadata={"nbgrader": grade}),
        nbformat.v4.new_code_cell(tests, metadata={"nbgrader": test},
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="ratio 0.75\n")]),
    ])


def test_student_page_shows_release_sources_and_no_graded_outputs():
    solved = _lesson("def ratio():\n    ### BEGIN SOLUTION\n    return 3 / 4\n    ### END SOLUTION",
                     "print('ratio', ratio())\n### BEGIN HIDDEN TESTS\nassert ratio() == 0.75\n### END HIDDEN TESTS")
    release = _lesson("def ratio():\n    # YOUR CODE HERE\n    raise NotImplementedError()", "print('ratio', ratio())\n")
    before = nbformat.writes(solved)
    page = prepare_page(with_release_sources(solved, release, "09_lesson"), "09_lesson", None, executed=True)
    assert nbformat.writes(solved) == before, "the solved notebook itself is not changed"
    sources = [cell.source for cell in page.cells]
    assert sources[2] == "print(1 + 1)", "the nbval marker is not shown"
    assert page.cells[2].outputs[0]["text"] == "2\n", "a lesson cell keeps its output"
    assert sources[3] == release.cells[2].source and sources[4] == release.cells[3].source
    assert page.cells[3].outputs == [] and page.cells[4].outputs == [], "graded cells show no solved output"
    assert "BEGIN" not in json.dumps(page) and "3 / 4" not in json.dumps(page) and "0.75" not in json.dumps(page)
    box = page.cells[1].source
    assert "../downloads/release/09_lesson.ipynb" in box and "downloads/source" not in box
    teacher = prepare_page(solved, "09_lesson", None, executed=True, edition=TEACHER)
    assert "../downloads/source/09_lesson.ipynb" in teacher.cells[1].source
    assert "return 3 / 4" in teacher.cells[3].source and teacher.cells[4].outputs


def test_a_release_that_does_not_pair_with_the_notebook_is_refused():
    solved = _lesson("x = 1", "assert x")
    shorter = nbformat.v4.new_notebook(cells=solved.cells[:3])
    with pytest.raises(ValueError, match="09_lesson: expected the student release to have the notebook's 4 cells, got 3"):
        with_release_sources(solved, shorter, "09_lesson")
    other = _lesson("x = 1", "assert x")
    other.cells[3].metadata["nbgrader"]["grade_id"] = "ex2-test"
    with pytest.raises(ValueError, match="cell 3 of the student release does not match.*'ex1-test'.*'ex2-test'"):
        with_release_sources(solved, other, "09_lesson")


def test_nbval_marker_lines_are_taken_out():
    assert without_nbval_markers("# NBVAL_CHECK_OUTPUT\nx = 1\n") == "x = 1\n"
    assert without_nbval_markers("x = 1\n    # NBVAL_SKIP\ny = 2") == "x = 1\ny = 2"
    assert without_nbval_markers("print('# NBVAL_CHECK_OUTPUT is a marker')") == "print('# NBVAL_CHECK_OUTPUT is a marker')"


# ---------------------------------------------------------------- whole sites

@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """A student and a teacher site of every lesson, built without running them."""
    try:
        book_build.check_docs_dependencies()
    except ImportError as error:
        pytest.skip(f"website test skipped: {error}")
    root = tmp_path_factory.mktemp("editions")
    sites = {}
    for edition in ("student", "teacher"):
        report = book_build.build_book(root / edition, execute=False, build_dir=root / f"build-{edition}",
                                       results_dir=root / "no-results", edition=edition)
        assert report.edition == edition and report.warning_count == 0, report.warnings_file.read_text()
        sites[edition] = report.out
    sites["releases"] = root / "build-student" / "course" / "release"  # made by the student build
    return sites


@pytest.fixture(scope="module")
def secrets(editions) -> dict[str, dict[str, list[str]]]:
    """Lesson name -> its secret lines (the student build made the releases)."""
    lessons = course_notebooks(REPO / "notebooks")
    released = "\n".join(cell.source for path in lessons for cell in nbformat.read(
        editions["releases"] / path.stem / path.name, as_version=4).cells)
    return {path.stem: secret_lines(path, released) for path in lessons}


@pytest.mark.slow
def test_every_lesson_has_secret_lines_to_look_for(secrets):
    assert sorted(secrets) == [path.stem for path in course_notebooks(REPO / "notebooks")]
    for name, kinds in secrets.items():
        assert len(kinds["solution"]) >= 3 and len(kinds["hidden test"]) >= 2, (name, kinds)


@pytest.mark.slow
def test_student_site_holds_no_solution_and_no_hidden_test(editions, secrets):
    site = editions["student"]
    every = {kind: [line for lesson in secrets.values() for line in lesson[kind]] for kind in ("solution", "hidden test")}
    assert leaks(site, every) == []
    texts = site_texts(site)
    assert not [name for name, text in texts.items() if "BEGIN SOLUTION" in text or "HIDDEN TESTS" in text]
    downloads = sorted(path.name for path in (site / "_downloads").rglob("*.ipynb"))
    assert downloads == sorted(f"{name}.ipynb" for name in secrets), "one download per lesson: its release"
    for name in secrets:
        assert "raise NotImplementedError()" in texts[f"lessons/{name}.html"]
    assert "Student edition" in texts["index.html"] and "Teacher edition" not in texts["index.html"]


@pytest.mark.slow
def test_teacher_site_holds_every_solution_and_says_so(editions, secrets):
    site = editions["teacher"]
    texts = site_texts(site)
    for name, kinds in secrets.items():
        page = texts[f"lessons/{name}.html"]
        missing = [line for lines in kinds.values() for line in lines if line not in page]
        assert missing == [], f"{name}: the search would miss these lines: {missing}"
    assert len(list((site / "_downloads").rglob("*.ipynb"))) == 2 * len(secrets), "source and release"
    for name, text in texts.items():
        if name.endswith(".html") and not name.startswith("_static/"):  # every page, search included
            assert "Teacher edition" in text, f"{name} has no teacher-edition banner"
