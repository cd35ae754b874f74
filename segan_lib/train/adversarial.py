"""The few actions every two-player method's ``train_step`` takes, as small named functions.

SegAN (``segan.py``), the hybrid loss of Luc et al. (``hybrid.py``) and the plain GAN
(``gan.py``) each spell their step out in their own file, in the order of Goodfellow et al.'s
alternating updates (NeurIPS 2014): ``n_critic`` updates of the second player (the *critic*:
SegAN's critic, or a discriminator), then one update of the first (segmentor or generator)
with the critic frozen. What they share is here, one action per function:

* :func:`set_requires_grad` and :func:`frozen`: freeze a network while the other player
  learns (pix2pix's ``set_requires_grad``);
* :func:`judge`: the critic on true and predicted inputs in one forward pass;
* :func:`grad_norm`: the gradient norm each player logs as ``grad_norm_<player>``;
* :func:`logit_channels`, :func:`like_images`: the segmentor's K, and the memory layout of
  a critic input.

Adam for every player is :func:`segan_lib.train.hardware.make_adam` (fused on CUDA).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from segan_lib.train.strategy import unwrap

DEFAULT_LR = 1e-3  # Adam learning rate of both players when none is given
CriticOutput = torch.Tensor | list[torch.Tensor]  # scores, or a list of feature maps (SegAN)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    """Freeze (``False``) or unfreeze every parameter of ``net`` (buffers are never touched)."""
    for p in net.parameters():
        p.requires_grad_(flag)


def frozen_view(net: nn.Module) -> nn.Module:
    """What to call for a forward pass of a *frozen* network.

    ``net`` itself (so a ``torch.compile`` wrapper is used) unless a DDP wrapper is involved:
    DDP would then wait for gradients that a frozen network never produces, so the bare
    module is called instead (it is not updated in that step: nothing to synchronise).
    """
    module = net
    while hasattr(module, "_orig_mod"):
        module = module._orig_mod
    return unwrap(net) if isinstance(module, nn.parallel.DistributedDataParallel) else net


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """``with frozen(critic) as critic:``: the critic's parameters get no gradient inside the
    block, and are trainable again after it (also after an error).

    Gradients still flow *through* the frozen network to its input, which is how the
    segmentor learns from the critic. Yields :func:`frozen_view` of ``net``, the module to call.
    """
    bare = unwrap(net)
    set_requires_grad(bare, False)
    try:
        yield frozen_view(net)
    finally:
        set_requires_grad(bare, True)


def judge(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[CriticOutput, CriticOutput]:
    """``critic`` on true and predicted inputs ``(B, C_in, H, W)`` as one batch of ``2B``.

    One forward pass (one DDP call), and batch norm sees both halves. Returns the outputs of
    each half: tensors ``(B, ...)``, or lists of feature maps ``(B, C_i, H_i, W_i)``.
    """
    both = critic(torch.cat([real, fake]))  # (2B, ...) or a list of (2B, C_i, H_i, W_i)
    batch = real.shape[0]
    if isinstance(both, torch.Tensor):
        return both[:batch], both[batch:]
    return [f[:batch] for f in both], [f[batch:] for f in both]


def grad_norm(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """Detached 0-d global L2 norm of the gradients, ``sqrt(sum_p ||grad_p||^2)``, no host sync."""
    params = list(parameters)
    grads = [p.grad.detach().float() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else "cpu")
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def logit_channels(segmentor: nn.Module, num_classes: int) -> int:
    """K, the segmentor's logit channels: its ``num_classes`` attribute if it has one (a
    binary U-Net has 1), else ``num_classes``."""
    return int(getattr(unwrap(segmentor), "num_classes", num_classes))


def check_segmentor_channels(segmentor: nn.Module, images: torch.Tensor, expected: int, critic: str) -> None:
    """Raise ``ValueError`` unless the segmentor gives ``expected`` logit channels, the input
    channels ``critic`` was built for. One forward pass of one image in eval mode without
    gradients (no weight, statistic or random state changes), on the first batch of a run."""
    net = unwrap(segmentor)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            channels = net(images[:1]).shape[1]
    finally:
        net.train(was_training)
    if channels != expected:
        raise ValueError(f"the segmentor returned {channels} channels, the {critic} was built for {expected}; "
                         "(num_classes logits, or 1 for a sigmoid model that has num_classes = 1 as an attribute)")


def like_images(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``x`` in the images' memory format (channels_last on CUDA under the engine)."""
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x
