"""The home page of the course website: what the course is, its edition, the course map, the
hardware of each mode; and the repository the site links to."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from segan_lib.book.edition import STUDENT, TEACHER
from segan_lib.book.lessons import RunMeasurement, format_bytes

# The repository, as pyproject.toml's [project.urls] names it; used when that file is not at hand
# (segan_lib installed from a wheel).
REPOSITORY_URL = "https://github.com/segan-course/segan-course"

INTRO = """\
# Adversarial networks for semantic segmentation

A hands-on course in PyTorch: ordered Jupyter notebooks on generative adversarial networks and
how they train segmentation networks, each importing `segan_lib`, a small tested library
(models, losses, metrics, data, one training engine). Every formula a lesson states is checked
numerically in a cell; every claim about a paper names the paper.

Each lesson page below shows the notebook with its outputs. To run a lesson, download it from
the box at the top of its page and open it in JupyterLab with the course installed
(`pip install -e ".[dev]"` from [the repository]({repository}); see its README).

{edition}
"""

EDITION_NOTES = {
    STUDENT: """```{admonition} Student edition
:class: note site-edition
The exercises appear as you get them (the nbgrader student release made by
`segan assignments`): write your own code where a cell says `# YOUR CODE HERE`. No solution is
published on this site.
```""",
    TEACHER: """```{admonition} Teacher edition
:class: warning site-edition
Every lesson shows its exercises solved, with the hidden tests nbgrader grades with, and links
both the solved notebook and the student release. Do not publish this site to students:
`segan book` builds the student edition by default.
```""",
}

MODES = """\
## Quick mode and full mode

Every lesson picks its sizes from `segan_lib.course.mode()`: **quick** without a CUDA GPU (or
whenever `SEGAN_QUICK=1` is set), **full** on a CUDA GPU. The hyper-parameters sit in a visible
cell with both values, e.g. `EPOCHS = {{"quick": 2, "full": 40}}[MODE]`.

| | quick mode | full mode |
|---|---|---|
| hardware | any CPU, no GPU | one CUDA GPU |
| time per lesson | measured in this build: see the course map (the course aims at a minute or two on a 2-core CPU) | not measured yet |
| RAM | measured in this build: {ram} at most (peak of one lesson's kernel) | not measured yet |
| GPU memory | none | not measured yet; the course's target is under 16 GB per lesson (an estimate, not a measurement) |

**Measured** means: read while this site was built, on {machine}. Lessons that were not
executed in this build have no measured figures. Quick-mode outputs are a demonstration (small
images, short runs), not a result.
"""


def machine_description() -> str:
    """``"a Linux machine with 2 CPU cores and 24.0 GB of RAM, 15-minute load average 0.3 ..."``:
    the machine running the build, and how busy it was (a load above the core count means
    other work shared the CPUs, so the measured times are longer than on an idle machine)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = f" and {format_bytes(ram)} of RAM"
    except (ValueError, OSError, AttributeError):  # sysconf names are POSIX only
        memory = ""
    text = f"a {platform.system() or 'computer'} machine with {os.cpu_count()} CPU cores{memory}"
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[2]
        text += (f", whose 15-minute load average was {load:.1f} when the pages were written (above "
                 f"{os.cpu_count()}, other work shared its CPUs and the times are longer than on an idle machine)")
    return text


def repository_url(pyproject: Path | None = None) -> str:
    """The ``Repository`` entry of ``[project.urls]`` in the checkout's ``pyproject.toml``, else
    :data:`REPOSITORY_URL` (a wheel install has no pyproject.toml; Python 3.10 has no tomllib)."""
    path = pyproject or Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        with open(path, "rb") as file:
            project = tomllib.load(file).get("project", {})
    except (ImportError, OSError, ValueError):  # tomllib.TOMLDecodeError is a ValueError
        return REPOSITORY_URL
    if project.get("name") != "segan-course":  # some other project's file
        return REPOSITORY_URL
    return project.get("urls", {}).get("Repository", REPOSITORY_URL)


def index_page(course_map: str, built: list[str], experiments: list[str],
               measurements: dict[str, RunMeasurement], edition: str = STUDENT) -> str:
    """MyST Markdown of ``index.md``: intro and edition, course map, modes and hardware, and the site's toctrees."""
    peaks = [m.max_rss_bytes for m in measurements.values() if m.max_rss_bytes is not None]
    ram = format_bytes(max(peaks)) if peaks else "not measured (no lesson executed)"
    intro = INTRO.format(repository=repository_url(), edition=EDITION_NOTES[edition])
    parts = [intro, "## Course map",
             "The lessons in order. Each builds on the ones named under *prerequisites*.",
             course_map, MODES.format(ram=ram, machine=machine_description())]
    if experiments:
        parts.append("## Reference results\n\nExperiments run at their reference preset and committed with the "
                     "course (`notebooks/results/`); each page shows the recorded tables and figures:\n\n"
                     + "\n".join(f"* {{doc}}`{name} <results/{name}>`" for name in experiments))
    else:
        parts.append("## Reference results\n\nNo pinned reference results are committed yet (`notebooks/results/`).")
    toctrees = ["```{toctree}\n:caption: Lessons\n:hidden:\n\n" + "\n".join(f"lessons/{n}" for n in built) + "\n```"]
    if experiments:
        toctrees.append("```{toctree}\n:caption: Reference results\n:hidden:\n\n"
                        + "\n".join(f"results/{n}" for n in experiments) + "\n```")
    return "\n\n".join(parts + toctrees) + "\n"
