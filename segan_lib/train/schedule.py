"""The learning-rate schedule every method can follow: a cosine from the base rate down to 0.

``lr_t = lr * (1 + cos(pi * min(t, T) / T)) / 2`` at step ``t`` of ``T`` (Loshchilov & Hutter,
SGDR, ICLR 2017, without restarts). A function of the step only, so a resumed run follows the
same schedule as an unbroken one. Each strategy sets every optimiser's rate at the top of its
``train_step`` (``cosine_steps=None`` keeps the base rate), so a supervised baseline and an
adversarial arm with the same ``cosine_steps`` give their segmentors the same rates.
"""
from __future__ import annotations

import math

import torch

from segan_lib._checks import check_positive


def check_cosine_steps(cosine_steps: int | None) -> None:
    """``ValueError`` unless ``cosine_steps`` is None or a positive number of steps."""
    if cosine_steps is not None:
        check_positive("cosine_steps", cosine_steps)


def cosine_rate(lr: float, step: int, cosine_steps: int | None) -> float:
    """``lr_t`` of step ``step`` (see the module docstring); ``lr`` itself when ``cosine_steps`` is None."""
    if cosine_steps is None:
        return lr
    return lr * (1 + math.cos(math.pi * min(step, cosine_steps) / cosine_steps)) / 2


def set_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group of ``optimizer`` the rate ``lr`` for its next step."""
    for group in optimizer.param_groups:
        group["lr"] = lr
