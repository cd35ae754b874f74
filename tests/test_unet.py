"""Tests of segan_lib.models.unet: parameter counts worked by hand, shapes, errors, gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from segan_lib.models import DoubleConv, Down, Up, UNet, unet_shape_table
from segan_lib.models.unet import DoubleConv as DoubleConvFromModule


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    """Weights k*k*c_in*c_out, plus c_out biases."""
    return k * k * c_in * c_out + (c_out if bias else 0)


# The paper's 3x3 convs (in, out), in forward order: 10 on the contracting path (5 levels x 2)
# and 8 on the expanding path; the first conv of each Up sees the concatenation (skip + upsampled).
PAPER_3X3 = [
    (1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
    (256, 512), (512, 512), (512, 1024), (1024, 1024),
    (1024, 512), (512, 512), (512, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64),
]
PAPER_UPCONV = [(1024, 512), (512, 256), (256, 128), (128, 64)]  # 2x2 transposed convs
PAPER_HEAD = (64, 2)  # 1x1 conv to the 2 classes


def test_paper_configuration_has_31_030_658_parameters() -> None:
    # Worked out level by level (weights + biases):
    contracting = (
        (1 * 64 * 9 + 64) + (64 * 64 * 9 + 64)            # 640 + 36,928
        + (64 * 128 * 9 + 128) + (128 * 128 * 9 + 128)    # 73,856 + 147,584
        + (128 * 256 * 9 + 256) + (256 * 256 * 9 + 256)  # 295,168 + 590,080
        + (256 * 512 * 9 + 512) + (512 * 512 * 9 + 512)  # 1,180,160 + 2,359,808
        + (512 * 1024 * 9 + 1024) + (1024 * 1024 * 9 + 1024)  # 4,719,616 + 9,438,208
    )
    up_convs = (1024 * 512 * 4 + 512) + (512 * 256 * 4 + 256) + (256 * 128 * 4 + 128) + (128 * 64 * 4 + 64)
    expanding = (
        (1024 * 512 * 9 + 512) + (512 * 512 * 9 + 512)
        + (512 * 256 * 9 + 256) + (256 * 256 * 9 + 256)
        + (256 * 128 * 9 + 128) + (128 * 128 * 9 + 128)
        + (128 * 64 * 9 + 64) + (64 * 64 * 9 + 64)
    )
    head = 64 * 2 + 2
    assert (contracting, up_convs, expanding, head) == (18_842_048, 2_786_240, 9_402_240, 130)
    assert contracting + up_convs + expanding + head == 31_030_658
    # The same sum from the layer list, to tie the arithmetic above to the architecture:
    from_list = (sum(conv_params(i, o, 3) for i, o in PAPER_3X3)
                 + sum(conv_params(i, o, 2) for i, o in PAPER_UPCONV) + conv_params(*PAPER_HEAD, 1))
    assert from_list == 31_030_658
    assert n_params(UNet(1, 2, base_channels=64, depth=4)) == 31_030_658


def test_milesial_like_configuration_has_31_037_698_parameters() -> None:
    # UNet(3, 2, batch_norm=True): 3 input channels; the 18 3x3 convs lose their biases and
    # each gains a BatchNorm2d with 2 * out parameters (weight and bias; running stats are
    # buffers). Transposed convs and the head keep their biases.
    convs = sum(conv_params(i, o, 3, bias=False) for i, o in [(3, 64)] + PAPER_3X3[1:])
    batch_norms = sum(2 * o for _, o in PAPER_3X3)
    up_convs = sum(conv_params(i, o, 2) for i, o in PAPER_UPCONV)
    head = conv_params(*PAPER_HEAD, 1)
    assert convs + batch_norms + up_convs + head == 31_037_698
    # Equivalently: paper count + 2 * 64 * 9 for the extra input channels + one net
    # parameter per 3x3 conv output channel (bias c dropped, BN 2c added).
    assert 31_030_658 + 2 * 64 * 9 + sum(o for _, o in PAPER_3X3) == 31_037_698
    assert n_params(UNet(3, 2, batch_norm=True)) == 31_037_698


def test_bilinear_replaces_each_2x2_up_conv_by_a_1x1_conv() -> None:
    # Each up-conv in -> in/2 drops from 4 * in * in/2 to 1 * in * in/2 weights (same biases).
    saved = sum(3 * i * o for i, o in PAPER_UPCONV)
    assert saved == 2_088_960
    model = UNet(1, 2, bilinear=True)
    assert n_params(model) == 31_030_658 - saved
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert sum(isinstance(m, nn.Upsample) for m in model.modules()) == 4


def test_paper_configuration_has_23_conv_layers() -> None:
    # The paper: "In total the network has 23 convolutional layers." That count includes the
    # four 2x2 up-convolutions: 18 3x3 convs + 4 up-convs + the final 1x1 conv = 23.
    model = UNet(1, 2)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n_upconv = sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert (n_conv, n_upconv) == (len(PAPER_3X3) + 1, len(PAPER_UPCONV)) == (19, 4)
    assert n_conv + n_upconv == 23


def test_batch_norm_convs_have_no_bias_and_original_has_no_batch_norm() -> None:
    with_bn = UNet(3, 2, base_channels=4, depth=2, batch_norm=True)
    three_by_three = [m for m in with_bn.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(three_by_three) == 10 and all(m.bias is None for m in three_by_three)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 10
    assert with_bn.head.bias is not None
    original = UNet(3, 2, base_channels=4, depth=2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in original.modules())
    assert all(m.bias is not None for m in original.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


@pytest.mark.parametrize(
    "depth, height, width, bilinear, batch_norm",
    [(1, 6, 10, False, False), (2, 16, 12, True, False), (3, 24, 40, False, True), (4, 32, 16, True, True)],
)
def test_output_has_input_spatial_size(depth: int, height: int, width: int, bilinear: bool, batch_norm: bool) -> None:
    torch.manual_seed(0)
    model = UNet(2, 5, base_channels=4, depth=depth, bilinear=bilinear, batch_norm=batch_norm)
    logits = model(torch.randn(3, 2, height, width))
    assert logits.shape == (3, 5, height, width)
    assert logits.dtype == torch.float32


def test_single_logit_for_binary_segmentation() -> None:
    assert UNet(3, 1, base_channels=4, depth=2)(torch.randn(2, 3, 8, 8)).shape == (2, 1, 8, 8)


def test_blocks_keep_the_documented_shapes() -> None:
    x = torch.randn(2, 3, 8, 12)
    assert DoubleConv(3, 6)(x).shape == (2, 6, 8, 12)
    assert Down(3, 6)(x).shape == (2, 6, 4, 6)
    low, skip = torch.randn(2, 8, 4, 6), torch.randn(2, 4, 8, 12)
    assert Up(8, 4)(low, skip).shape == (2, 4, 8, 12)
    assert Up(8, 4, bilinear=True)(low, skip).shape == (2, 4, 8, 12)
    assert DoubleConv is DoubleConvFromModule


def test_up_rejects_an_odd_number_of_channels() -> None:
    with pytest.raises(ValueError, match="in_channels must be an even number"):
        Up(5, 4)


def test_check_input_raises_value_error_naming_input_and_divisor() -> None:
    model = UNet(3, 2, base_channels=4, depth=3)
    assert model.size_divisor == 8 and UNet(3, 2, base_channels=4, depth=1).size_divisor == 2  # 2**depth
    model.check_input(torch.randn(1, 3, 16, 24))  # fits: no error
    with pytest.raises(ValueError, match=r"images.*divisible by 2\*\*depth = 8.*\(1, 3, 12, 16\)"):
        model.check_input(torch.randn(1, 3, 12, 16))
    with pytest.raises(ValueError, match=r"images.*divisible by 2\*\*depth = 8.*\(1, 3, 16, 20\)"):
        model.check_input(torch.randn(1, 3, 16, 20))
    with pytest.raises(ValueError, match=r"images must have 3 channels.*\(1, 1, 16, 16\)"):
        model.check_input(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        model.check_input(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="images must be a floating-point tensor"):
        model.check_input(torch.zeros(1, 3, 16, 16, dtype=torch.int64))


@pytest.mark.parametrize(
    "kwargs, name", [({"depth": 0}, "depth"), ({"base_channels": 0}, "base_channels"),
                     ({"num_classes": 0}, "num_classes"), ({"in_channels": -1}, "in_channels"),
                     ({"depth": 2.0}, "depth")],
)
def test_bad_constructor_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        UNet(**{"base_channels": 4, **kwargs})


@pytest.mark.parametrize("bilinear, batch_norm", [(False, False), (True, True)])
def test_gradient_reaches_every_parameter(bilinear: bool, batch_norm: bool) -> None:
    torch.manual_seed(0)
    model = UNet(3, 3, base_channels=4, depth=3, bilinear=bilinear, batch_norm=batch_norm)
    logits = model(torch.randn(2, 3, 16, 16))
    loss = nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 16, 16)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_same_seed_same_model_and_output() -> None:
    def build_and_run(seed: int) -> tuple[UNet, torch.Tensor]:
        torch.manual_seed(seed)
        model = UNet(3, 2, base_channels=4, depth=2)
        return model, model(torch.randn(2, 3, 8, 8))

    model_a, out_a = build_and_run(0)
    model_b, out_b = build_and_run(0)
    _, out_c = build_and_run(1)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(out_a, out_b)
    assert not torch.allclose(out_a, out_c)


def test_shape_table_lists_blocks_in_forward_order() -> None:
    model = UNet(3, 2, base_channels=4, depth=2, batch_norm=True)
    model.train()
    table = unet_shape_table(model, (1, 3, 16, 8))
    assert table == [
        ("input", (1, 3, 16, 8)),
        ("stem", (1, 4, 16, 8)),
        ("encoder.0", (1, 8, 8, 4)),
        ("encoder.1", (1, 16, 4, 2)),  # bottleneck: base * 2**depth channels at H / 2**depth
        ("decoder.0", (1, 8, 8, 4)),
        ("decoder.1", (1, 4, 16, 8)),
        ("head", (1, 2, 16, 8)),
    ]
    assert model.training  # mode restored
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


def test_shape_table_leaves_cover_every_layer() -> None:
    model = UNet(3, 2, base_channels=4, depth=2)
    table = dict(unet_shape_table(model, (2, 3, 8, 8), leaves=True))
    # stem 4 layers (conv, relu) x 2; each Down pool + 4; each Up up-conv + 4; head.
    assert len(table) == 1 + 4 + 2 * 5 + 2 * 5 + 1
    assert table["encoder.1.pool"] == (2, 8, 2, 2)
    assert table["decoder.0.up"] == (2, 8, 4, 4)
    assert table["head"] == (2, 2, 8, 8)


def test_shape_table_bad_arguments() -> None:
    model = UNet(3, 2, base_channels=4, depth=2)
    with pytest.raises(ValueError, match="input_shape must be 4 positive ints"):
        unet_shape_table(model, (3, 8, 8))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 4"):
        unet_shape_table(model, (1, 3, 6, 8))
    with pytest.raises(ValueError, match="model must be a UNet"):
        unet_shape_table(nn.Conv2d(3, 2, 1), (1, 3, 8, 8))  # type: ignore[arg-type]
