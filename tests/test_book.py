"""The course website: ``segan book``, the parts that decide what a page says.

The course map, the shaping of an executed notebook into a page, the running of lessons, and
the errors a user meets. The editions are tested in ``test_book_editions.py``, the result pages
in ``test_book_results.py``, a built site in Chromium in ``test_book_site.py``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from segan_lib.assignments import course_notebooks
from segan_lib.book import build as book_build
from segan_lib.book.execute import WIDGET_MIME, prepare_page
from segan_lib.book.lessons import RunMeasurement, course_map_markdown, read_lesson
from segan_lib.book.pages import REPOSITORY_URL, repository_url
from segan_lib.cli import main

REPO = Path(__file__).resolve().parents[1]
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_every_course_notebook_gives_the_map_a_title_and_prerequisites():
    for order, path in enumerate(course_notebooks(REPO / "notebooks"), start=1):
        lesson = read_lesson(path, order)
        assert lesson.title.startswith(path.stem[:2]), (path.name, lesson.title)
        assert lesson.prerequisites != "none stated", f"{path.name} has no **Prerequisites.** paragraph"
        assert not lesson.prerequisites.startswith(("**", "Prerequisites"))


def test_course_map_links_built_lessons_and_states_measured_runs(tmp_path):
    lessons = [read_lesson(path, order) for order, path in enumerate(course_notebooks(REPO / "notebooks"), 1)]
    measured = RunMeasurement(seconds=75.4, max_rss_bytes=1_234_000_000, mode="quick", torch_version="2.13.0")
    text = course_map_markdown(lessons, {"03_losses"}, {"03_losses": measured})
    rows = text.split("\n* - ")[2:]  # after the header row
    assert len(rows) == len(lessons)
    losses_row = next(row for row in rows if "03 ·" in row)
    assert "{doc}`" in losses_row and "<lessons/03_losses>`" in losses_row
    assert "**1 min 15 s**, 1.2 GB RAM" in losses_row  # 75.4 s; 1.234e9 bytes
    other = next(row for row in rows if "02 ·" in row)
    assert "{doc}" not in other and "not in this build" in other and "not run in this build" in other


def _widget_output(with_png: bool) -> nbformat.NotebookNode:
    data = {WIDGET_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0}, "text/plain": "VBox(...)"}
    if with_png:
        data["image/png"] = PNG_1x1
    return nbformat.v4.new_output("display_data", data=data)


def test_page_keeps_widget_pictures_with_a_note_and_links_downloads():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 09 · A lesson\n\n**Prerequisites.** none"),
        nbformat.v4.new_code_cell("explorer", outputs=[_widget_output(with_png=True)]),
        nbformat.v4.new_code_cell("train()", outputs=[_widget_output(with_png=False),
                                                      nbformat.v4.new_output("stream", name="stdout", text="done\n")]),
    ])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    before = json.dumps(notebook)
    page = prepare_page(notebook, "09_lesson", None, executed=True)
    assert json.dumps(notebook) == before, "the executed notebook itself is not changed"
    kinds = [cell.cell_type for cell in page.cells]
    assert kinds == ["markdown", "markdown", "code", "markdown", "code"]
    box = page.cells[1].source  # the student edition: the release only
    assert "{download}`Lesson notebook <../downloads/release/09_lesson.ipynb>`" in box and "source" not in box
    teacher = prepare_page(notebook, "09_lesson", None, executed=True, edition="teacher").cells[1].source
    assert "{download}`Notebook source <../downloads/source/09_lesson.ipynb>`" in teacher
    assert "{download}`Student release <../downloads/release/09_lesson.ipynb>`" in teacher
    assert page.cells[2].outputs[0]["data"] == {"image/png": PNG_1x1}
    assert "live in JupyterLab" in page.cells[3].source
    assert [output.output_type for output in page.cells[4].outputs] == ["stream"]  # the progress bar is gone
    assert "widgets" not in page.metadata


def test_book_without_the_docs_extra_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(book_build, "DOCS_MODULES", (*book_build.DOCS_MODULES, "myst_nb_not_installed"))
    assert main(["book", "--out", str(tmp_path / "site"), "--no-execute"]) == 2
    error = capsys.readouterr().err
    assert 'pip install -e ".[docs]"' in error and re.search(r"missing: .*myst_nb_not_installed", error)
    assert not (tmp_path / "site").exists()


def test_book_refuses_to_replace_a_folder_it_did_not_build(monkeypatch, tmp_path):
    monkeypatch.setattr(book_build, "check_docs_dependencies", lambda: None)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="out: expected a new folder or a site built by segan book"):
        book_build.build_book(tmp_path / "site", execute=False, build_dir=tmp_path / "build")
    with pytest.raises(ValueError, match="jobs: expected a positive int, got 0"):
        book_build.build_book(tmp_path / "new", jobs=0, build_dir=tmp_path / "build")
    assert (tmp_path / "site" / "thesis.tex").read_text() == "mine"


def _tiny_lesson(path: Path, code: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# {path.stem[:2]} · Tiny\n\n**Prerequisites.** none."),
        nbformat.v4.new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.mark.slow
def test_lessons_run_in_quick_mode_in_parallel_and_a_failing_cell_stops_the_build(tmp_path):
    pytest.importorskip("nbclient", reason="pip install -e \".[docs]\"")
    code = "from segan_lib import course\nprint(course.mode(), __import__('os').environ['SEGAN_QUICK'])"
    lessons = [_tiny_lesson(tmp_path / f"0{k}_tiny.ipynb", code) for k in (1, 2)]
    runs = book_build._execute_all([(path, tmp_path / "out" / path.name) for path in lessons], jobs=2)
    assert sorted(runs) == ["01_tiny", "02_tiny"]
    for path in lessons:
        assert runs[path.stem].mode == "quick" and runs[path.stem].seconds > 0
        assert runs[path.stem].max_rss_bytes > 10_000_000  # a Python kernel with torch imported
        executed = nbformat.read(tmp_path / "out" / path.name, as_version=4)
        assert executed.cells[1].outputs[0]["text"] == "quick 1\n"
        assert len(executed.cells) == 2, "the measuring cell is not kept"
    broken = _tiny_lesson(tmp_path / "03_broken.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(book_build.BookError, match=r"03_broken.ipynb: a cell failed in quick mode(.|\n)*boom"):
        book_build._execute_all([(broken, tmp_path / "out" / broken.name)], jobs=1)
    assert not (tmp_path / "out" / broken.name).exists()


def test_site_links_the_repository_named_in_pyproject(tmp_path):
    assert repository_url() == "https://github.com/segan-course/segan-course"  # this checkout's pyproject.toml
    mine = tmp_path / "pyproject.toml"
    mine.write_text('[project]\nname = "segan-course"\n[project.urls]\nRepository = "https://example.org/fork"\n')
    assert repository_url(mine) == "https://example.org/fork"
    mine.write_text('[project]\nname = "other"\n[project.urls]\nRepository = "https://example.org/other"\n')
    assert repository_url(mine) == REPOSITORY_URL and repository_url(tmp_path / "absent.toml") == REPOSITORY_URL
