"""The contract between the one training engine and the methods that run on it.

A *strategy* owns the networks of one training method (a segmentor, maybe a critic or a
discriminator), their optimisers and the update order of one step. The engine owns
everything else: devices, seeds, bf16 autocast, channels_last, DistributedDataParallel,
the loop, progress, evaluation, NaN stops and checkpoints. So supervised training, SegAN
and the hybrid loss of Luc et al. are small classes, not copies of a loop.

Engine to strategy, in order:
1. ``strategy.nets`` (an ``nn.ModuleDict``; key ``"segmentor"`` is required) is moved to
   the device (and to channels_last on CUDA).
2. ``strategy.configure_optimizers()`` builds ``strategy.optimizers`` (a dict name -> optimiser).
3. Under DDP the engine replaces each entry of ``strategy.nets`` by its DDP wrapper;
   ``strategy.unwrapped(name)`` always gives the bare module.
4. Each step: ``logs = strategy.train_step(images, masks, step)``. The strategy runs its
   forward passes inside ``with self.autocast():``, calls backward and steps its
   optimisers itself, in the order the method prescribes. It returns detached 0-d tensors
   (never ``.item()``: no host sync per step); the engine averages and reads them at each
   logging interval.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module behind a DDP or ``torch.compile`` wrapper."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def frozen_view(net: nn.Module) -> nn.Module:
    """What to call for a forward pass of a *frozen* network (a critic or discriminator while
    the other player updates).

    ``net`` itself (so a ``torch.compile`` wrapper is used) unless a DDP wrapper is involved:
    DDP would then wait for gradients that a frozen network never produces, so the bare
    module is called instead (it is not updated in that step: nothing to synchronise).
    """
    module = net
    while hasattr(module, "_orig_mod"):
        module = module._orig_mod
    return unwrap(net) if isinstance(module, nn.parallel.DistributedDataParallel) else net


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    """Freeze (``False``) or unfreeze a network, e.g. the critic during the segmentor step."""
    for p in net.parameters():
        p.requires_grad_(flag)


class Strategy:
    """Base class of a training method. Subclasses fill ``nets`` and implement the step."""

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

    def iter_nets(self) -> Iterator[tuple[str, nn.Module]]:
        return iter(self.nets.items())
