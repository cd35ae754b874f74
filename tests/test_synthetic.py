"""SynthShapes: shapes, determinism, batch independence, normalisation, labels, imbalance, errors."""
import pytest
import torch
from torch.utils.data import DataLoader

from segan_lib.data import SynthShapes, synth_batch
from segan_lib.data import synthetic

SIZE = 32


def lowbias32_reference(x: int) -> int:
    """The lowbias32 hash (C. Wellons) in plain Python integers."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_hash_matches_plain_python_reference():
    values = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 123456789, 0xDEADBEEF]
    hashed = synthetic._hash32(torch.tensor(values, dtype=torch.int64))
    assert hashed.tolist() == [lowbias32_reference(v) for v in values]


def test_shapes_dtypes_and_attributes():
    data = SynthShapes(10, size=SIZE, num_classes=5)
    image, mask = data[3]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert mask.shape == (SIZE, SIZE) and mask.dtype == torch.int64
    images, masks = data.get_batch(torch.tensor([0, 9, 4]))
    assert images.shape == (3, 3, SIZE, SIZE) and masks.shape == (3, SIZE, SIZE)
    assert images.device == torch.device("cpu") and masks.device == torch.device("cpu")
    assert len(data) == 10 and data.in_channels == 3 and data.num_classes == 5
    assert data.CLASS_NAMES == ("background", "disc", "rectangle", "triangle", "ring")
    assert SynthShapes.CLASS_NAMES == synthetic.ALL_CLASS_NAMES and len(SynthShapes.CLASS_NAMES) == 6


def test_same_seed_identical_and_other_seed_different():
    index = torch.arange(6)
    images_a, masks_a = SynthShapes(6, size=SIZE, seed=3).get_batch(index)
    images_b, masks_b = SynthShapes(6, size=SIZE, seed=3).get_batch(index)
    assert torch.equal(images_a, images_b) and torch.equal(masks_a, masks_b)
    images_c, masks_c = SynthShapes(6, size=SIZE, seed=4).get_batch(index)
    assert not torch.equal(masks_a, masks_c)
    assert (images_a - images_c).abs().mean() > 0.1
    # different indices of one seed are different scenes too
    assert all(not torch.equal(masks_a[i], masks_a[i + 1]) for i in range(5))


def test_get_batch_equals_stacked_items():
    data = SynthShapes(12, size=SIZE, num_classes=6, seed=7)
    indices = torch.tensor([11, 0, 5, 5, 2])
    images, masks = data.get_batch(indices)
    items = [data[int(i)] for i in indices]
    assert torch.equal(images, torch.stack([image for image, _ in items]))
    assert torch.equal(masks, torch.stack([mask for _, mask in items]))


def test_sample_independent_of_batch_composition(monkeypatch):
    data = SynthShapes(40, size=SIZE)
    alone_image, alone_mask = data.get_batch(torch.tensor([5]))
    images, masks = data.get_batch(torch.arange(8))
    assert torch.equal(images[5], alone_image[0]) and torch.equal(masks[5], alone_mask[0])
    # also across chunk boundaries of the renderer (here 3 samples per chunk)
    monkeypatch.setattr(synthetic, "_PIXELS_PER_CHUNK", 3 * SIZE * SIZE)
    images, masks = data.get_batch(torch.tensor([30, 31, 7, 32, 5, 33, 34]))
    assert torch.equal(images[4], alone_image[0]) and torch.equal(masks[4], alone_mask[0])


def test_images_standardised_per_image_and_channel():
    images, _ = synth_batch(16, size=SIZE, seed=2)
    assert torch.allclose(images.mean(dim=(2, 3)), torch.zeros(16, 3), atol=1e-5)
    assert torch.allclose(images.std(dim=(2, 3), unbiased=False), torch.ones(16, 3), atol=1e-3)


@pytest.mark.parametrize("num_classes", [2, 3, 4, 5, 6])
def test_labels_in_range_and_every_class_appears(num_classes):
    _, masks = synth_batch(64, size=SIZE, num_classes=num_classes, seed=1)
    assert int(masks.min()) >= 0 and int(masks.max()) < num_classes
    assert set(torch.unique(masks).tolist()) == set(range(num_classes))


def test_binary_variant_marks_every_shape_as_foreground():
    binary = SynthShapes(16, size=SIZE, num_classes=5, binary=True, seed=9)
    assert binary.num_classes == 2 and binary.CLASS_NAMES == ("background", "foreground")
    images, masks = binary.get_batch(torch.arange(16))
    assert set(torch.unique(masks).tolist()) == {0, 1}
    multi_images, multi_masks = SynthShapes(16, size=SIZE, num_classes=5, seed=9).get_batch(torch.arange(16))
    assert torch.equal(masks, (multi_masks > 0).long()) and torch.equal(images, multi_images)


def test_class_imbalance_and_class_frequencies():
    data = SynthShapes(200, size=SIZE, num_classes=6, seed=0)
    freq = data.class_frequencies()
    assert freq.shape == (6,) and freq.dtype == torch.float64
    assert abs(float(freq.sum()) - 1.0) < 1e-12
    assert freq[0] > 0.75  # background dominates
    foreground = freq[1:]
    assert int(foreground.argmax()) == 0 and foreground.min() < 0.5 * foreground.max()  # discs most, some rare
    _, masks = data.get_batch(torch.arange(50))
    direct = torch.bincount(masks.flatten(), minlength=6).double() / masks.numel()
    assert torch.allclose(data.class_frequencies(50), direct, atol=0, rtol=0)


def test_foreground_ranges_from_small_to_large():
    _, masks = synth_batch(128, size=SIZE, seed=5)
    area = (masks > 0).flatten(1).double().mean(1)  # foreground fraction per image (1 to 5 shapes)
    assert area.min() < 0.05 and area.max() > 0.3 and 0.1 < area.median() < 0.3


def test_later_shapes_occlude_earlier_ones_and_disc_area_matches_formula():
    size = 64
    scene = {  # one image, two discs around the centre: slot 0 (radius 0.22), then slot 1 (radius 0.11)
        "active": torch.tensor([[True, True]]), "kind": torch.tensor([[0, 0]]),
        "cx": torch.tensor([[0.5, 0.5]]), "cy": torch.tensor([[0.5, 0.5]]),
        "radius": torch.tensor([[0.22, 0.11]]), "cos": torch.ones(1, 2), "sin": torch.zeros(1, 2),
        "extra": torch.zeros(1, 2),
    }
    ids = synthetic._paint_ids(scene, slice(None), size, 1, torch.empty(size * size, dtype=torch.int64))[0]
    assert ids[32, 32] == 2 and ids[32, 32 - 10] == 1 and ids[0, 0] == 0  # the later disc is on top
    small, large = (ids == 2).sum().item(), (ids >= 1).sum().item()
    assert abs(small - torch.pi * (0.11 * size) ** 2) < 0.05 * small
    assert abs(large - torch.pi * (0.22 * size) ** 2) < 0.03 * large


def test_dataloader_batches_match_get_batch():
    data = SynthShapes(6, size=SIZE, num_classes=3)
    images, masks = next(iter(DataLoader(data, batch_size=4, shuffle=False)))
    expected_images, expected_masks = data.get_batch(torch.arange(4))
    assert torch.equal(images, expected_images) and torch.equal(masks, expected_masks)


def test_iteration_stops_and_negative_index():
    data = SynthShapes(3, size=16)
    assert len(list(data)) == 3
    assert torch.equal(data[-1][1], data[2][1])


def test_synth_batch_equals_dataset_samples():
    images, masks = synth_batch(5, size=SIZE, num_classes=4, seed=11)
    expected_images, expected_masks = SynthShapes(5, size=SIZE, seed=11).get_batch(torch.arange(5))
    assert torch.equal(images, expected_images) and torch.equal(masks, expected_masks)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"size": 20}, "size"), ({"size": 8}, "size"), ({"size": 32.0}, "size"),
        ({"num_classes": 1}, "num_classes"), ({"num_classes": 7}, "num_classes"),
        ({"n": 0}, "n"), ({"n": 2.5}, "n"), ({"binary": "yes"}, "binary"),
        ({"seed": "0"}, "seed"), ({"device": "not-a-device"}, "device"),
    ],
)
def test_bad_constructor_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        SynthShapes(**{"n": 4, "size": SIZE, **kwargs})


def test_bad_indices_raise():
    data = SynthShapes(4, size=16)
    with pytest.raises(ValueError, match="index"):
        data[4]
    with pytest.raises(IndexError):
        data[-5]
    with pytest.raises(ValueError, match="index"):
        data["1"]
    with pytest.raises(ValueError, match=r"indices .*\[0, 4\)"):
        data.get_batch(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="indices must be a 1-D integer tensor"):
        data.get_batch(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="indices must be a 1-D integer tensor"):
        data.get_batch(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_samples"):
        data.class_frequencies(5)
    with pytest.raises(ValueError, match="batch_size"):
        synth_batch(0, size=16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cpu_images, cpu_masks = synth_batch(8, size=64, num_classes=6)
    gpu_images, gpu_masks = synth_batch(8, size=64, num_classes=6, device="cuda")
    assert gpu_images.device.type == "cuda" and gpu_masks.device.type == "cuda"
    assert (gpu_masks.cpu() == cpu_masks).double().mean() > 0.999
    assert (gpu_images.cpu() - cpu_images).abs().mean() < 1e-3
