"""DCGAN-style generator of segmentation masks from noise, and its discriminator.

Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks" (DCGAN), ICLR 2016: a linear projection of the noise to a
small feature map, then fractionally-strided (transposed) convolutions that double the
resolution and halve the width, batch norm and ReLU in the generator, strided convolutions
with batch norm and LeakyReLU(0.2) in the discriminator, no batch norm on the generator's
output nor on the discriminator's input layer, all weights drawn from N(0, 0.02).

Here the "images" are binary masks ``(B, 1, size, size)``: the generator ends in a sigmoid,
so each pixel is the probability of foreground.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_image, check_positive, check_tensor


def _start_size(size: int, n_upsamplings: int, what: str) -> int:
    """Side of the smallest feature map: ``size / 2**n_upsamplings``, a positive integer."""
    check_positive("size", size)
    factor = 2**n_upsamplings
    if size % factor != 0:
        raise ValueError(
            f"size must be divisible by 2**len(widths) = {factor} for the {what} "
            f"(one factor 2 per block), got size={size} with {n_upsamplings} blocks"
        )
    return size // factor


def _check_widths(widths: tuple[int, ...]) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) < 1 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty tuple of positive ints, got {widths!r}")
    return widths


class UpBlock(nn.Module):
    """``ReLU(BN(ConvT_{4x4, stride 2, pad 1}(h)))``: ``(B, C_in, s, s) -> (B, C_out, 2s, 2s)``.

    A transposed convolution with kernel 4, stride 2 and padding 1 gives an output side of
    ``(s - 1) * 2 - 2 * 1 + 4 = 2s``. No conv bias: batch norm's shift replaces it.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(h)))


class MaskGenerator(nn.Module):
    """Noise ``z (B, z_dim)`` to mask probabilities ``(B, 1, size, size)``.

    With ``widths = (c_0, ..., c_{L-1})`` and start side ``s_0 = size / 2**L``:

    ``h_0 = ReLU(BN(reshape(W z)))`` of shape ``(B, c_0, s_0, s_0)`` (``W``: ``c_0 s_0^2 x z_dim``),
    ``h_l = ReLU(BN(ConvT(h_{l-1})))`` of shape ``(B, c_l, s_0 2^l, s_0 2^l)`` for ``l = 1..L-1``,
    ``G(z) = sigmoid(ConvT_out(h_{L-1}) + b)`` of shape ``(B, 1, size, size)``,

    every ``ConvT`` a 4x4 transposed convolution with stride 2 and padding 1 (doubles the side).
    The defaults ``z_dim=100, size=64, widths=(512, 256, 128, 64)`` are DCGAN's, at 1 channel:
    4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x1.
    Initialise with :func:`dcgan_init_` (done in ``__init__``).
    """

    def __init__(self, z_dim: int = 100, size: int = 64, widths: tuple[int, ...] = (512, 256, 128, 64)) -> None:
        super().__init__()
        check_positive("z_dim", z_dim)
        self.widths = _check_widths(widths)
        self.z_dim, self.size = z_dim, size
        self.start_size = _start_size(size, len(self.widths), "generator")
        first = self.widths[0] * self.start_size**2
        self.project = nn.Linear(z_dim, first, bias=False)  # no bias: batch norm's shift replaces it
        self.project_norm = nn.Sequential(nn.BatchNorm2d(self.widths[0]), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(UpBlock(a, b) for a, b in zip(self.widths[:-1], self.widths[1:])))
        # the output layer: no batch norm (DCGAN), a bias, and a sigmoid for probabilities
        self.to_mask = nn.ConvTranspose2d(self.widths[-1], 1, kernel_size=4, stride=2, padding=1)
        dcgan_init_(self)

    def sample_noise(self, batch_size: int, *, generator: torch.Generator | None = None,
                     device: str | torch.device | None = None) -> torch.Tensor:
        """Noise ``z ~ N(0, I)`` of shape ``(batch_size, z_dim)`` on the net's device by default."""
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(batch_size, self.z_dim, generator=generator, device=device)

    def forward_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores ``(B, 1, size, size)``."""
        z = check_tensor("z", z)
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got a tensor of shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise ValueError(f"z must be a floating-point tensor of noise, got dtype {z.dtype}")
        h = self.project(z)  # (B, c_0 * s_0 * s_0)
        h = h.view(-1, self.widths[0], self.start_size, self.start_size)  # (B, c_0, s_0, s_0)
        h = self.project_norm(h)  # batch norm per channel, as in every later block
        h = self.blocks(h)  # (B, c_{L-1}, size / 2, size / 2)
        return self.to_mask(h)  # (B, 1, size, size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(z))

    def shape_table(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(layer name, output shape for batch size 1 without B)`` for each block, in order."""
        rows = [("z", (self.z_dim,)), ("linear", (self.widths[0] * self.start_size**2,)),
                ("reshape + BN + ReLU", (self.widths[0], self.start_size, self.start_size))]
        side = self.start_size
        for i, width in enumerate(self.widths[1:], start=1):
            side *= 2
            rows.append((f"up block {i}: convT + BN + ReLU", (width, side, side)))
        rows.append(("convT + sigmoid", (1, self.size, self.size)))
        return rows


class MaskDiscriminator(nn.Module):
    """DCGAN discriminator for masks ``(B, 1, size, size)`` with values in [0, 1]; returns logits ``(B,)``.

    With ``widths = (c_0, ..., c_{L-1})``:
    ``h_1 = LReLU(Conv(x))`` (no batch norm on the input layer, DCGAN),
    ``h_l = LReLU(BN(Conv(h_{l-1})))`` for ``l = 2..L``, each Conv 4x4 with stride 2 and
    padding 1 (halves the side: ``(s + 2 - 4) / 2 + 1 = s / 2``), LReLU of slope 0.2,
    ``logit = Conv_{k x k}(h_L)`` with ``k = size / 2**L`` (one number per sample).
    Defaults for 64x64: 1 -> 32x32x64 -> 16x16x128 -> 8x8x256 -> 4x4x512 -> 1.
    """

    def __init__(self, size: int = 64, widths: tuple[int, ...] = (64, 128, 256, 512), in_channels: int = 1) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        self.widths = _check_widths(widths)
        self.size, self.in_channels = size, in_channels
        end_size = _start_size(size, len(self.widths), "discriminator")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, self.widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(self.widths[:-1], self.widths[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.to_logit = nn.Conv2d(self.widths[-1], 1, kernel_size=end_size)
        dcgan_init_(self)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        masks = check_image("masks", masks, channels=self.in_channels)
        if masks.shape[2:] != (self.size, self.size):
            raise ValueError(
                f"masks must be {self.size}x{self.size} for this discriminator, "
                f"got a tensor of shape {tuple(masks.shape)}"
            )
        h = self.features(masks)  # (B, c_{L-1}, k, k)
        return self.to_logit(h).flatten()  # (B, 1, 1, 1) -> (B,)


@torch.no_grad()
def dcgan_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN initialisation, in place: conv, transposed-conv and linear weights ~ N(0, std),
    batch-norm weights ~ N(1, std), all biases 0 (Radford et al., ICLR 2016). Returns ``module``."""
    check_positive("std", std)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def param_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["MaskGenerator", "MaskDiscriminator", "UpBlock", "dcgan_init_", "param_count"]
