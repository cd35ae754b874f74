"""Quick and full mode for the notebooks.

``mode()`` is ``"quick"`` on a machine without CUDA, when ``SEGAN_QUICK`` asks for it, and
when nbgrader executes the notebook (``NBGRADER_EXECUTION`` set) unless ``SEGAN_QUICK=0``;
else ``"full"``. A notebook starts with :func:`setup` and shows both values of each
hyper-parameter in a visible cell::

    MODE = course.setup(seed=0)
    EPOCHS = {"quick": 2, "full": 40}[MODE]

PyTorch uses all CPU cores unless ``SEGAN_THREADS=N`` pins it to ``N`` threads (the test
suite sets 1, so parallel test workers and notebook kernels do not fight over cores).
"""
from __future__ import annotations

import os

import torch

QUICK_ENV = "SEGAN_QUICK"
GRADING_ENV = "NBGRADER_EXECUTION"  # set by nbgrader while it executes a notebook (autograde, validate)
THREADS_ENV = "SEGAN_THREADS"


def mode() -> str:
    """``"quick"`` or ``"full"``, by these rules in order:

    1. no CUDA: ``"quick"`` (the full experiments need a GPU);
    2. ``SEGAN_QUICK`` set to anything but ``""``: ``"full"`` if it is ``"0"``, else ``"quick"``;
    3. ``NBGRADER_EXECUTION`` set (nbgrader is grading): ``"quick"``, so autograding on a GPU
       machine does not start the full experiments by surprise;
    4. otherwise ``"full"``.
    """
    if not torch.cuda.is_available():
        return "quick"
    quick = os.environ.get(QUICK_ENV, "")
    if quick != "":
        return "full" if quick == "0" else "quick"
    return "quick" if os.environ.get(GRADING_ENV, "") != "" else "full"


def device() -> torch.device:
    """The device the notebooks train on: CUDA in full mode, else the CPU."""
    return torch.device("cuda" if mode() == "full" else "cpu")


def threads_from_env() -> int | None:
    """The PyTorch CPU thread count ``SEGAN_THREADS`` asks for, or ``None`` when it is unset or ``""``.

    Raises ``ValueError`` naming ``SEGAN_THREADS`` if it is not a positive integer.
    """
    text = os.environ.get(THREADS_ENV, "").strip()
    if text == "":
        return None
    if not text.isdigit() or int(text) == 0:
        raise ValueError(f"{THREADS_ENV} must be a positive integer (CPU threads for PyTorch), got {text!r}")
    return int(text)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a re-run gives the same numbers.

    NumPy takes ``seed % 2**32`` (its seeds are 32-bit); Python and PyTorch take ``seed``.
    """
    import random

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(seed: int = 0) -> str:
    """Start a lesson: pick the mode, pin PyTorch to ``SEGAN_THREADS`` CPU threads if that is
    set (else leave PyTorch's choice, all cores), seed every RNG with ``seed``; returns the
    mode (``"quick"`` or ``"full"``).

    The thread count changes the order of floating-point sums, so the last digits of a
    result may differ between machines; ``SEGAN_THREADS=1`` repeats a run exactly.
    """
    chosen = mode()
    threads = threads_from_env()
    if threads is not None:
        torch.set_num_threads(threads)
    seed_everything(seed)
    return chosen
