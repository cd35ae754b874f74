"""Quick and full mode for the notebooks.

``mode()`` is ``"full"`` when CUDA is available and ``SEGAN_QUICK`` is unset, else
``"quick"``. Notebooks show both values of each hyper-parameter in a visible cell::

    MODE = course.mode()
    EPOCHS = {"quick": 2, "full": 40}[MODE]
"""
from __future__ import annotations

import os

import torch

QUICK_ENV = "SEGAN_QUICK"


def mode() -> str:
    """``"full"`` on a CUDA machine unless ``SEGAN_QUICK`` is set (to anything but ``""``/``"0"``)."""
    quick_requested = os.environ.get(QUICK_ENV, "") not in ("", "0")
    return "full" if torch.cuda.is_available() and not quick_requested else "quick"


def device() -> torch.device:
    """The device the notebooks train on: CUDA in full mode, else the CPU."""
    return torch.device("cuda" if mode() == "full" else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a re-run gives the same numbers."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
