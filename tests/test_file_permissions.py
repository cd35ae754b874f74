"""Files segan writes are readable by whoever may read the user's other files: their mode is
``0o666`` less the umask (``0o644`` under the usual ``022``, ``0o600`` under ``077``), as for a
file ``open(path, "w")`` creates, although each is written atomically through a temporary file
(which ``tempfile.mkstemp`` would create as ``0o600``). Checked for every kind of file a user
shares on a course machine: masks and overlays, checkpoints, an experiment's files, exported data.
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builders import tiny_net
from segan_lib._files import write_atomic
from segan_lib.data.export import export_synthshapes
from segan_lib.experiments.results import write_json
from segan_lib.models import UNet
from segan_lib.predict import predict_files
from segan_lib.train import SupervisedStrategy
from segan_lib.train.checkpoint import save_checkpoint

UMASKS = pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)], ids=["022", "077"])


@contextlib.contextmanager
def umask_set_to(value: int) -> Iterator[None]:
    """The process's umask set to ``value`` for the block (each test worker is its own process)."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    """Relative path -> permission bits of every file under ``folder``."""
    return {str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@UMASKS
def test_masks_and_overlays(tmp_path, umask, mode):
    unet = {"name": "unet", "in_channels": 3, "num_classes": 3, "base_channels": 4, "depth": 1, "batch_norm": False}
    strategy = SupervisedStrategy(UNet(3, 3, base_channels=4, depth=1), lambda logits, masks: logits.sum(), lr=1e-3)
    meta = {"model": unet, "preprocess": {"size": [16, 16], "in_channels": 3, "normalize": "per_image"}}
    checkpoint = save_checkpoint(tmp_path / "run" / "last.pt", strategy, step=0, epoch=0, meta=meta)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    with umask_set_to(umask):
        predict_files(checkpoint, [tmp_path / "a.png"], tmp_path / "out", overlay=True, device="cpu", progress=False)
    assert modes(tmp_path / "out") == {"a.png": mode, "a_overlay.png": mode}


@UMASKS
def test_checkpoints(tmp_path, umask, mode):
    strategy = SupervisedStrategy(tiny_net(), lambda logits, masks: logits.sum(), lr=1e-3)
    with umask_set_to(umask):
        save_checkpoint(tmp_path / "last.pt", strategy, step=1, epoch=0)
        save_checkpoint(tmp_path / "last.pt", strategy, step=2, epoch=0)  # replacing an existing one
    assert modes(tmp_path) == {"last.pt": mode}


@UMASKS
def test_experiment_files(tmp_path, umask, mode):
    """What the experiment runner writes: results.json and runs/<arm>/seed<s>.json through
    ``write_json``, the predicted labels (.npz) and the figures (.png) through ``write_atomic``."""
    with umask_set_to(umask):
        write_json(tmp_path / "results.json", {"schema": 1})
        write_json(tmp_path / "runs" / "ce" / "seed0.json", {"steps": 4})
        write_atomic(tmp_path / "runs" / "ce" / "seed0.npz", b"labels")
        write_atomic(tmp_path / "curves.png", lambda handle: handle.write(b"png"))
    assert modes(tmp_path) == dict.fromkeys(["curves.png", "results.json", "runs/ce/seed0.json",
                                             "runs/ce/seed0.npz"], mode)


@UMASKS
def test_exported_data(tmp_path, umask, mode):
    with umask_set_to(umask):
        export_synthshapes(tmp_path, 2, size=16)
    assert modes(tmp_path) == dict.fromkeys(["classes.txt", "images/0000.png", "images/0001.png",
                                             "masks/0000.png", "masks/0001.png"], mode)

