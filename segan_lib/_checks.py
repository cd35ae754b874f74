"""Input validation shared by losses, metrics, models and the training engine.

Every check raises ``ValueError`` naming the argument, what was expected and what was
received, so that bad input never crashes deep inside PyTorch.

Shape and dtype checks are free. Value checks (finite logits, labels in range) read a
value back to the host, which stalls a GPU pipeline; the training engine turns them off
inside its CUDA hot path with :func:`value_checks` and checks its losses itself at each
logging interval instead. Non-finite values raise :class:`NonFiniteError`, a ``ValueError``
the engine tells apart from bad arguments: during training it means the run diverged.
"""
from __future__ import annotations

import contextlib
import numbers
import threading
from collections.abc import Iterator

import torch

_state = threading.local()


def value_checks_enabled() -> bool:
    """Whether checks that need a host sync (NaN, label range) are on; default True."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Turn value checks on or off inside a ``with`` block (thread-local)."""
    previous = value_checks_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = previous


class NonFiniteError(ValueError):
    """A tensor that must be finite holds NaN or infinite values (e.g. logits of a diverged model).

    Still a ``ValueError``, so code catching bad input keeps working; the training engine
    catches this subclass alone and ends the run with ``TrainingDiverged``. ``name`` is the
    checked argument, ``count`` the number of NaN/inf values.
    """

    def __init__(self, message: str, *, name: str, count: int) -> None:
        super().__init__(message)
        self.name = name
        self.count = count


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:120]


def check_tensor(name: str, x: object) -> torch.Tensor:
    """``x`` itself if it is a ``torch.Tensor``; else ``ValueError`` naming ``name`` and what ``x`` is."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    return x


def check_image(name: str, x: object, channels: int | None = None) -> torch.Tensor:
    """An image batch: floating point ``(B, C, H, W)``."""
    x = check_tensor(name, x)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {_describe(x)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {_describe(x)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (dim 1), got {_describe(x)}")
    return x


def check_logits(name: str, logits: object) -> torch.Tensor:
    """Segmentor output: floating point ``(B, K, H, W)`` logits; when value checks are on,
    NaN or infinite entries raise :class:`NonFiniteError` (a ``ValueError``)."""
    logits = check_image(name, logits)
    if value_checks_enabled() and not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).sum())
        raise NonFiniteError(
            f"{name} holds {bad} NaN or infinite values (of {logits.numel()}); "
            "the model diverged or its input was not finite",
            name=name, count=bad,
        )
    return logits


def check_mask(
    name: str, mask: object, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """A label mask: int64 ``(B, H, W)`` class indices in ``[0, num_classes)`` or ``ignore_index``.

    ``num_classes`` is the number of classes the labels may name (2 for a binary mask,
    even when the segmentor has a single sigmoid output).
    """
    mask = check_tensor(name, mask)
    if mask.dim() != 3:
        raise ValueError(f"{name} must have shape (B, H, W) of class indices, got {_describe(mask)}")
    if mask.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 (torch.long) tensor of class indices, got {_describe(mask)}")
    if value_checks_enabled() and mask.numel() > 0:
        valid = (mask >= 0) & (mask < num_classes)
        if ignore_index is not None:
            valid |= mask == ignore_index
        if not bool(valid.all()):
            bad = torch.unique(mask[~valid])[:8].tolist()
            allowed = f"0..{num_classes - 1}" + (f" or {ignore_index} (ignore)" if ignore_index is not None else "")
            raise ValueError(f"{name} holds label values {bad} outside {allowed}")
    return mask


def check_pair(logits_name: str, logits: torch.Tensor, mask_name: str, mask: torch.Tensor) -> None:
    """Logits ``(B, K, H, W)`` and mask ``(B, H, W)`` must agree in batch and spatial size."""
    if logits.shape[0] != mask.shape[0] or logits.shape[2:] != mask.shape[1:]:
        raise ValueError(
            f"{logits_name} {tuple(logits.shape)} and {mask_name} {tuple(mask.shape)} disagree: "
            f"expected {mask_name} of shape ({logits.shape[0]}, {logits.shape[2]}, {logits.shape[3]})"
        )


def check_positive(name: str, value: float | int, *, allow_zero: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a real number (not a bool) > 0, or >= 0
    with ``allow_zero``; NaN fails both."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_choice(name: str, value: object, choices: tuple) -> None:
    """``ValueError`` naming ``name`` and the allowed ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
