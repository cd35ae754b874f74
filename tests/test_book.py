"""The course website: ``segan book`` builds it, and headless Chromium reads it offline.

The fast tests check the parts that decide what a page says: the course map, the shaping of
an executed notebook into a page, and the errors a user meets (result pages: test_book_results.py).

The browser tests build one site (``03_losses`` executed in quick mode, plus a small pinned
result made here) and serve it from 127.0.0.1; Chromium may load nothing from anywhere else
(every other request is refused and reported). Each lesson page must show its figures, math
rendered by the site's own MathJax and no error output; the home page must hold the course map;
the downloads must be the notebook source and its nbgrader student release. Screenshots of the
home page and the lesson are saved in the test's folder and, with ``SEGAN_TEST_ARTIFACTS`` set,
copied there. Skipped without Chromium (``apt-get install chromium``) or without the docs extra
(``pip install -e ".[docs]"``).
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import nbformat
import pytest

from segan_lib.assignments import course_notebooks
from segan_lib.book import build as book_build
from segan_lib.book.execute import WIDGET_MIME, prepare_page
from segan_lib.book.lessons import RunMeasurement, course_map_markdown, read_lesson
from segan_lib.cli import main

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUILT_LESSONS = ["03_losses"]  # executed in the test build: figures, math and the loss explorer
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


# ---------------------------------------------------------------- fast tests (no browser)

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
    box = page.cells[1].source
    assert "{download}`Notebook source <../downloads/source/09_lesson.ipynb>`" in box
    assert "{download}`Student release <../downloads/release/09_lesson.ipynb>`" in box
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


# ---------------------------------------------------------------- the built site in Chromium

def _browser_requirements() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not found: install Debian's chromium (apt-get install chromium) to test the website")
    try:
        book_build.check_docs_dependencies()
    except ImportError as error:
        pytest.skip(f"website test skipped: {error}")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One built site for every browser test: ``(site folder, build report, screenshot folder)``."""
    _browser_requirements()
    root = tmp_path_factory.mktemp("book")
    results = root / "results" / "toy_experiment"  # a pinned result, made here: its page is tested too
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps({
        "command": "segan experiment toy --preset reference", "torch_version": "2.13.0",
        "arms": {"baseline": {"dice": 0.75}, "adversarial": {"dice": 0.7712}}}))
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 2))
    figure.add_subplot().plot([0, 1, 2], [0.7, 0.74, 0.75])
    figure.savefig(results / "paired_differences.png")
    report = book_build.build_book(root / "site", only=BUILT_LESSONS, execute=True, jobs=1,
                                   build_dir=root / "build", results_dir=root / "results")
    return report.out, report, root


@pytest.fixture(scope="module")
def browser_page(site):
    """A headless Chromium page on the site served from 127.0.0.1; ``page.base`` is its URL,
    ``page.problems`` collects console errors, page errors and any request that left the site."""
    from playwright.sync_api import sync_playwright

    handler = functools.partial(QuietHandler, directory=str(site[0]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.base, page.problems = base, []

            def only_this_site(route):
                if route.request.url.startswith(base):
                    return route.continue_()
                page.problems.append(f"request outside the site: {route.request.url}")
                return route.abort()

            page.route("**/*", only_this_site)
            page.on("console", lambda message: message.type == "error" and page.problems.append(
                f"console: {message.text}"))
            page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
            try:
                yield page
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def open_page(page, path: str) -> None:
    """Go to ``path`` of the site and wait until MathJax (if the page loads it) has typeset."""
    reply = page.goto(page.base + path)
    assert reply is not None and reply.status == 200, path
    page.wait_for_load_state("load")
    page.evaluate("async () => { if (window.MathJax && MathJax.startup) { await MathJax.startup.promise; } }")


def save_screenshot(page, site, name: str) -> Path:
    """A full-page screenshot in the test's folder, copied to ``$SEGAN_TEST_ARTIFACTS`` if set."""
    path = site[2] / name
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("SEGAN_TEST_ARTIFACTS"):
        target = Path(os.environ["SEGAN_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return path


def loaded_images(page, scope: str) -> tuple[int, list[str]]:
    """(number of ``img`` in ``scope``, sources of those that did not load), after loading lazy ones."""
    return page.evaluate("""async (scope) => {
        const images = [...document.querySelectorAll(scope + ' img')];
        for (const img of images) { img.loading = 'eager'; img.scrollIntoView(); }
        await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
            img.addEventListener('load', done); img.addEventListener('error', done); })));
        return [images.length, images.filter(img => !(img.naturalWidth > 0)).map(img => img.src)];
    }""", scope)


@pytest.mark.browser
@pytest.mark.slow
def test_home_page_has_the_course_map_with_links_to_each_lesson(browser_page, site):
    page = browser_page
    open_page(page, "index.html")
    table = page.locator("table.course-map")
    assert table.count() == 1
    rows = table.locator("tbody tr")
    every = course_notebooks(REPO / "notebooks")
    assert rows.count() == len(every)
    for index, path in enumerate(every):
        row = rows.nth(index)
        title = read_lesson(path, index + 1).title
        assert title in row.inner_text()
        link = row.locator("a.reference.internal")
        if path.stem in BUILT_LESSONS:
            assert link.get_attribute("href") == f"lessons/{path.stem}.html"
            assert re.search(r"\d+ s\*?\*?, [\d.]+ [GMk]B RAM", row.inner_text()), row.inner_text()
        else:
            assert link.count() == 0 and "not in this build" in row.inner_text()
    assert "not measured yet" in page.locator("#quick-mode-and-full-mode").inner_text()
    save_screenshot(page, site, "book_home.png")
    for name in BUILT_LESSONS:  # the links lead to pages
        page.locator(f"table.course-map a[href='lessons/{name}.html']").click()
        page.wait_for_load_state("load")
        assert page.url == page.base + f"lessons/{name}.html"
        page.go_back()
    assert page.problems == []


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_LESSONS)
def test_lesson_page_shows_figures_rendered_math_and_no_error(browser_page, site, name):
    page = browser_page
    open_page(page, f"lessons/{name}.html")
    assert page.locator("mjx-container").count() > 10, "math typeset by MathJax"
    assert page.locator("mjx-merror").count() == 0, "no TeX error in MathJax's output"
    count, broken = loaded_images(page, ".cell_output")
    assert count >= 3 and broken == [], f"{count} figures, not loaded: {broken}"
    assert page.locator(".cell_output .traceback, .cell_output .output.error").count() == 0
    stderr = page.locator(".cell_output .output.stderr").all_inner_texts()
    assert not [text for text in stderr if "Traceback" in text or "Error" in text], stderr
    if name == "03_losses":  # the loss explorer: its picture, then the note that it is live in JupyterLab
        note = page.locator(".widget-fallback")
        assert note.count() == 1 and "live in JupyterLab" in note.inner_text()
        picture = note.locator("xpath=preceding::div[contains(@class, 'cell_output')][1]//img")
        assert picture.evaluate("img => img.naturalWidth") > 0
    page.locator(".lesson-downloads").scroll_into_view_if_needed()
    save_screenshot(page, site, f"book_{name}.png")
    assert page.problems == []


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_LESSONS)
def test_lesson_page_links_its_source_and_student_release(browser_page, site, name):
    page = browser_page
    open_page(page, f"lessons/{name}.html")
    box = page.locator(".lesson-downloads")
    notebooks = {}
    for label in ("Notebook source", "Student release"):
        link = box.locator("a.download", has_text=label)
        assert link.count() == 1, label
        href = link.get_attribute("href")
        assert href.endswith(f"/{name}.ipynb")
        reply = page.request.get(page.base + f"lessons/{href}")
        assert reply.status == 200
        notebooks[label] = nbformat.reads(reply.text(), as_version=4)
        assert (site[0] / "lessons" / href).resolve().is_file()
    source = "".join(cell.source for cell in notebooks["Notebook source"].cells)
    release = "".join(cell.source for cell in notebooks["Student release"].cells)
    assert notebooks["Notebook source"] == nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    assert "### BEGIN SOLUTION" in source
    assert "### BEGIN SOLUTION" not in release and "raise NotImplementedError()" in release
    assert page.problems == []


@pytest.mark.browser
@pytest.mark.slow
def test_build_writes_the_site_and_nothing_beside_it(site):
    out, report, root = site
    assert sorted(path.name for path in root.iterdir() if path.suffix != ".png") == ["build", "results", "site"]
    assert (out / "index.html").is_file() and (out / book_build.SITE_MARKER).is_file()
    assert report.lessons == tuple(BUILT_LESSONS) and report.experiments == ("toy_experiment",)
    assert report.measurements["03_losses"].mode == "quick"


@pytest.mark.browser
@pytest.mark.slow
def test_pinned_results_page_shows_its_table_and_figures(browser_page, site):
    page = browser_page
    open_page(page, "index.html")
    page.locator("a.reference.internal[href='results/toy_experiment.html']").first.click()
    page.wait_for_load_state("load")
    text = page.locator("main").inner_text()
    assert "segan experiment toy --preset reference" in text
    assert re.search(r"adversarial\s+0\.7712", text)
    count, broken = loaded_images(page, "main")
    assert count == 1 and broken == []
    assert page.problems == []
