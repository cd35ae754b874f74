"""The DCGAN-style mask generator and discriminator, their initialisation and the mask grid."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segan_lib.models import MaskDiscriminator, MaskGenerator, UpBlock, dcgan_init_, param_count
from segan_lib.viz.gan import mask_grid_image, plot_mask_grid



def test_default_generator_gives_64x64_probabilities_through_dcgan_widths():
    torch.manual_seed(0)
    g = MaskGenerator()
    out = g(g.sample_noise(2))
    assert out.shape == (2, 1, 64, 64)
    assert bool((out > 0).all() and (out < 1).all())
    assert g.shape_table() == [
        ("z", (100,)),
        ("linear", (8192,)),
        ("reshape + BN + ReLU", (512, 4, 4)),
        ("up block 1: convT + BN + ReLU", (256, 8, 8)),
        ("up block 2: convT + BN + ReLU", (128, 16, 16)),
        ("up block 3: convT + BN + ReLU", (64, 32, 32)),
        ("convT + sigmoid", (1, 64, 64)),
    ]


def test_shape_table_matches_the_real_intermediate_shapes():
    g = MaskGenerator(z_dim=8, size=32, widths=(32, 16, 8))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
             for m in (g.project, g.project_norm, *g.blocks, g.to_mask)]
    g(torch.randn(3, 8))
    for h in hooks:
        h.remove()
    assert seen == [shape for _, shape in g.shape_table()[1:]]
    assert g.start_size == 4


def test_generator_forward_equals_the_written_formula():
    """G(z) = sigmoid(ConvT_out(ReLU(BN(ConvT_1(ReLU(BN(reshape(W z))))))) + b) in eval mode."""
    torch.manual_seed(1)
    g = MaskGenerator(z_dim=5, size=16, widths=(6, 4)).eval()
    for bn in (g.project_norm[0], g.blocks[0].norm):  # non-trivial running statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    z = torch.randn(3, 5)

    def bn(x, m):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    h = (z @ g.project.weight.T).view(3, 6, 4, 4)
    h = F.relu(bn(h, g.project_norm[0]))
    h = F.relu(bn(F.conv_transpose2d(h, g.blocks[0].conv.weight, stride=2, padding=1), g.blocks[0].norm))
    expected = torch.sigmoid(F.conv_transpose2d(h, g.to_mask.weight, g.to_mask.bias, stride=2, padding=1))
    assert torch.allclose(g(z), expected, atol=1e-6)


def test_up_block_doubles_the_side_by_the_written_formula():
    torch.manual_seed(0)
    block = UpBlock(3, 2).eval()  # eval: batch norm with its running statistics (0 and 1 at first)
    h = torch.randn(2, 3, 5, 5)
    out = block(h)
    assert out.shape == (2, 2, 10, 10)  # (s - 1) * 2 - 2 + 4 = 2s
    norm = block.norm
    conv = F.conv_transpose2d(h, block.conv.weight, stride=2, padding=1)  # no bias
    expected = F.relu((conv - norm.running_mean[:, None, None]) / torch.sqrt(norm.running_var[:, None, None] + norm.eps)
                      * norm.weight[:, None, None] + norm.bias[:, None, None])
    assert torch.allclose(out, expected, atol=1e-6)
    assert block.conv.bias is None


def test_forward_logits_are_the_scores_before_the_sigmoid():
    torch.manual_seed(0)
    g = MaskGenerator(z_dim=4, size=8, widths=(4, 2)).eval()
    z = torch.randn(3, 4)
    logits = g.forward_logits(z)
    assert logits.shape == (3, 1, 8, 8)
    assert torch.allclose(torch.sigmoid(logits), g(z))
    with pytest.raises(ValueError, match="z must be a floating-point tensor of noise, got dtype torch.int64"):
        g.forward_logits(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="z must be a torch.Tensor"):
        g.forward_logits([[0.0] * 4])


def test_parameter_count_of_a_small_generator_by_hand():
    # size 8, widths (4, 2): start 2x2. linear 4 -> 4*2*2 (no bias) = 64; BN(4) = 8;
    # convT 4 -> 2, 4x4, no bias = 128; BN(2) = 4; convT 2 -> 1, 4x4, + bias = 33.
    assert param_count(MaskGenerator(z_dim=4, size=8, widths=(4, 2))) == 64 + 8 + 128 + 4 + 33
    # D size 8, widths (2, 4): conv 1 -> 2 = 32; conv 2 -> 4 = 128; BN(4) = 8; conv 4 -> 1 (2x2) + bias = 17
    assert param_count(MaskDiscriminator(size=8, widths=(2, 4))) == 32 + 128 + 8 + 17


def test_discriminator_gives_one_logit_per_mask_and_no_bn_on_its_input_layer():
    torch.manual_seed(0)
    d = MaskDiscriminator()
    assert d(torch.rand(3, 1, 64, 64)).shape == (3,)
    assert isinstance(d.features[0], nn.Conv2d) and isinstance(d.features[1], nn.LeakyReLU)
    norms = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.num_features for m in norms] == [128, 256, 512]
    small = MaskDiscriminator(size=32, widths=(8, 16, 32))
    assert small(torch.rand(2, 1, 32, 32)).shape == (2,)


@pytest.mark.parametrize("bad, word", [
    (torch.rand(2, 1, 32, 32), "64x64"),
    (torch.rand(2, 3, 64, 64), "1 channels"),
    (torch.rand(2, 64, 64), r"\(B, C, H, W\)"),
])
def test_discriminator_rejects_bad_masks(bad, word):
    with pytest.raises(ValueError, match=word):
        MaskDiscriminator()(bad)


def test_sizes_that_do_not_halve_evenly_are_refused():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(widths\\) = 16"):
        MaskGenerator(size=40)
    with pytest.raises(ValueError, match="widths"):
        MaskGenerator(widths=())
    with pytest.raises(ValueError, match=r"z must have shape \(B, 100\)"):
        MaskGenerator()(torch.zeros(2, 10))


def test_dcgan_init_draws_weights_from_the_stated_normals():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 64, 4), nn.ConvTranspose2d(64, 64, 4), nn.Linear(512, 512),
                        nn.BatchNorm2d(4096))
    dcgan_init_(net)
    for layer in net[:3]:
        w = layer.weight
        assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 5e-4
        assert torch.count_nonzero(layer.bias) == 0
    bn = net[3]
    assert abs(bn.weight.mean().item() - 1.0) < 2e-3 and abs(bn.weight.std().item() - 0.02) < 1e-3
    assert torch.count_nonzero(bn.bias) == 0


def test_mask_grid_tiles_masks_row_by_row():
    masks = torch.stack([torch.full((1, 2, 3), float(i) / 4) for i in range(5)])  # (5, 1, 2, 3)
    grid = mask_grid_image(masks, n_cols=3, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1)
    assert np.allclose(grid[1:3, 1:4], 0.0) and np.allclose(grid[4:6, 1:4], 0.75)  # masks 0 and 3
    assert np.allclose(grid[4:6, 9:12], 0.5)  # empty sixth cell stays at the pad value
    fig = plot_mask_grid(masks, n_cols=3, title="five")
    assert fig.axes[0].get_title() == "five"
    with pytest.raises(ValueError, match="masks"):
        mask_grid_image(torch.zeros(2, 3, 4, 4))
