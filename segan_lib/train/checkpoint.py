"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, dicts, lists,
tuples, numbers, strings, booleans, None), so it loads with ``torch.load(...,
weights_only=True)``, which cannot run code hidden in a file::

    {"format": "segan_lib.checkpoint", "version": 1,
     "strategy": {"nets": {name: state_dict}, "optimizers": {name: state_dict}},
     "step": int, "epoch": int,           # global steps done; epochs fully done
     "history": {key: list},              # History.to_dict()
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor] , "python": list, "numpy": list},
     "meta": {"method": str, ...},        # plain data to rebuild the model (segan eval)
     "train": {"batch_size": int, "seed": int, "steps_per_epoch": int, ...}}

Writes are atomic: the file is written to a temporary name in the same folder, flushed
to disk (``fsync``) and renamed over the old one (``os.replace``), so a run killed at any
moment leaves either the previous checkpoint or the new one, never half a file. Its mode
is ``0o666`` less the user's umask, as for any file the user creates.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from segan_lib._files import check_writable_dir, write_atomic  # noqa: F401 (check_writable_dir: its old home)

CHECKPOINT_FORMAT = "segan_lib.checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED_KEYS = ("strategy", "step", "epoch", "history", "rng", "meta", "train")
_PLAIN_TYPES = (bool, int, float, str, type(None), torch.Tensor)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, or for another method/model."""


def capture_rng_state() -> dict[str, object]:
    """The state of every random generator a training step may draw from.

    ``torch`` (CPU ByteTensor), ``cuda`` (one ByteTensor per visible GPU, ``[]`` without
    CUDA), ``python`` (``random.getstate()`` as a list) and ``numpy`` (the MT19937 state
    as a list), all plain data.
    """
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng_state(state: Mapping[str, object]) -> None:
    """Put back the generators saved by :func:`capture_rng_state` (CUDA ones where present)."""
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _check_plain(value: object, where: str) -> None:
    """Raise ``TypeError`` naming the key path of anything ``weights_only`` loading would refuse."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint key {where}[{key!r}] must be a str or int, got {type(key).__name__}")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN_TYPES):
        raise TypeError(
            f"checkpoint entry {where} is a {type(value).__name__}; store only tensors, dicts, lists, "
            "numbers, strings and None (weights_only loading refuses anything else)"
        )


def atomic_save(payload: Mapping[str, object], path: str | Path) -> Path:
    """``torch.save(payload, path)`` via a temporary file in the same folder, ``fsync`` and
    ``os.replace`` (:func:`segan_lib._files.write_atomic`): readers see the old file or the
    complete new one, never a partial one; the file's mode is ``0o666`` less the umask."""
    return write_atomic(path, lambda handle: torch.save(dict(payload), handle), durable=True)


def save_checkpoint(
    path: str | Path,
    strategy: object,
    *,
    step: int,
    epoch: int,
    history: Mapping[str, list] | None = None,
    meta: Mapping[str, object] | None = None,
    train: Mapping[str, object] | None = None,
) -> Path:
    """Write a checkpoint of ``strategy`` (nets + optimisers) after ``step`` steps, atomically.

    ``meta`` must be plain data (``meta["method"]`` defaults to ``strategy.name``); ``train``
    records the settings a resume must match (the engine passes batch size, seed, steps per
    epoch). The current RNG states are captured here. Returns the path written.
    """
    meta = {"method": strategy.name, **(meta or {})}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "strategy": strategy.state_dict(),
        "step": int(step),
        "epoch": int(epoch),
        "history": {k: list(v) for k, v in (history or {}).items()},
        "rng": capture_rng_state(),
        "meta": meta,
        "train": dict(train or {}),
    }
    _check_plain(payload, "checkpoint")
    return atomic_save(payload, path)


def load_checkpoint(
    path: str | Path, *, method: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, object]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises ``FileNotFoundError`` if ``path`` does not exist and :class:`CheckpointError`
    (a ``ValueError``) if it is truncated or corrupt, is not a segan_lib checkpoint (random
    bytes, another program's pickle: "PATH is not a readable segan checkpoint"), or was
    written by another method than ``method`` (when given). Every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" for another program's pickle
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on a bad file
        # Not torch's message: it ends with advice to load with weights_only=False, which would
        # run whatever code the file holds. The original error stays chained for debugging.
        raise CheckpointError(f"{path} is not a readable segan checkpoint (truncated, corrupt, or written by "
                              "another program)") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a readable segan checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload.get('version')!r}; this segan_lib reads "
            f"version {CHECKPOINT_VERSION}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}")
    upgrade_names(payload)
    stored_method = payload["meta"].get("method")
    if method is not None and stored_method != method:
        raise CheckpointError(
            f"checkpoint {path} was written by method {stored_method!r}, not {method!r}; only a "
            f"{stored_method} run can resume from it (segan train --method {stored_method}), while segan eval "
            "and segan predict take the method from the checkpoint"
        )
    return payload


# Names that changed in segan_lib since version-1 checkpoints were first written; loading
# renames them, so such a checkpoint evaluates and resumes like a new one.
RENAMED_MODEL_KEYS = {"n_classes": "num_classes"}  # meta["model"], the U-Net's arguments
RENAMED_GAN_LOGS = {"loss_d": "loss_discriminator", "loss_g": "loss_generator",  # history of method "gan"
                    "d_real_acc": "d_acc_real", "d_fake_acc": "d_acc_fake"}


def upgrade_names(payload: dict) -> None:
    """Rename, in place, the old names of :data:`RENAMED_MODEL_KEYS` and :data:`RENAMED_GAN_LOGS`."""
    model = payload["meta"].get("model")
    if isinstance(model, dict):
        payload["meta"]["model"] = {RENAMED_MODEL_KEYS.get(k, k): v for k, v in model.items()}
    if payload["meta"].get("method") == "gan":
        payload["history"] = {RENAMED_GAN_LOGS.get(k, k): v for k, v in payload["history"].items()}


def check_meta_matches(payload: Mapping[str, object], meta: Mapping[str, object], path: str | Path,
                       keys: tuple[str, ...] = ("method", "model", "num_classes", "in_channels")) -> None:
    """Raise :class:`CheckpointError` if ``payload["meta"]`` and ``meta`` disagree on ``keys``
    (a checkpoint of another model or label set cannot continue this run)."""
    stored = payload["meta"]
    for key in keys:
        if key in stored and key in meta and stored[key] != meta[key]:
            raise CheckpointError(
                f"checkpoint {path} was written for {key}={stored[key]!r}, this run has {key}={meta[key]!r}"
            )


def load_strategy_state(strategy: object, payload: Mapping[str, object], path: str | Path) -> None:
    """``strategy.load_state_dict(payload["strategy"])``, with errors that name ``path``."""
    try:
        strategy.load_state_dict(payload["strategy"])
    except (RuntimeError, ValueError, KeyError) as error:  # size mismatch, missing keys, missing nets
        raise CheckpointError(f"checkpoint {path} does not fit this {strategy.name} model: {error}") from error
