"""SynthShapes: shapes, determinism, batch independence, normalisation, labels, imbalance, errors,
and the GPU path: the same samples, no host sync."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from segan_lib.data import SynthShapes, synth_batch
from segan_lib.data import synthetic, synthetic_scene, synthetic_shapes
from segan_lib.train.batches import TrainBatches

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
    hashed = synthetic_scene.hash32(torch.tensor(values, dtype=torch.int64))
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
    ids = synthetic_shapes.paint_ids(scene, slice(None), size, 1, torch.empty(size * size, dtype=torch.int64))[0]
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


def test_host_hash_equals_the_tensor_hash():
    values = [0, 1, 0x5EED, 0xFFFFFFFF, 987654321]
    assert [synthetic_scene.hash32_int(v) for v in values] == synthetic_scene.hash32(torch.tensor(values)).tolist()


@pytest.mark.parametrize("num_classes, binary", [(6, False), (3, False), (5, True)])
def test_fixed_size_painting_of_the_gpu_gives_the_cpu_samples_bit_for_bit(monkeypatch, num_classes, binary):
    data = SynthShapes(40, size=SIZE, num_classes=num_classes, binary=binary, seed=4)
    indices = torch.tensor([39, 0, 17, 17, 8, 23, 31, 2])
    expected = data.get_batch(indices)  # on the CPU: painted kind by kind, objects found with nonzero
    calls = []

    def fixed_size(*args, **kwargs):
        calls.append(kwargs.setdefault("fixed_size", True))
        return synthetic_shapes.paint_ids(*args, **kwargs)

    monkeypatch.setattr(synthetic, "paint_ids", fixed_size)
    images, masks = data.get_batch(indices)
    assert calls and all(calls)
    assert torch.equal(images, expected[0]) and torch.equal(masks, expected[1])


class StrayHostToDeviceCopies(TorchDispatchMode):
    """Records copies from the CPU to another device made outside ``synthetic_scene.host_to_device``
    (the one helper that copies through pinned memory, asynchronously, on CUDA)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_helper = 0
        self.helper_copies = 0
        self.stray: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        outputs = func(*args, **kwargs)
        produced = [o for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs])
                    if isinstance(o, torch.Tensor)]
        if any(t.device.type == "cpu" for t in tensors) and any(o.device.type != "cpu" for o in produced):
            if self.in_helper:
                self.helper_copies += 1
            else:
                self.stray.append(str(func))
        return outputs

    def wrap(self, helper):
        def host_to_device(x, device):
            self.in_helper += 1
            try:
                return helper(x, device)
            finally:
                self.in_helper -= 1
        return host_to_device


def test_rendering_on_a_device_reads_nothing_back_and_copies_asynchronously(monkeypatch):
    """The GPU path run on the 'meta' device, whose tensors hold no data: any read of a device
    value on the host (``item``, ``bool``, ``tolist``, ``nonzero``, boolean-mask indexing,
    ``.cpu()``) fails there, so rendering on meta proves the GPU path never synchronises. Host
    indices are allowed (the bounds check reads CPU memory). Every copy to the device goes
    through ``host_to_device`` (pinned memory, ``non_blocking=True`` on CUDA), and none through
    ``torch.tensor(..., device=...)``, a blocking copy."""
    real_tensor = torch.tensor

    def host_only_tensor(*args, **kwargs):
        assert kwargs.get("device") is None, "torch.tensor(..., device=...) is a blocking host-to-device copy"
        return real_tensor(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", host_only_tensor)
    monkeypatch.setattr(synthetic, "_noise_banks", {})  # the first copies of the tables are checked too
    monkeypatch.setattr(synthetic_scene, "_CONSTANTS", {})
    copies = StrayHostToDeviceCopies()
    for module in (synthetic, synthetic_scene):
        monkeypatch.setattr(module, "host_to_device", copies.wrap(synthetic_scene.host_to_device))
    data = SynthShapes(24, size=SIZE, num_classes=6, device="meta")
    with copies:
        images, masks = data.get_batch(torch.arange(8))
        image, mask = data[23]
        engine_batches = list(TrainBatches(data, batch_size=8, seed=0).epoch(0, 3))  # the engine's path
    assert images.shape == (8, 3, SIZE, SIZE) and images.device.type == "meta" and images.dtype == torch.float32
    assert masks.shape == (8, SIZE, SIZE) and masks.dtype == torch.int64 and image.shape == (3, SIZE, SIZE)
    assert [batch[0].shape[0] for batch in engine_batches] == [8, 8, 8]
    assert copies.helper_copies > 0 and copies.stray == []
    scene = synthetic_scene.draw_scenes(0, torch.arange(4, device="meta"), 5, False)
    buffer = torch.empty(4 * SIZE * SIZE, dtype=torch.int64, device="meta")
    with pytest.raises((NotImplementedError, RuntimeError)):  # the CPU painter needs nonzero: not on meta
        synthetic_shapes.paint_ids(scene, slice(None), SIZE, 5, buffer, fixed_size=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_from_host_indices_never_synchronise():
    data = SynthShapes(64, size=SIZE, num_classes=6, device="cuda")
    data.get_batch(torch.arange(4))  # first call: lazy CUDA initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(TrainBatches(data, batch_size=16, seed=0, pin_memory=True).epoch(0, 4))
        images, masks = data.get_batch(torch.arange(16, 32))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(batches[0][1].cpu(), data.get_batch(TrainBatches(data, batch_size=16, seed=0)
                                                           .index_batches(0, 4)[0])[1].cpu())
    assert images.device.type == "cuda" and masks.shape == (16, SIZE, SIZE)
