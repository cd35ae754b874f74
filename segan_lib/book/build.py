"""Build the course website: student releases, executed lessons, result pages, then Sphinx.

``build_book(out)`` goes through four steps, each reported on the terminal:

1. the nbgrader student release of each lesson (:func:`segan_lib.assignments.make_release`);
2. each lesson (solved) executed in quick mode (:mod:`segan_lib.book.execute`), ``jobs`` at a
   time, or only copied when ``execute=False``;
3. the generated sources in ``build_dir/src``: ``index.md`` (course map), ``lessons/`` (in the
   student edition, the default, with the release's cell sources: :mod:`segan_lib.book.edition`),
   ``results/`` (pinned reference results, :mod:`segan_lib.book.results`), ``downloads/`` (the
   release notebooks; the solved ones too in the teacher edition only);
4. ``sphinx-build`` with the settings in ``segan_lib/book/conf.py`` into ``build_dir/html``,
   which then replaces ``out`` (moved next to it first), so ``out`` is never half-written.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from segan_lib._files import check_writable_dir
from segan_lib.assignments import course_notebooks, default_notebooks_dir, make_release
from segan_lib.book.edition import STUDENT, TEACHER_BANNER, check_edition, with_release_sources
from segan_lib.book.execute import CELL_TIMEOUT_S, BookError, execute_lesson_job, prepare_page, write_notebook
from segan_lib.book.lessons import (Lesson, RunMeasurement, course_map_markdown, format_bytes, format_seconds,
                                   read_lesson)
from segan_lib.book.pages import index_page, repository_url
from segan_lib.book.results import experiment_page, find_experiments

CONF_DIR = Path(__file__).resolve().parent
DOCS_MODULES = ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx-mathjax-offline", "nbclient", "ipykernel",
                "nbgrader")
DOCS_EXTRA_HINT = 'the course website needs the docs extra: pip install -e ".[docs]"'
SITE_MARKER = ".segan-book"  # written into every built site: only such a folder is replaced
# The site's icon (browsers ask for one; without it each page logs a 404): a mask of two shapes.
FAVICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<rect width="16" height="16" rx="3" fill="#1f2937"/><circle cx="6" cy="7" r="3.5" fill="#f59e0b"/>
<path d="M9 13 L13 5 L15 13 Z" fill="#10b981"/></svg>
"""


@dataclass(frozen=True)
class BookReport:
    """What a build made: the site folder, its edition, lessons, measured runs, experiments, warnings."""

    out: Path
    edition: str
    lessons: tuple[str, ...]
    measurements: dict[str, RunMeasurement]
    experiments: tuple[str, ...]
    warnings_file: Path
    warning_count: int


def check_docs_dependencies() -> None:
    """Raise ``ImportError`` with the install command if a package of the ``docs`` extra is missing."""
    missing = [name for name in DOCS_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"{DOCS_EXTRA_HINT} (missing: {', '.join(missing)})")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SITE_MARKER).exists())):
        raise ValueError(f"out: expected a new folder or a site built by segan book, got {str(out)!r}, "
                         "which holds other files (they would be replaced)")


def _say(message: str) -> None:
    print(message, flush=True)


def _execute_all(jobs_list: list[tuple[Path, Path]], jobs: int,
                 cell_timeout: int = CELL_TIMEOUT_S) -> dict[str, RunMeasurement]:
    """Execute each (source, target) notebook, ``jobs`` kernels at a time, with a progress bar
    and one line per finished lesson."""
    measurements = {}
    with tqdm(total=len(jobs_list), desc="executing lessons (quick mode)", unit="notebook") as bar:
        def finished(name: str, facts: dict) -> None:
            measurements[name] = run = RunMeasurement(**facts)
            bar.write(f"  {name}: {format_seconds(run.seconds)}, peak RAM {format_bytes(run.max_rss_bytes)}")
            bar.update()

        if jobs == 1:
            for source, target in jobs_list:
                bar.set_postfix_str(source.stem)
                finished(source.stem, execute_lesson_job(str(source), str(target), cell_timeout))
        else:  # separate processes, each driving one kernel
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(execute_lesson_job, str(s), str(t), cell_timeout): s.stem for s, t in jobs_list}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    return measurements


def _run_sphinx(src: Path, html: Path, doctrees: Path, warnings_file: Path, jobs: int, edition: str) -> int:
    """``python -m sphinx`` in a subprocess; returns the number of warnings, raises ``BookError`` on failure.

    Settings that depend on the build are passed with ``-D``: the icon, the repository link and,
    in the teacher edition, the banner on every page.
    """
    favicon = doctrees.parent / "favicon.svg"
    favicon.write_text(FAVICON_SVG, encoding="utf-8")
    settings = {"html_favicon": favicon, "html_theme_options.repository_url": repository_url(),
                "html_theme_options.use_repository_button": "true"}
    if edition != STUDENT:
        settings["html_theme_options.announcement"] = TEACHER_BANNER
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-j", str(jobs), "-c", str(CONF_DIR),
               "-d", str(doctrees), "-w", str(warnings_file)]
    command += [argument for name, value in settings.items() for argument in ("-D", f"{name}={value}")]
    command += [str(src), str(html)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BookError(f"sphinx-build failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return sum(1 for line in warnings_file.read_text(encoding="utf-8").splitlines() if "WARNING" in line)


def _replace_folder(new: Path, out: Path) -> None:
    """Put the built site ``new`` at ``out`` (an old site there is removed first)."""
    (new / SITE_MARKER).write_text("built by segan book; this folder is replaced by the next build\n")
    if out.exists():
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old)
    else:
        os.replace(new, out)


def build_book(out: str | Path, *, notebooks_dir: str | Path | None = None, only: Sequence[str] | None = None,
               execute: bool = True, jobs: int = 1, build_dir: str | Path = "build/book",
               results_dir: str | Path | None = None, cell_timeout: int = CELL_TIMEOUT_S,
               edition: str = STUDENT) -> BookReport:
    """Build the course website into ``out`` (see the module docstring); returns what was built.

    ``edition``: ``"student"`` (default: no solution and no hidden test anywhere in the site) or
    ``"teacher"`` (the solved notebooks, hidden tests included).
    ``only``: starts of lesson names (``["02", "03"]``), as ``segan assignments --only``; the
    course map still lists every lesson. ``results_dir``: pinned results (default
    ``<notebooks>/results``; absent is fine). ``cell_timeout``: seconds one cell may run.
    Raises ``ImportError`` without the docs extra, ``ValueError`` for bad arguments,
    ``BookError`` if a lesson or Sphinx fails.
    """
    check_docs_dependencies()
    check_edition(edition)
    for name, value in (("jobs", jobs), ("cell_timeout", cell_timeout)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    out = check_writable_dir(Path(out).resolve(), "out")
    build_dir = check_writable_dir(Path(build_dir).resolve(), "build_dir")
    _check_out(out)
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    every = course_notebooks(folder)
    chosen = course_notebooks(folder, only)
    lessons: list[Lesson] = [read_lesson(path, order) for order, path in enumerate(every, start=1)]
    experiments = find_experiments(results_dir if results_dir is not None else folder / "results")
    src = build_dir / "src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "lessons").mkdir(parents=True)

    started = time.perf_counter()
    _say(f"[1/4] student releases of {len(chosen)} lesson(s) with nbgrader")
    make_release(build_dir / "course", folder, only=[path.stem for path in chosen], force=True)
    releases = {path.stem: build_dir / "course" / "release" / path.stem / path.name for path in chosen}
    for path in chosen:
        copies = {"release": releases[path.stem]} if edition == STUDENT else {"source": path,
                                                                              "release": releases[path.stem]}
        for kind, copy in copies.items():
            (src / "downloads" / kind).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(copy, src / "downloads" / kind / path.name)

    executed_dir = build_dir / "executed"
    if execute:
        _say(f"[2/4] executing {len(chosen)} lesson(s) in quick mode, {jobs} at a time")
        measurements = _execute_all([(path, executed_dir / path.name) for path in chosen], jobs, cell_timeout)
    else:
        _say("[2/4] not executing the lessons (--no-execute): pages without outputs")
        measurements = {}
    for path in chosen:
        notebook = nbformat.read(executed_dir / path.name if execute else path, as_version=4)
        if edition == STUDENT:
            try:
                notebook = with_release_sources(notebook, nbformat.read(releases[path.stem], as_version=4), path.stem)
            except ValueError as error:
                raise BookError(str(error)) from error
        page = prepare_page(notebook, path.stem, measurements.get(path.stem), execute, edition)
        write_notebook(page, src / "lessons" / path.name)

    _say(f"[3/4] pages ({edition} edition): course map, {len(chosen)} lesson(s), {len(experiments)} result page(s)")
    for experiment in experiments:
        (src / "results" / f"{experiment.name}.md").parent.mkdir(parents=True, exist_ok=True)
        (src / "results" / f"{experiment.name}.md").write_text(experiment_page(experiment, src / "results"),
                                                               encoding="utf-8")
    course_map = course_map_markdown(lessons, {path.stem for path in chosen}, measurements)
    (src / "index.md").write_text(index_page(course_map, [p.stem for p in chosen], [e.name for e in experiments],
                                             measurements, edition), encoding="utf-8")

    _say("[4/4] sphinx-build (html)")
    html = build_dir / "html"  # inside the build folder: MyST-NB writes jupyter_execute/ next to it
    shutil.rmtree(html, ignore_errors=True)
    warnings_file = build_dir / "sphinx-warnings.txt"
    warning_count = _run_sphinx(src, html, build_dir / "doctrees", warnings_file, jobs, edition)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.new{os.getpid()}")
    try:
        shutil.move(html, staging)  # a rename on one file system, else a copy
        _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(f"site in {out} ({time.perf_counter() - started:.0f} s); preview: python -m http.server -d {out}")
    if warning_count:
        _say(f"{warning_count} Sphinx warning(s): see {warnings_file}")
    return BookReport(out, edition, tuple(p.stem for p in chosen), measurements, tuple(e.name for e in experiments),
                      warnings_file, warning_count)
