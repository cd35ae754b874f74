"""The contract between the one training engine and the methods that run on it.

A *strategy* owns the networks of one training method (a segmentor, maybe a critic or a
discriminator), their optimisers, and its ``train_step``. The engine owns everything else:
devices, seeds, bf16 autocast, channels_last, ``torch.compile``, DistributedDataParallel,
the loop, progress, evaluation, NaN stops and checkpoints, as Lightning's Trainer does. Each
method is one file named after it (``supervised.py``, ``segan.py``, ``hybrid.py``,
``gan.py``) whose ``train_step`` reads top to bottom; :class:`Strategy` is only the shape
the engine expects, with no step logic of its own.

Engine to strategy, in order:
1. ``strategy.nets`` (an ``nn.ModuleDict``; key ``"segmentor"`` for segmentation methods)
   is moved to the device (and to channels_last on CUDA).
2. ``strategy.configure_optimizers()`` builds ``strategy.optimizers`` (a dict name -> optimiser).
3. Under DDP the engine replaces each entry of ``strategy.nets`` by its DDP wrapper, then by
   its compiled wrapper; ``strategy.unwrapped(name)`` always gives the bare module.
4. Once, on the first batch of a run: ``strategy.check_batch(images, masks)``, the checks
   that need a batch (image size against the networks). Nothing is checked in the step.
5. Each step: ``logs = strategy.train_step(images, masks, step)``. The strategy runs its
   forward passes inside ``with self.autocast():``, calls backward and steps its
   optimisers itself, in the order the method prescribes. It returns detached 0-d tensors
   (never ``.item()``: no host sync per step); the engine averages and reads them at each
   logging interval.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from segan_lib._checks import check_image


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module behind a DDP or ``torch.compile`` wrapper."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


class Strategy:
    """Base class of a training method: subclasses fill ``nets`` in ``__init__`` and define
    ``configure_optimizers`` and ``train_step`` (see the module docstring)."""

    name = "base"

    def __init__(self) -> None:
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        # Set by the engine before training; the defaults suit a plain CPU run.
        self.amp_dtype: torch.dtype | None = None
        self.device = torch.device("cpu")

    @property
    def segmentor(self) -> nn.Module:
        """The network that maps images ``(B, C, H, W)`` to logits ``(B, K, H, W)``."""
        return self.nets["segmentor"]

    def unwrapped(self, name: str) -> nn.Module:
        return unwrap(self.nets[name])

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast where the engine enabled it, otherwise a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def configure_optimizers(self) -> None:
        """Fill ``self.optimizers``. Called once, after the nets are on their device."""
        raise NotImplementedError

    def train_step(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One update on a batch: images ``(B, C, H, W)`` float, masks ``(B, H, W)`` int64."""
        raise NotImplementedError

    def check_batch(self, images: torch.Tensor, masks: torch.Tensor | None) -> None:
        """Raise ``ValueError`` if a batch does not fit the networks; the engine calls it once,
        on the first batch of a run. Here, for a method with a segmentor: images are a float
        ``(B, C, H, W)`` batch, and the segmentor's ``check_input`` passes if it has one (the
        U-Net's checks the channels and that H, W are divisible by ``2**depth``). Nothing for
        other methods: a method with more to check extends it."""
        if "segmentor" in self.nets:
            self.check_images(images)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``images`` is a float ``(B, C, H, W)`` batch the segmentor's
        ``check_input`` (if it has one) accepts; training and evaluation call it on their first batch."""
        check_image("images", images)
        check_input = getattr(self.unwrapped("segmentor"), "check_input", None)
        if check_input is not None:
            check_input(images)

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Segmentor logits ``(B, K, H, W)`` in eval mode (the caller restores train mode)."""
        with self.autocast():
            return self.segmentor(images).float()

    def train(self, flag: bool = True) -> None:
        self.nets.train(flag)

    # Checkpoints hold bare modules, so a DDP run resumes in one process and vice versa.
    def state_dict(self) -> dict:
        return {
            "nets": {k: self.unwrapped(k).state_dict() for k in self.nets},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.nets) - set(state["nets"])
        if missing:
            raise ValueError(f"checkpoint lacks networks {sorted(missing)} needed by the {self.name} method")
        for k in self.nets:
            self.unwrapped(k).load_state_dict(state["nets"][k])
        for k, opt in self.optimizers.items():
            if k not in state["optimizers"]:
                raise ValueError(f"checkpoint lacks the state of optimiser {k!r} of the {self.name} method")
            opt.load_state_dict(state["optimizers"][k])
