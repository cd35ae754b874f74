"""What the home page says about each lesson: title, prerequisites, and the measured run.

A lesson is a course notebook. Its first markdown cell opens with the title (``# 02 · U-Net:
...``) and holds a paragraph that starts with ``**Prerequisites.**``; both are read from
there, so the course map never disagrees with the notebooks. The figures of a run (seconds,
peak memory) come from :mod:`segan_lib.book.execute` when the site was built with execution;
nothing on the map is a number typed by hand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

PREREQUISITES_MARK = "**Prerequisites.**"


@dataclass(frozen=True)
class Lesson:
    """One course notebook as the site shows it.

    ``name`` is the file stem (``03_losses``), ``order`` its position in the course (1-based),
    ``prerequisites`` the Markdown of its prerequisites paragraph without the mark.
    """

    name: str
    order: int
    title: str
    prerequisites: str


@dataclass(frozen=True)
class RunMeasurement:
    """One execution of a lesson while the site was built.

    ``seconds``: wall-clock time of all cells (kernel start excluded); ``max_rss_bytes``:
    peak resident memory of the notebook's kernel process (``getrusage``), None where the
    platform cannot tell; ``mode``: what ``segan_lib.course.mode()`` said in the kernel.
    """

    seconds: float
    max_rss_bytes: int | None
    mode: str
    torch_version: str | None


def _first_markdown(notebook: nbformat.NotebookNode) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            return cell.source
    return ""


def read_lesson(path: Path, order: int) -> Lesson:
    """The lesson in notebook ``path``: its ``# `` title and its prerequisites paragraph.

    Raises ``ValueError`` naming the notebook if its first markdown cell has no ``# `` title;
    a notebook without a prerequisites paragraph gets ``"none stated"``.
    """
    text = _first_markdown(nbformat.read(path, as_version=4))
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    if not title:
        raise ValueError(f"notebook {path.name}: expected its first markdown cell to start with a '# ' title, "
                         f"got {text[:80]!r}")
    prerequisites = "none stated"
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.strip().startswith(PREREQUISITES_MARK):
            prerequisites = " ".join(paragraph.strip()[len(PREREQUISITES_MARK):].split())
    return Lesson(path.stem, order, title, prerequisites)


def format_bytes(count: int | None) -> str:
    """``1.2 GB``-style text (powers of 1000, as RAM is sold), or ``"not measured"``."""
    if count is None:
        return "not measured"
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 1e3:.0f} kB"


def format_seconds(seconds: float) -> str:
    """``45 s`` or ``3 min 05 s``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


def _cell(text: str) -> list[str]:
    """One cell of a MyST list-table: first line after ``- ``, the rest indented under it."""
    lines = text.splitlines() or [""]
    return [f"  - {lines[0]}"] + [f"    {line}" for line in lines[1:]]


def quick_mode_cell(measurement: RunMeasurement | None) -> str:
    """What the map says about quick mode: the measured run, or that none was made in this build."""
    if measurement is None:
        return "not run in this build"
    if measurement.mode != "quick":
        return f"ran in {measurement.mode} mode in this build"
    return f"**{format_seconds(measurement.seconds)}**, {format_bytes(measurement.max_rss_bytes)} RAM"


FULL_MODE_TEXT = "not measured yet"
MAP_NOTE = ("Quick mode: measured while this site was built (time of all cells; peak RAM of the lesson's "
            "Python kernel). Full mode needs a CUDA GPU; its time and memory have not been measured yet "
            "(see *Quick mode and full mode* below).")


def course_map_markdown(lessons: list[Lesson], built: set[str],
                        measurements: dict[str, RunMeasurement]) -> str:
    """The course map as a MyST list-table: order, lesson (a link if built), prerequisites, both modes.

    ``built``: names of the lessons that have a page in this site (the others are listed
    without a link); ``measurements``: name -> the run measured while building.
    """
    rows = ["```{list-table}", ":header-rows: 1", ":class: course-map", ":widths: 4 32 40 14 10", "",
            "* - \\#", "  - Lesson", "  - Prerequisites", "  - Quick mode (CPU)", "  - Full mode (GPU)"]
    for lesson in lessons:
        link = f"{{doc}}`{lesson.title} <lessons/{lesson.name}>`" if lesson.name in built else (
            f"{lesson.title} (not in this build)")
        rows += [f"* - {lesson.order}"] + _cell(link) + _cell(lesson.prerequisites)
        rows += _cell(quick_mode_cell(measurements.get(lesson.name))) + _cell(FULL_MODE_TEXT)
    rows.append("```")
    return "\n".join(rows) + "\n\n" + MAP_NOTE
