"""Paired transforms: image and mask move together, labels are never interpolated."""
import numpy as np
import pytest
import torch

from segan_lib.data.transforms import (
    PairedTransform, channel_stats, denormalize, hflip_pair, image_to_tensor, normalize, random_crop_pair,
    resize_pair,
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


def test_eval_transform_is_resize_then_normalize():
    image, mask = block_pair()
    transform = PairedTransform((32, 48), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), augment=False)
    out_image, out_mask = transform(image, mask)
    ref_image, ref_mask = resize_pair(image, mask, (32, 48))
    assert torch.equal(out_mask, ref_mask)
    mean, std = torch.tensor([0.1, 0.2, 0.3])[:, None, None], torch.tensor([0.5, 0.25, 2.0])[:, None, None]
    expected = (ref_image - mean) / std
    torch.testing.assert_close(out_image, expected)


def test_normalize_formula_and_denormalize_inverse():
    image = torch.tensor([[[0.0, 1.0]], [[0.5, 0.5]], [[0.2, 0.8]]])  # (3, 1, 2)
    out = normalize(image, (0.5, 0.5, 0.5), (0.5, 0.25, 0.3))
    expected = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]], [[-1.0, 1.0]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(denormalize(out, (0.5, 0.5, 0.5), (0.5, 0.25, 0.3)), image)


def test_channel_stats_match_pooled_mean_and_population_std():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 5, 7, generator=g) * s for s in (1.0, 0.5, 2.0)] + [torch.rand(3, 4, 4, generator=g)]
    mean, std = channel_stats(images)
    pooled = torch.cat([im.flatten(1) for im in images], dim=1).double()  # (3, all pixels)
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), pooled.mean(1))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), pooled.std(1, correction=0))
    _, constant_std = channel_stats([torch.full((3, 2, 2), 0.3)])
    assert constant_std == (1.0, 1.0, 1.0)


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
