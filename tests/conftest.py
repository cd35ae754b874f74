"""Shared test settings: a headless matplotlib and quick mode everywhere, and no figure left open.

Notebook kernels started by nbval inherit this environment, so they run in quick mode too.
The tiny datasets, networks and trainers that several test files build are in ``builders.py``.
"""
import os
import sys

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["SEGAN_QUICK"] = "1"


@pytest.fixture(autouse=True)
def close_figures():
    """After each test, close the pyplot figures it opened (if it used pyplot at all)."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")
