"""Small MLPs for GANs on 2-D points: a generator ``z -> x`` and a discriminator ``x -> logit``.

Two-dimensional data can be drawn, so a learner sees what the generator does: which modes of
a mixture it covers and which it drops (mode collapse). The nets are deliberately tiny so a
toy GAN trains on a laptop CPU in seconds.

The discriminator can append *minibatch standard deviation* features (Karras, Aila, Laine,
Lehtinen, "Progressive Growing of GANs", ICLR 2018): the spread of the batch in its hidden
layer, which lets it see that a batch of fakes is too concentrated, one remedy for mode collapse.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from segan_lib._checks import check_positive, check_tensor


def _mlp(in_features: int, hidden: int, n_hidden: int, activation: Callable[[], nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(n_hidden):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    return layers


def _check_points(name: str, x: object, features: int) -> torch.Tensor:
    x = check_tensor(name, x)
    if x.dim() != 2 or x.shape[1] != features:
        raise ValueError(f"{name} must have shape (B, {features}), got a tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


class ToyGenerator(nn.Module):
    """MLP generator ``G: R^z_dim -> R^out_dim``.

    ``G(z) = W_L h_{L-1} + b_L`` with ``h_0 = z`` and ``h_l = ReLU(W_l h_{l-1} + b_l)`` for
    ``l = 1..n_hidden``; the output is linear, so samples can land anywhere in the plane.

    Args:
        z_dim: size of the noise vector ``z ~ N(0, I)``.
        hidden: width of each hidden layer.
        n_hidden: number of hidden layers.
        out_dim: size of a sample (2 for points in the plane).
    Shapes: ``z (B, z_dim) -> x (B, out_dim)``.
    """

    def __init__(self, z_dim: int = 2, hidden: int = 128, n_hidden: int = 3, out_dim: int = 2) -> None:
        super().__init__()
        for name, value in (("z_dim", z_dim), ("hidden", hidden), ("n_hidden", n_hidden), ("out_dim", out_dim)):
            check_positive(name, value)
        self.z_dim = z_dim
        self.net = nn.Sequential(*_mlp(z_dim, hidden, n_hidden, nn.ReLU), nn.Linear(hidden, out_dim))

    def sample_noise(self, batch_size: int, *, generator: torch.Generator | None = None,
                     device: str | torch.device | None = None) -> torch.Tensor:
        """Noise ``z ~ N(0, I)`` of shape ``(batch_size, z_dim)`` on the net's device by default."""
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(batch_size, self.z_dim, generator=generator, device=device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(_check_points("z", z, self.z_dim))


class MinibatchStdDev(nn.Module):
    """Append the batch's mean standard deviation as one extra feature (Karras et al., ICLR 2018).

    ``s = mean_j sqrt(Var_b(h_bj) + eps)`` over the batch ``b`` and features ``j``; the output is
    ``[h, s]`` with ``s`` repeated for every row. Shapes: ``(B, F) -> (B, F + 1)``.
    A collapsed generator gives a batch with a small ``s``, which the discriminator can reject.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[0] < 2:
            raise ValueError(f"minibatch std needs a batch of at least 2 samples, got batch size {h.shape[0]}")
        spread = torch.sqrt(h.var(dim=0, unbiased=False) + self.eps).mean()  # scalar
        return torch.cat([h, spread.expand(h.shape[0], 1)], dim=1)  # (B, F + 1)


class ToyDiscriminator(nn.Module):
    """MLP discriminator ``D: R^in_dim -> R``, returning the *logit*; ``sigmoid(logit)`` = P(real).

    ``logit = w^T h_L + b`` with ``h_0 = x``, ``h_l = LeakyReLU_0.2(W_l h_{l-1} + b_l)``.
    With ``minibatch_std=True`` the last hidden layer ``h_L (B, hidden)`` is extended by
    :class:`MinibatchStdDev` to ``(B, hidden + 1)`` before the output layer.

    Shapes: ``x (B, in_dim) -> logits (B,)``. Losses take logits (``BCEWithLogits``), which is
    numerically safer than a sigmoid followed by a log.
    """

    def __init__(self, in_dim: int = 2, hidden: int = 128, n_hidden: int = 3, *, minibatch_std: bool = False) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden", hidden), ("n_hidden", n_hidden)):
            check_positive(name, value)
        self.in_dim = in_dim
        self.body = nn.Sequential(*_mlp(in_dim, hidden, n_hidden, lambda: nn.LeakyReLU(0.2)))
        self.minibatch_std = MinibatchStdDev() if minibatch_std else nn.Identity()
        self.head = nn.Linear(hidden + int(minibatch_std), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(_check_points("x", x, self.in_dim))  # (B, hidden)
        return self.head(self.minibatch_std(h)).squeeze(1)  # (B, 1) -> (B,)
