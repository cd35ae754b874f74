"""Quick and full mode for the notebooks.

``mode()`` is ``"full"`` when CUDA is available and ``SEGAN_QUICK`` is unset, else
``"quick"``. A notebook starts with :func:`setup` and shows both values of each
hyper-parameter in a visible cell::

    MODE = course.setup(seed=0)
    EPOCHS = {"quick": 2, "full": 40}[MODE]
"""
from __future__ import annotations

import os

import torch

QUICK_ENV = "SEGAN_QUICK"
QUICK_THREADS = 1  # PyTorch CPU threads in quick mode (the lessons' numbers were measured so)


def mode() -> str:
    """``"full"`` on a CUDA machine unless ``SEGAN_QUICK`` is set (to anything but ``""``/``"0"``)."""
    quick_requested = os.environ.get(QUICK_ENV, "") not in ("", "0")
    return "full" if torch.cuda.is_available() and not quick_requested else "quick"


def device() -> torch.device:
    """The device the notebooks train on: CUDA in full mode, else the CPU."""
    return torch.device("cuda" if mode() == "full" else "cpu")


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
    """Start a lesson: pick the mode, use ``QUICK_THREADS`` CPU thread(s) in quick mode, seed
    every RNG with ``seed``; returns the mode (``"quick"`` or ``"full"``).

    Quick mode runs on one PyTorch thread because the numbers quoted in the lessons were
    measured that way (the thread count changes the order of floating-point sums, so the
    results), and because the small quick-mode models gain little from more threads while
    several threads per process slow each other down many times over on a shared CPU.
    """
    chosen = mode()
    if chosen == "quick":
        torch.set_num_threads(QUICK_THREADS)
    seed_everything(seed)
    return chosen
