"""The course website as a reader gets it: ``segan book`` builds a student-edition site and
headless Chromium reads it offline.

One site is built for the module (``03_losses`` executed in quick mode, plus a small pinned
result of each results.json schema made here) and served from 127.0.0.1; Chromium may load
nothing from anywhere else (every other request is refused and reported). The home page must
hold the course map, say which edition it is and offer one search box; each lesson page must
show its figures, math rendered by the site's own MathJax, no error output and no solution, with
no code, equation or figure cut off at the right edge; its download must be the nbgrader
student release; the result pages must read at a desktop's and at a phone's width. Screenshots
are saved in the test's folder and, with ``SEGAN_TEST_ARTIFACTS`` set, copied there. Skipped
without Chromium (``apt-get install chromium``) or without the docs extra (``pip install -e ".[docs]"``).
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
from segan_lib.book.lessons import read_lesson
from test_book_editions import leaks, secret_lines
from test_book_results import results_json

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUILT_LESSONS = ["03_losses"]  # executed in the test build: figures, math and the loss explorer
EXPERIMENTS = {"toy_first_schema": 1, "toy_later_schema": 2}
MIN_SCALE = 0.6  # segan.js never draws a figure smaller than this fraction of its own size
pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
    from matplotlib.figure import Figure

    for name, schema in EXPERIMENTS.items():  # pinned results, made here: their pages are tested too
        (root / "results" / name).mkdir(parents=True)
        (root / "results" / name / "results.json").write_text(json.dumps(results_json(schema)))
        for figure_name, size in (("paired_differences.png", (30, 2)), ("curves.png", (6, 3))):
            figure = Figure(figsize=size, dpi=100)  # 3000 px wide: it must scroll, not shrink
            figure.add_subplot().plot([0, 1, 2], [0.7, 0.74, 0.75])
            figure.savefig(root / "results" / name / figure_name)
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
    assert "Student edition" in page.locator("main .site-edition").inner_text()
    assert page.locator(".search-button-field:visible").count() == 1, "one search box"
    assert page.locator("text=Adversarial networks for semantic segmentation >> visible=true").count() == 1, "once"
    repository = "https://github.com/segan-course/segan-course"
    assert page.locator(f"article a[href='{repository}']").count() == 1
    assert page.locator(f"a[href='{repository}'] .fa-github").count() == 1, "the repository button"
    save_screenshot(page, site, "book_home.png")
    for name in BUILT_LESSONS:  # the links lead to pages
        page.locator(f"table.course-map a[href='lessons/{name}.html']").click()
        page.wait_for_load_state("load")
        assert page.url == page.base + f"lessons/{name}.html"
        page.go_back()
    assert page.problems == []


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


LAYOUT = """() => {
    const column = document.querySelector('main').getBoundingClientRect().right + 1;
    const cut = [];
    const past = el => el.getBoundingClientRect().right > column || el.scrollWidth > el.clientWidth + 1;
    for (const pre of document.querySelectorAll('div.cell_input pre, div.cell_output pre')) {
        if (past(pre)) cut.push('code: ' + pre.textContent.slice(0, 60));  // code wraps: it never scrolls
    }
    for (const math of document.querySelectorAll('mjx-container[display="true"]')) {
        if (past(math) && getComputedStyle(math).overflowX !== 'auto') cut.push('math: ' + math.textContent.slice(0, 60));
    }
    for (const math of document.querySelectorAll('article p mjx-container:not([display="true"])')) {
        const scrolls = getComputedStyle(math).overflowX === 'auto' || math.closest('.pst-scrollable-table-container');
        if (math.getBoundingClientRect().right > column && !scrolls) cut.push('inline math: ' + math.textContent);
    }
    const small = [...document.querySelectorAll('main img')].filter(img => img.naturalWidth > 0 && (
        img.getBoundingClientRect().width < Math.min(img.naturalWidth, %s * img.naturalWidth) - 1
        || !img.closest('a.segan-full-size') || img.closest('a').getAttribute('href') !== img.getAttribute('src')))
        .map(img => img.src);
    return {cut, small, pageScrolls: document.documentElement.scrollWidth > window.innerWidth + 1};
}""" % MIN_SCALE


def layout_problems(page) -> dict:
    """Code or display math past the column or cut off, figures drawn too small or not linked to their
    full size, and whether the whole page scrolls sideways: all empty or False on a good page."""
    return page.evaluate(LAYOUT)


@pytest.mark.parametrize("name", BUILT_LESSONS)
def test_lesson_page_shows_no_solution_and_nothing_cut_off(browser_page, site, name):
    page = browser_page
    open_page(page, f"lessons/{name}.html")
    text = page.locator("main").inner_text()
    assert "NBVAL_" not in text and "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert text.count("raise NotImplementedError()") >= 3, "the exercises as students get them"
    releases = site[0].parent / "build" / "course" / "release"
    released = "\n".join(cell.source for cell in nbformat.read(releases / name / f"{name}.ipynb", as_version=4).cells)
    secrets = secret_lines(REPO / "notebooks" / f"{name}.ipynb", released)
    assert secrets["solution"] and leaks(site[0], secrets) == [], "executed outputs and all: no solution line"
    assert layout_problems(page) == {"cut": [], "small": [], "pageScrolls": False}
    assert page.problems == []


@pytest.mark.parametrize("name", BUILT_LESSONS)
def test_lesson_page_links_its_student_release(browser_page, site, name):
    page = browser_page
    open_page(page, f"lessons/{name}.html")
    box = page.locator(".lesson-downloads")
    assert box.locator("a.download").count() == 1, "the student edition offers the release only"
    href = box.locator("a.download", has_text="Lesson notebook").get_attribute("href")
    assert href.endswith(f"/{name}.ipynb")
    reply = page.request.get(page.base + f"lessons/{href}")
    assert reply.status == 200
    release = "".join(cell.source for cell in nbformat.reads(reply.text(), as_version=4).cells)
    assert "### BEGIN SOLUTION" not in release and "raise NotImplementedError()" in release
    assert page.problems == []


def test_build_writes_the_site_and_nothing_beside_it(site):
    out, report, root = site
    assert sorted(path.name for path in root.iterdir() if path.suffix != ".png") == ["build", "results", "site"]
    assert (out / "index.html").is_file() and (out / book_build.SITE_MARKER).is_file()
    assert not (out / "genindex.html").exists() and not list(out.glob("_sources/**/*.*"))
    assert report.lessons == tuple(BUILT_LESSONS) and report.experiments == tuple(sorted(EXPERIMENTS))
    assert report.measurements["03_losses"].mode == "quick" and report.edition == "student"
    assert report.warning_count == 0, report.warnings_file.read_text()


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_results_page_reads_at_desktop_and_phone_width(browser_page, site, name):
    page = browser_page
    open_page(page, f"results/{name}.html")
    text = page.locator("main").inner_text()
    assert "Does an adversarial term help, against matched baselines?" in text
    assert "segan experiment toy --preset reference" in text
    assert "ce+adv beats ce" in text or "ce+adv is better than ce on dice" in text
    assert page.locator("main li code", has_text="dice+segan").count() == 1, "the description's bullets are a list"
    assert page.locator("main a.download", has_text="results.json").count() == 2
    count, broken = loaded_images(page, "main")
    assert count == 2 and broken == []
    try:
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(300)
            assert layout_problems(page) == {"cut": [], "small": [], "pageScrolls": False}, width
            save_screenshot(page, site, f"book_{name}_{width}.png")
    finally:
        page.set_viewport_size({"width": 1300, "height": 1000})
    assert page.problems == []
