"""Paired transforms: image and mask move together, labels are never interpolated."""
import numpy as np
import pytest
import torch

from segan_lib.data.transforms import (
    PairedTransform, as_size, channel_stats, denormalize, hflip_pair, image_to_tensor, normalize, random_crop_pair,
    resize_image, resize_pair,
)


def block_pair(height: int = 64, width: int = 96, block: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A mask of random labels (with 255 = ignore) constant on ``block`` squares, and an image
    whose three channels all equal ``label / 255``: where the mask goes, the image must follow."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 6, (height // block, width // block), generator=g)
    coarse[0, 0] = 255
    mask = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)  # (H, W)
    image = (mask.float() / 255).expand(3, -1, -1).clone()  # (3, H, W)
    return image, mask


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label (away from block edges)."""
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1, 1, 1), mode="replicate")
    patches = torch.nn.functional.unfold(padded, 3)  # (1, 9, H*W)
    return (patches == patches[:, 4:5]).all(1).reshape(mask.shape)


def test_resize_never_invents_labels_and_keeps_ignore():
    image, mask = block_pair(block=4)
    for size in [(37, 53), (128, 200), (9, 9)]:
        resized_image, resized_mask = resize_pair(image, mask, size)
        assert resized_image.shape == (3, *size) and resized_mask.shape == size
        assert resized_mask.dtype == torch.int64
        assert set(resized_mask.unique().tolist()) <= set(mask.unique().tolist())
    _, up = resize_pair(image, mask, (128, 192))  # 2x: every label, 255 included, survives
    assert set(up.unique().tolist()) == set(mask.unique().tolist())


def test_resize_image_is_bilinear_and_mask_nearest():
    image = torch.tensor([[[0.0, 1.0]]])  # (1, 1, 2)
    mask = torch.tensor([[3, 7]])
    resized_image, resized_mask = resize_pair(image, mask, (1, 4))
    # align_corners=False: output centres at input coords -0.25, 0.25, 0.75, 1.25 (clamped)
    torch.testing.assert_close(resized_image, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))
    assert resized_mask.tolist() == [[3, 3, 7, 7]]


def test_crop_and_flip_move_image_and_mask_identically():
    image, mask = block_pair(block=1)  # every pixel its own label
    g = torch.Generator().manual_seed(3)
    cropped_image, cropped_mask = random_crop_pair(image, mask, (20, 30), g)
    assert cropped_mask.shape == (20, 30)
    torch.testing.assert_close(cropped_image[0], cropped_mask.float() / 255)
    flipped_image, flipped_mask = hflip_pair(cropped_image, cropped_mask)
    assert torch.equal(flipped_mask, cropped_mask.flip(-1))
    torch.testing.assert_close(flipped_image[0], flipped_mask.float() / 255)


def test_augmented_transform_keeps_image_and_mask_aligned():
    image, mask = block_pair()
    transform = PairedTransform((48, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), augment=True, max_scale=1.5)
    for seed in range(12):
        out_image, out_mask = transform(image, mask, torch.Generator().manual_seed(seed))
        assert out_image.shape == (3, 48, 64) and out_mask.shape == (48, 64)
        inside = interior(out_mask)
        assert inside.float().mean() > 0.5
        torch.testing.assert_close(out_image[0][inside], out_mask[inside].float() / 255, atol=1e-5, rtol=0)


def test_augmentation_flips_about_half_the_time():
    image, mask = block_pair()
    transform = PairedTransform((64, 96), mean=(0.0,) * 3, std=(1.0,) * 3, augment=True, max_scale=1.0)
    outcomes = []
    for seed in range(16):
        out_image, out_mask = transform(image, mask, torch.Generator().manual_seed(seed))
        flipped = torch.equal(out_mask, mask.flip(-1))
        assert flipped or torch.equal(out_mask, mask)  # no scale: the crop is the whole image
        torch.testing.assert_close(out_image, image.flip(-1) if flipped else image)
        outcomes.append(flipped)
    assert 0 < sum(outcomes) < len(outcomes)


def test_transform_is_a_function_of_the_generator_seed():
    image, mask = block_pair()
    transform = PairedTransform(32, mean=(0.5,) * 3, std=(0.25,) * 3, augment=True)
    first = transform(image, mask, torch.Generator().manual_seed(7))
    again = transform(image, mask, torch.Generator().manual_seed(7))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    others = [transform(image, mask, torch.Generator().manual_seed(s))[1] for s in range(8)]
    assert any(not torch.equal(first[1], other) for other in others)


def test_eval_transform_is_resize_then_normalize_by_hand():
    image = torch.tensor([[[0.0, 0.4], [0.8, 1.2]], [[1.0, 1.0], [1.0, 1.0]], [[0.2, 0.2], [0.6, 0.6]]])  # (3, 2, 2)
    mask = torch.tensor([[0, 1], [2, 255]])
    transform = PairedTransform((4, 4), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), augment=False)
    out_image, out_mask = transform(image, mask)
    # nearest: each label becomes a 2x2 block, 255 included
    assert out_mask.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]
    # bilinear 2 -> 4, align_corners=False: output centres at input -0.25, 0.25, 0.75, 1.25 (clamped),
    # so along each axis out = W x with rows of W: (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1)
    weights = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])  # (4, 2)
    channel0 = weights @ image[0] @ weights.T  # (4, 4)
    torch.testing.assert_close(channel0[1], torch.tensor([0.2, 0.3, 0.5, 0.6]))  # a row worked by hand
    torch.testing.assert_close(out_image[0], (channel0 - 0.1) / 0.5)
    torch.testing.assert_close(out_image[1], torch.full((4, 4), (1.0 - 0.2) / 0.25))
    torch.testing.assert_close(out_image[2, :, 0], (torch.tensor([0.2, 0.3, 0.5, 0.6]) - 0.3) / 2.0)


def test_normalize_formula_and_denormalize_inverse():
    image = torch.tensor([[[0.0, 1.0]], [[0.5, 0.5]], [[0.2, 0.8]]])  # (3, 1, 2)
    out = normalize(image, (0.5, 0.5, 0.5), (0.5, 0.25, 0.3))
    expected = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]], [[-1.0, 1.0]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(denormalize(out, (0.5, 0.5, 0.5), (0.5, 0.25, 0.3)), image)


def test_channel_stats_pool_all_pixels_by_hand():
    first = torch.tensor([[[0.0, 1.0]], [[2.0, 2.0]]])  # (2, 1, 2)
    second = torch.tensor([[[2.0], [5.0]], [[4.0], [4.0]]])  # (2, 2, 1): a different size
    mean, std = channel_stats([first, second])
    # channel 0 pixels 0, 1, 2, 5: mean 2, E[x^2] = 30 / 4, std = sqrt(7.5 - 4) = sqrt(3.5)
    # channel 1 pixels 2, 2, 4, 4: mean 3, std 1
    assert mean == pytest.approx((2.0, 3.0)) and std == pytest.approx((3.5**0.5, 1.0))
    _, constant_std = channel_stats([torch.full((3, 2, 2), 0.3)])
    assert constant_std == (1.0, 1.0, 1.0)  # a constant channel is only centred
    with pytest.raises(ValueError, match="at least one image"):
        channel_stats([])


def test_image_to_tensor_scales_to_unit_range():
    array = np.array([[[0, 128, 255]]], dtype=np.uint8)  # (1, 1, 3)
    tensor = image_to_tensor(array)
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))


def test_bad_arguments_raise_clear_errors():
    image, mask = block_pair()
    with pytest.raises(ValueError, match="crop size"):
        random_crop_pair(image, mask, (65, 10))
    with pytest.raises(ValueError, match="differ in height/width"):
        resize_pair(image, mask[:-1], 32)
    with pytest.raises(ValueError, match="int64"):
        resize_pair(image, mask.int(), 32)
    with pytest.raises(ValueError, match="std must be > 0"):
        PairedTransform(32, mean=(0.5,) * 3, std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="3 entries"):
        normalize(image, (0.5, 0.5), (1.0, 1.0))
    with pytest.raises(ValueError, match="size"):
        PairedTransform(0, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="max_scale"):
        PairedTransform(32, mean=(0.5,) * 3, std=(0.5,) * 3, max_scale=0.5)
    with pytest.raises(ValueError, match="mean and std must have 3 entries"):
        denormalize(image, (0.5,), (0.25,))  # one value is not silently broadcast over 3 channels
    with pytest.raises(ValueError, match=r"image must be a float tensor of shape \(C, H, W\) or \(B, C, H, W\)"):
        normalize(image[0], (0.5,), (1.0,))
    with pytest.raises(ValueError, match=r"image must be a float tensor of shape \(C, H, W\), got torch.int64"):
        resize_image(mask[None], 8)
    with pytest.raises(ValueError, match="image must be a uint8 array"):
        image_to_tensor(np.zeros((2, 2, 3), np.float32))


@pytest.mark.parametrize("size, expected", [(5, (5, 5)), ((3, 7), (3, 7)), ([4, 2], (4, 2)), (np.int64(6), (6, 6))])
def test_as_size_accepts_an_int_or_a_pair(size, expected):
    assert as_size(size) == expected


@pytest.mark.parametrize("size", [0, -3, (3, 0), (1, 2, 3), 2.5, (2.0, 3.0), "64", True, None])
def test_as_size_names_the_argument(size):
    with pytest.raises(ValueError, match=r"crop must be a positive int or a \(height, width\) pair"):
        as_size(size, "crop")


def test_resize_image_keeps_an_image_of_the_target_size_and_antialiases_when_shrinking():
    image = torch.arange(16.0).reshape(1, 4, 4)
    assert resize_image(image, (4, 4)) is image
    # Antialiased 2x shrink: a triangle filter stretched 2x, centred on each output pixel.
    # Output 0's centre lies at input 1.0 (pixel i covers [i, i + 1]): pixels 0, 1, 2 get
    # weights 1 - |i + 0.5 - 1| / 2 = 3/4, 3/4, 1/4, normalised to 3/7, 3/7, 1/7; output 1 by
    # symmetry takes pixels 1, 2, 3 with 1/7, 3/7, 3/7. Along one axis values 0, 1, 2, 3 give
    # 5/7 and 16/7; image[r, c] = 4 r + c gives out = 4 a_r + a_c. (Without antialiasing
    # the result would be the 2x2 block means 2.5, 4.5, 10.5, 12.5.)
    expected = torch.tensor([[[4 * 5 + 5, 4 * 5 + 16], [4 * 16 + 5, 4 * 16 + 16]]]) / 7
    torch.testing.assert_close(resize_image(image, 2), expected)
