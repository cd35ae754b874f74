"""Run a lesson notebook in quick mode and turn it into the page the site shows.

:func:`execute_lesson` runs every cell with nbclient in a fresh kernel (``SEGAN_QUICK=1``, the
notebooks folder as working directory, as nbval runs them), then asks the same kernel for its
peak memory, so the course map states measured figures. A failing cell stops the build: the
site never shows a traceback.

:func:`prepare_page` makes the executed notebook fit a static page:

* the course's widgets (loss explorer, snapshot scrubber) carry a PNG copy of their picture
  (``segan_lib.widgets.PngFallback``); the page keeps that picture, drops the widget view
  (it would need JavaScript from a CDN) and adds a note that the widget is live in JupyterLab;
* other widget outputs (tqdm's notebook progress bars) have no picture and are dropped;
* nbval's marker lines (``# NBVAL_CHECK_OUTPUT``) are taken out of the cells shown;
* a box under the introduction links the lesson's downloads: the nbgrader student release,
  and in the teacher edition the solved notebook too (:mod:`segan_lib.book.edition`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat

from segan_lib.book.edition import STUDENT, check_edition, without_nbval_markers
from segan_lib.book.lessons import RunMeasurement, format_bytes, format_seconds

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Seconds one cell may run: a quick-mode cell takes well under a minute on an idle 2-core CPU,
# but several times longer on a busy one, so the limit only catches a cell that hangs.
CELL_TIMEOUT_S = 1800
# Run in the lesson's kernel after its last cell: peak RSS of the kernel process (ru_maxrss is
# in kB on Linux, in bytes on macOS) and the mode the notebook chose.
MEASURE_SOURCE = """\
import json as _json, sys as _sys
try:
    import resource as _resource
    _rss = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * (1 if _sys.platform == "darwin" else 1024)
except ImportError:
    _rss = None
_course = _sys.modules.get("segan_lib.course")
_torch = _sys.modules.get("torch")
print(_json.dumps({"max_rss_bytes": _rss, "mode": _course.mode() if _course else "unknown",
                   "torch_version": getattr(_torch, "__version__", None)}))
"""
WIDGET_NOTE = """\
```{note}
:class: widget-fallback
Above: the picture of an interactive widget. It is **live in JupyterLab**: run this notebook
there (download it from the box at the top of the page) and its sliders redraw the picture.
```"""


class BookError(RuntimeError):
    """A step of building the site failed; the message says which lesson or tool, and why."""


def kernel_environment() -> dict[str, str]:
    """The lesson kernels' environment: this one, in quick mode, with matplotlib's inline backend."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env["SEGAN_QUICK"] = "1"
    return env


def execute_lesson(source: str | Path, target: str | Path, cell_timeout: int = CELL_TIMEOUT_S) -> RunMeasurement:
    """Run every cell of notebook ``source`` in quick mode; write the executed notebook to ``target``.

    The kernel starts in ``source``'s folder. Returns the measured run; raises ``BookError``
    with the failing cell's traceback if a cell raises or runs past ``cell_timeout`` seconds.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    source, target = Path(source), Path(target)
    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(source.parent)}})
    probe = nbformat.v4.new_code_cell(MEASURE_SOURCE)
    try:
        with client.setup_kernel(env=kernel_environment()):
            started = time.perf_counter()
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            seconds = time.perf_counter() - started
            notebook.cells.append(probe)  # nbclient stores each executed cell back into the notebook
            client.execute_cell(probe, len(notebook.cells) - 1)
            notebook.cells.pop()
    except (CellExecutionError, CellTimeoutError) as error:
        raise BookError(f"{source.name}: a cell failed in quick mode, so the site is not built:\n{error}") from error
    text = "".join(output.get("text", "") for output in probe.outputs if output.output_type == "stream")
    facts = json.loads(text.strip().splitlines()[-1])
    write_notebook(notebook, target)
    return RunMeasurement(seconds, facts["max_rss_bytes"], facts["mode"], facts["torch_version"])


def execute_lesson_job(source: str, target: str, cell_timeout: int = CELL_TIMEOUT_S) -> dict:
    """:func:`execute_lesson` for a worker process: plain arguments in, a plain dict out."""
    return execute_lesson(source, target, cell_timeout).__dict__


def write_notebook(notebook: nbformat.NotebookNode, target: Path) -> None:
    """Write ``notebook`` to ``target`` through a temporary file, so no half-written file is left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    nbformat.write(notebook, temporary)
    os.replace(temporary, target)


def _markdown_cell(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def downloads_box(name: str, measurement: RunMeasurement | None, executed: bool, edition: str = STUDENT) -> str:
    """The box under a lesson's introduction: its downloads, and how its outputs were made."""
    if not executed:
        ran = "This page was built without running the notebook, so it shows no outputs."
    else:
        ran = "The outputs on this page come from running the notebook in **quick mode** (`SEGAN_QUICK=1`)"
        if measurement is not None:
            ran += (f": {format_seconds(measurement.seconds)}, peak RAM {format_bytes(measurement.max_rss_bytes)}, "
                    f"on the machine that built this site")
        ran += ". On a GPU, full mode trains larger models for longer."
    if edition == STUDENT:
        downloads = [f"* {{download}}`Lesson notebook <../downloads/release/{name}.ipynb>`: this lesson with its"
                     " exercises to solve (the nbgrader student release: write your code where it says"
                     " `# YOUR CODE HERE`, then run the test cell below it); open it in JupyterLab with the course"
                     " installed."]
        if executed:
            ran += " The exercises and their tests show no outputs here: those come from your own solution."
    else:
        downloads = [f"* {{download}}`Notebook source <../downloads/source/{name}.ipynb>`: this lesson as shown"
                     " here, exercises solved; open it in JupyterLab with the course installed.",
                     f"* {{download}}`Student release <../downloads/release/{name}.ipynb>`: the nbgrader version made"
                     " by `segan assignments`, solutions replaced by `raise NotImplementedError()`, graded tests"
                     " locked."]
    lines = ["```{admonition} Run this lesson yourself", ":class: tip lesson-downloads", *downloads]
    return "\n".join([*lines, "", ran, "```"])


def prepare_page(notebook: nbformat.NotebookNode, name: str, measurement: RunMeasurement | None,
                 executed: bool, edition: str = STUDENT) -> nbformat.NotebookNode:
    """The notebook as its page shows it (see the module docstring); ``notebook`` is not modified.

    In the student edition ``notebook`` already holds the release's sources
    (:func:`segan_lib.book.edition.with_release_sources`); ``edition`` picks the downloads.
    """
    check_edition(edition)
    page = nbformat.from_dict(json.loads(json.dumps(notebook)))  # a deep copy
    page.metadata.pop("widgets", None)
    cells = []
    for cell in page.cells:
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        cell.source = without_nbval_markers(cell.source)
        outputs, has_fallback = [], False
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME not in data:
                outputs.append(output)
            elif "image/png" in data:  # a course widget: keep its picture only
                output["data"] = {"image/png": data["image/png"]}
                outputs.append(output)
                has_fallback = True
        cell.outputs = outputs
        if has_fallback:
            cells.append(_markdown_cell(WIDGET_NOTE))
    first_markdown = next((index for index, cell in enumerate(cells) if cell.cell_type == "markdown"), -1)
    cells.insert(first_markdown + 1, _markdown_cell(downloads_box(name, measurement, executed, edition)))
    page.cells = cells
    return page

