"""Shared test settings: a headless matplotlib, quick mode and one PyTorch thread everywhere,
and no figure left open.

The suite runs in two pytest-xdist workers (``-n 2`` in pyproject.toml), one per core of a
2-core machine, so each worker, and everything it starts, uses one PyTorch thread
(``SEGAN_THREADS=1``, read by ``course.setup()`` and the ``segan`` command; a value set
before pytest starts is kept). Notebook kernels started by nbval, nbgrader and JupyterLab
inherit this environment, so they run in quick mode on one thread too.
The tiny datasets, networks and trainers that several test files build are in ``builders.py``.
"""
import os
import sys

import pytest
import torch

from segan_lib import course

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["SEGAN_QUICK"] = "1"
os.environ.setdefault("SEGAN_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", os.environ["SEGAN_THREADS"])  # subprocesses that never call setup()
torch.set_num_threads(course.threads_from_env())


@pytest.fixture(autouse=True)
def close_figures():
    """After each test, close the pyplot figures it opened (if it used pyplot at all)."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


# The longest scopes start first, so that on two workers no long module is left for the end
# while the other worker idles (longest-processing-time-first). Each is kept whole on one worker
# by --dist loadscope; --no-loadscope-reorder (pyproject.toml) makes pytest-xdist hand them out
# in this order rather than by their number of tests. In brackets: seconds measured on the
# idle 2-core machine, two workers. Modules not listed follow, in collection order.
LONGEST_FIRST = (
    "tests/test_cli.py",                          # [130] segan train --quick
    "tests/test_assignments.py",                  # [115] nbgrader grades two notebooks, two kernels
    "tests/test_book_site.py",                    # [85] the website executes lesson 03
    "notebooks/02_unet.ipynb",                    # [73] the notebooks under nbval
    "notebooks/05_semi_supervised.ipynb",         # [66]
    "notebooks/03_losses.ipynb",                  # [66]
    "notebooks/01_gan_basics.ipynb",              # [63]
    "tests/test_experiments.py",                  # [50] segan experiment adversarial --preset quick
    "notebooks/04_adversarial_segmentation.ipynb",  # [30] (alone, -n 0, on the busy machine)
    "tests/test_distributed.py",                  # [29] torchrun, two processes
    "tests/test_browser.py",                      # [29] JupyterLab in Chromium
    "tests/test_book_editions.py",                # [30] a student and a teacher site, not executed
    "tests/test_checkpoint.py",                   # [20]
    "notebooks/06_does_it_help.ipynb",            # [17] (alone, -n 0, on the busy machine)
    "tests/test_semi_engine.py",                  # [17]
    "tests/test_tensorboard.py",                  # [15]
    "tests/test_segan_hybrid.py",                 # [15]
)


def pytest_collection_modifyitems(config, items):
    """Stable reorder of ``items``: those under :data:`LONGEST_FIRST` first, in that order."""
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)
