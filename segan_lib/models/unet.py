"""U-Net: the encoder-decoder segmentor with skip connections.

After Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (University of Freiburg). Read top to bottom: the three building
blocks (:class:`DoubleConv`, :class:`Down`, :class:`Up`) first, :class:`UNet` last, then
:func:`unet_shape_table` for printing what happens to the tensor shapes.

Two deliberate differences from the paper:

* **Padding.** The paper uses unpadded ("valid") 3x3 convolutions, so every conv trims one
  pixel per side: a 572x572 tile gives a 388x388 output and the encoder maps are cropped
  before concatenation. Here every 3x3 conv has ``padding=1``, so the output has the input's
  size and no cropping is needed; H and W must then be divisible by ``2**depth``. Padding
  does not change the number of parameters.
* **Batch norm.** The original network has **no** batch normalisation; later
  implementations (e.g. milesial/Pytorch-UNet) put one after every 3x3 conv. It is off by
  default (``batch_norm=False``); when on, those convs have no bias, since the batch norm's
  shift makes it redundant.

With the paper's configuration (1 input channel, 2 classes, ``base_channels=64``,
``depth=4``, transposed convolutions, no batch norm) the model has 23 conv layers and
31,030,658 parameters; ``UNet(3, 2, batch_norm=True)`` matches milesial/Pytorch-UNet's
``UNet(3, 2)`` with 31,037,698.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_image, check_positive


def _conv3x3_block(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    """Padded 3x3 conv (+ batch norm) + ReLU; the conv has a bias only without batch norm."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


class DoubleConv(nn.Module):
    """Two padded 3x3 convs, each followed by (batch norm and) ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``. Parameters without batch norm:
    ``9 * in * out + out + 9 * out * out + out``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = False) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        self.block = nn.Sequential(
            *_conv3x3_block(in_channels, out_channels, batch_norm),
            *_conv3x3_block(out_channels, out_channels, batch_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)  # (B, out, H, W)


class Down(nn.Module):
    """One step down the contracting path: 2x2 max-pool (stride 2), then :class:`DoubleConv`.

    ``(B, in_channels, H, W) -> (B, out_channels, H // 2, W // 2)``; U-Net uses
    ``out_channels = 2 * in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)  # (B, in, H/2, W/2)
        return self.conv(x)  # (B, out, H/2, W/2)


class Up(nn.Module):
    """One step up the expanding path: upsample x2 halving the channels, concatenate the
    skip connection from the encoder, then :class:`DoubleConv`.

    ``x (B, in_channels, h, w)`` and ``skip (B, in_channels // 2, 2h, 2w)``
    ``-> (B, out_channels, 2h, 2w)``.

    Upsampling, ``bilinear=False`` (the paper's "up-convolution"): a 2x2 transposed conv with
    stride 2, ``in -> in // 2`` channels, ``4 * in * (in // 2) + in // 2`` parameters.
    ``bilinear=True``: parameter-free bilinear upsampling (``align_corners=False``) followed
    by a 1x1 conv ``in -> in // 2`` (``in * (in // 2) + in // 2`` parameters). We chose the
    1x1 conv so that both variants feed the same channel counts to the concatenation and
    every later layer is identical; milesial/Pytorch-UNet instead keeps all channels and
    halves them in the following convs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, bilinear: bool = False, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if in_channels < 2 or in_channels % 2:
            raise ValueError(f"in_channels must be an even number >= 2 (it is halved), got {in_channels!r}")
        half = in_channels // 2
        if bilinear:
            self.up: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, half, kernel_size=1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * half, out_channels, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, in/2, 2h, 2w), the shape of skip
        x = torch.cat([skip, x], dim=1)  # (B, in, 2h, 2w): encoder features first, as in the paper
        return self.conv(x)  # (B, out, 2h, 2w)


class UNet(nn.Module):
    """U-Net segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, num_classes, H, W)``.

    Ronneberger, Fischer, Brox, MICCAI 2015. Level ``i`` (0 = full resolution) has
    ``base_channels * 2**i`` channels; ``depth`` max-pools lead to the bottleneck at
    ``H / 2**depth`` with ``base_channels * 2**depth`` channels, and ``depth`` :class:`Up`
    steps come back. A 1x1 conv maps to the ``num_classes`` logits (use ``num_classes=1`` for a
    binary sigmoid output).

    Unlike the paper, the 3x3 convs are padded, so output size = input size (the paper's
    unpadded convs take 572x572 to 388x388); H and W must be divisible by ``2**depth``.
    The original has no batch norm; ``batch_norm=True`` adds it after every 3x3 conv (as
    later implementations do) and drops those convs' biases. ``bilinear`` chooses the
    upsampling, see :class:`Up`.

    Modules, in forward order: ``stem`` (DoubleConv), ``encoder`` (``depth`` x Down),
    ``decoder`` (``depth`` x Up), ``head`` (1x1 conv).

    ``forward`` checks nothing (it runs at every step, and ``torch.compile`` traces it): the
    callers that hand it new data check it once with :meth:`check_input` (the training
    engine on its first batch, :func:`unet_shape_table`, ``segan train``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        *,
        base_channels: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("base_channels", base_channels), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            check_positive(name, value)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]  # e.g. 64 ... 1024
        self.stem = DoubleConv(in_channels, widths[0], batch_norm=batch_norm)
        self.encoder = nn.ModuleList(
            Down(widths[level], widths[level + 1], batch_norm=batch_norm) for level in range(depth)
        )
        self.decoder = nn.ModuleList(
            Up(widths[level + 1], widths[level], bilinear=bilinear, batch_norm=batch_norm)
            for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @property
    def size_divisor(self) -> int:
        """Input H and W must be multiples of this: ``2**depth``."""
        return 2**self.depth

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The top-level blocks in forward order, with their ``named_modules`` names."""
        return (
            [("stem", self.stem)]
            + [(f"encoder.{i}", m) for i, m in enumerate(self.encoder)]
            + [(f"decoder.{i}", m) for i, m in enumerate(self.decoder)]
            + [("head", self.head)]
        )

    def check_input(self, images: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``images`` is a float ``(B, in_channels, H, W)`` batch with
        H and W divisible by ``2**depth``."""
        check_image("images", images, channels=self.in_channels)
        height, width = images.shape[-2:]
        if height % self.size_divisor or width % self.size_divisor:
            raise ValueError(
                f"images height and width must be divisible by 2**depth = {self.size_divisor}, "
                f"got a tensor of shape {tuple(images.shape)}; pad or resize the input"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)  # (B, c, H, W)
        skips = [x]
        for down in self.encoder:
            x = down(x)  # (B, 2c, H/2, W/2) at each step
            skips.append(x)
        skips.pop()  # the bottleneck (B, c * 2**depth, H / 2**depth, W / 2**depth) is not a skip
        for up in self.decoder:
            x = up(x, skips.pop())  # (B, c/2, 2h, 2w) at each step
        return self.head(x)  # (B, num_classes, H, W)


def unet_shape_table(
    model: UNet, input_shape: tuple[int, int, int, int], *, leaves: bool = False
) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of every block (or, with ``leaves=True``, every layer) of ``model``.

    Runs ``model`` once, in eval mode and without gradients, on zeros of ``input_shape``
    ``(B, C, H, W)`` and records shapes with forward hooks. Returns ``[("input", shape),
    (name, output shape), ...]`` in call order; names are those of ``model.named_modules()``.
    The model's training mode is restored afterwards.
    """
    if not isinstance(model, UNet):
        raise ValueError(f"model must be a UNet, got {type(model).__name__}")
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4
            or not all(isinstance(n, int) and n > 0 for n in input_shape)):
        raise ValueError(f"input_shape must be 4 positive ints (B, C, H, W), got {input_shape!r}")
    if leaves:
        watched = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    else:
        watched = model.blocks()
    rows: list[tuple[str, tuple[int, ...]]] = [("input", tuple(input_shape))]

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            rows.append((name, tuple(output.shape)))
        return hook

    parameter = next(model.parameters())
    model.check_input(torch.zeros(input_shape, dtype=parameter.dtype, device="meta"))
    handles = [m.register_forward_hook(recorder(name)) for name, m in watched]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, dtype=parameter.dtype, device=parameter.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows
