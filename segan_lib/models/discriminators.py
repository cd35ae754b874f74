"""Critics and discriminators for adversarial segmentation.

Read top to bottom: shared building blocks, then four networks.

* :class:`SeganCritic` -- SegAN's critic (Xue et al., Neuroinformatics 2018): a strided
  convolutional encoder that returns the features of *every* layer (the input included),
  for the multi-scale L1 loss.
* :class:`LucDiscriminator` -- an image-level discriminator on (image, label map) pairs,
  after Luc, Couprie, Chintala and Verbeek, "Semantic Segmentation using Adversarial
  Networks", 2016: one real/fake score per image.
* :class:`PatchGANDiscriminator` -- pix2pix's PatchGAN (Isola et al., CVPR 2017): one score
  per overlapping patch (70x70 receptive field with the default three strided layers).
* :class:`ConfidenceMapDiscriminator` -- the fully-convolutional discriminator of Hung, Tsai,
  Liou, Lin and Yang (BMVC 2018) on label maps alone: one confidence logit per pixel.

All take one tensor ``(B, C_in, H, W)`` (the caller builds it, see
``segan_lib.losses.adversarial.encode_pair`` and ``mask_images``) and return raw scores,
never probabilities. ``forward`` checks nothing (the strategy builds the input, and the
engine checks the first batch's shape once with each network's ``check_input``).
Convolution weights start from N(0, 0.02) as in DCGAN (Radford et al.,
ICLR 2016) and pix2pix. ``spectral_norm=True`` wraps every convolution in spectral
normalisation (Miyato et al., ICLR 2018), which bounds each layer's Lipschitz constant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from segan_lib._checks import check_choice, check_image, check_positive

NORMS = ("batch", "instance", "none")


def _conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, *, bias: bool = True, spectral: bool = False
) -> nn.Module:
    """A padded conv with DCGAN init N(0, 0.02), optionally spectrally normalised."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=1, bias=bias)
    nn.init.normal_(conv.weight, 0.0, 0.02)
    if bias:
        nn.init.zeros_(conv.bias)
    return _spectral_norm(conv) if spectral else conv


def _norm(kind: str, channels: int) -> nn.Module:
    """Batch norm always with the current batch's statistics (no running averages: these
    networks only ever run in training mode, and so a forward pass changes no buffer)."""
    if kind == "batch":
        norm = nn.BatchNorm2d(channels, track_running_stats=False)
        nn.init.normal_(norm.weight, 1.0, 0.02)
        nn.init.zeros_(norm.bias)
        return norm
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    return nn.Identity()


def _width(base_channels: int, layer: int) -> int:
    """Channels of strided layer ``layer`` (0-based): base * 2**layer, capped at 8 * base."""
    return base_channels * min(2**layer, 8)


class SeganCritic(nn.Module):
    """SegAN's critic: ``depth`` layers of 4x4 stride-2 conv + LeakyReLU(0.2).

    ``forward(x)`` with ``x (B, in_channels, H, W)`` returns the list of feature maps
    ``[x, f_1, ..., f_depth]`` (``x`` itself first when ``include_input``), where
    ``f_i`` has shape ``(B, base * 2**(i-1) capped at 8 * base, H / 2**i, W / 2**i)``.
    The SegAN loss compares these lists for the image masked by the prediction and by the
    ground truth (``segan_lib.losses.adversarial.multiscale_l1_loss``).

    The critic must stay bounded, or it can make the L1 distance arbitrarily large: either
    clip its weights after each update (the authors' public code, +-0.05; see
    ``segan_lib.train.segan.clip_weights_``) or build it with ``spectral_norm=True``.
    As in the authors' code, every layer but the first has batch norm (``batch_norm=True``).
    Batch norm divides each channel by its batch standard deviation, so the scale of the
    convolution before it cancels: clipping those weights caps the features' size only
    through batch norm's own scale and shift, and does not bound the critic's Lipschitz
    constant. The strategy passes the true and the predicted inputs in one batch, so both
    share the statistics. Use ``batch_norm=False`` with spectral norm (batch norm would undo
    the bound). H and W must be divisible by ``2**depth``.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 32,
        depth: int = 3,
        spectral_norm: bool = False,
        batch_norm: bool = True,
        include_input: bool = True,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("base_channels", base_channels)
        check_positive("depth", depth)
        self.in_channels, self.depth, self.include_input = in_channels, depth, include_input
        self.layers = nn.ModuleList()
        channels = in_channels
        for i in range(depth):
            out = _width(base_channels, i)
            use_norm = batch_norm and i > 0  # as DCGAN: no norm on the input layer
            self.layers.append(
                nn.Sequential(
                    _conv(channels, out, 4, 2, bias=not use_norm, spectral=spectral_norm),
                    _norm("batch" if use_norm else "none", out),
                    nn.LeakyReLU(0.2),
                )
            )
            channels = out

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is float ``(B, in_channels, H, W)``, H and W divisible by ``2**depth``."""
        check_image("x", x, self.in_channels)
        factor = 2**self.depth
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(
                f"x must have H and W divisible by 2**depth = {factor}, got spatial size {tuple(x.shape[2:])}"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [x] if self.include_input else []
        for layer in self.layers:
            x = layer(x)  # (B, C_i, H / 2**i, W / 2**i)
            features.append(x)
        return features


class LucDiscriminator(nn.Module):
    """An image-level discriminator: one raw score per (image, label map) pair, ``(B, 1)``.

    A 3x3 conv + LeakyReLU(0.2), ``depth`` 3x3 stride-2 convs + LeakyReLU, global average
    pooling and a linear layer. Luc et al. (2016) feed the image and the label map through
    separate convolutional branches before merging them; here they are merged at the input
    (``encode_pair``'s "basic", "product" or "scaling" encoding), which keeps one network for
    every encoding. No normalisation layer, so a sample's score does not depend on the batch.
    """

    def __init__(
        self, in_channels: int, *, base_channels: int = 64, depth: int = 3, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("base_channels", base_channels)
        check_positive("depth", depth)
        self.in_channels = in_channels
        layers: list[nn.Module] = [_conv(in_channels, base_channels, 3, 1, spectral=spectral_norm), nn.LeakyReLU(0.2)]
        channels = base_channels
        for i in range(1, depth + 1):
            out = _width(base_channels, i)
            layers += [_conv(channels, out, 3, 2, spectral=spectral_norm), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 1)
        nn.init.normal_(self.head.weight, 0.0, 0.02)
        nn.init.zeros_(self.head.bias)
        if spectral_norm:
            self.head = _spectral_norm(self.head)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is float ``(B, in_channels, H, W)``."""
        check_image("x", x, self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, C, H / 2**depth, W / 2**depth), rounded up
        h = h.mean(dim=(2, 3))  # (B, C)
        return self.head(h)  # (B, 1)


def patchgan_receptive_field(n_layers: int = 3) -> int:
    """Receptive field (pixels) of one PatchGAN score: 70 for ``n_layers = 3``.

    Kernels are 4x4 with strides ``2`` (``n_layers`` times), then ``1, 1``; a stack of
    layers with kernel ``k_j`` and stride ``s_j`` sees ``1 + sum_j (k_j - 1) prod_{i<j} s_i``.
    """
    check_positive("n_layers", n_layers)
    strides = [2] * n_layers + [1, 1]
    field, jump = 1, 1
    for stride in strides:
        field += 3 * jump
        jump *= stride
    return field


class PatchGANDiscriminator(nn.Module):
    """pix2pix's PatchGAN: ``(B, in_channels, H, W) -> (B, 1, H', W')`` raw patch scores.

    Layers (4x4 convs, LeakyReLU 0.2): C64 stride 2 without norm, then ``n_layers - 1``
    more stride-2 layers doubling the width (capped at 8x), one stride-1 layer, and a
    stride-1 conv to one channel (Isola et al., CVPR 2017). With 64x64 input and the
    default ``n_layers = 3``, ``H' = W' = 6``; each score sees a 70x70 patch
    (:func:`patchgan_receptive_field`). ``norm``: "batch" as in pix2pix, "instance" or "none"
    (use "none" with ``spectral_norm=True``). The input must be at least
    ``3 * 2**n_layers`` pixels on each side, so that one score remains.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("base_channels", base_channels)
        check_positive("n_layers", n_layers)
        check_choice("norm", norm, NORMS)
        self.in_channels, self.n_layers = in_channels, n_layers
        use_bias = norm == "none"  # a norm's shift makes the conv bias redundant
        layers: list[nn.Module] = [_conv(in_channels, base_channels, 4, 2, spectral=spectral_norm), nn.LeakyReLU(0.2)]
        channels = base_channels
        for i in range(1, n_layers + 1):
            out = _width(base_channels, i)
            stride = 2 if i < n_layers else 1
            layers += [
                _conv(channels, out, 4, stride, bias=use_bias, spectral=spectral_norm),
                _norm(norm, out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(_conv(channels, 1, 4, 1, spectral=spectral_norm))
        self.model = nn.Sequential(*layers)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is float ``(B, in_channels, H, W)`` with at least one score's room."""
        check_image("x", x, self.in_channels)
        smallest = 3 * 2**self.n_layers
        if min(x.shape[2:]) < smallest:
            raise ValueError(
                f"x must be at least {smallest}x{smallest} for a PatchGAN with n_layers={self.n_layers}, "
                f"got spatial size {tuple(x.shape[2:])}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, 1, H', W')


class ConfidenceMapDiscriminator(nn.Module):
    """Hung et al.'s fully-convolutional discriminator: label maps ``(B, K, H, W)`` -> a
    confidence logit per pixel ``(B, 1, H, W)``.

    Hung, Tsai, Liou, Lin and Yang, "Adversarial Learning for Semi-Supervised Semantic
    Segmentation", BMVC 2018 (arXiv 1802.07934), and their code hfslyc/AdvSemiSeg
    (``model/discriminator.py``): ``depth`` 4x4 stride-2 convs with
    ``base * 2**i`` channels (capped at 8x) and LeakyReLU(0.2), then a 4x4 stride-2 conv to one
    channel without activation; the defaults give the paper's {64, 128, 256, 512, 1}. The
    coarse map ``(B, 1, H / 2**(depth+1), W / 2**(depth+1))`` is upsampled bilinearly to the
    input size (``align_corners=True``, as in the authors' ``train.py``). The input
    is a label map only, never the image: the one-hot truth or the segmentor's class
    probabilities. ``sigmoid`` of the output is the confidence that a pixel's label
    distribution comes from the ground truth. No normalisation layer, so a pixel's score does
    not depend on the rest of the batch. Weights start from N(0, 0.02) like the other networks
    of this file (the authors' code keeps PyTorch's default initialisation). H and W must be
    at least ``2**(depth+1)``. Use a small ``base_channels`` (e.g. 4 to 16) for CPU runs.
    """

    def __init__(self, in_channels: int, *, base_channels: int = 64, depth: int = 4) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("base_channels", base_channels)
        check_positive("depth", depth)
        self.in_channels, self.depth = in_channels, depth
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            out = _width(base_channels, i)
            layers += [_conv(channels, out, 4, 2), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(_conv(channels, 1, 4, 2))  # the confidence logits, no activation
        self.model = nn.Sequential(*layers)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is float ``(B, in_channels, H, W)``, H and W at least ``2**(depth+1)``."""
        check_image("x", x, self.in_channels)
        smallest = 2 ** (self.depth + 1)
        if min(x.shape[2:]) < smallest:
            raise ValueError(
                f"x must be at least {smallest}x{smallest} for a ConfidenceMapDiscriminator with depth={self.depth}, "
                f"got spatial size {tuple(x.shape[2:])}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = self.model(x)  # (B, 1, H / 2**(depth+1), W / 2**(depth+1))
        return F.interpolate(coarse, size=x.shape[2:], mode="bilinear", align_corners=True)  # (B, 1, H, W)
