"""Paired-folder loader: layouts, mask formats, splits, normalisation, epochs and bad data."""
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segan_lib.data.files import read_image
from segan_lib.data.folders import FolderDataset
from segan_lib.data.palette import decode_colour_mask
from segan_lib.data.transforms import channel_stats, image_to_tensor

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


def write_pair(root: Path, stem: str, labels: np.ndarray, *, image_ext: str = ".png", mask: str = "index",
               seed: int = 0) -> None:
    """An RGB image (random colours, channel 0 brighter where the label is higher) and its mask."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (*labels.shape, 3), dtype=np.uint8)
    rgb[..., 0] = np.clip(labels.astype(int) * 60, 0, 255)
    Image.fromarray(rgb).save(root / "images" / f"{stem}{image_ext}")
    if mask == "index":
        Image.fromarray(labels.astype(np.uint8), mode="L").save(root / "masks" / f"{stem}.png")
    elif mask == "binary255":
        Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(root / "masks" / f"{stem}.png")
    elif mask == "colour":
        Image.fromarray(np.array(PALETTE, dtype=np.uint8)[labels]).save(root / "masks" / f"{stem}.png")


def labels_for(seed: int, shape=(16, 24), classes: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, shape).astype(np.uint8)


def make_tree(root: Path, count: int = 10, **kwargs) -> Path:
    for i in range(count):
        write_pair(root, f"p{i:02d}", labels_for(i), seed=i, **kwargs)
    return root


def loaded_masks(dataset: FolderDataset) -> dict[str, torch.Tensor]:
    return {img.stem: dataset[i][1] for i, (img, _) in enumerate(dataset.pairs)}


def test_index_masks_load_with_shapes_dtypes_and_attributes(tmp_path):
    make_tree(tmp_path, image_ext=".jpg")
    data = FolderDataset(tmp_path, "all", num_classes=3, size=(16, 24), augment=False)
    image, mask = data[0]
    assert image.shape == (3, 16, 24) and image.dtype == torch.float32
    assert mask.shape == (16, 24) and mask.dtype == torch.int64
    assert (data.num_classes, data.in_channels, data.ignore_index) == (3, 3, 255)
    assert data.class_names == ("class 0", "class 1", "class 2")
    for stem, loaded in loaded_masks(data).items():  # same size: labels pass through unchanged
        assert torch.equal(loaded, torch.from_numpy(labels_for(int(stem[1:]))).long())


def test_binary_masks_0_255_and_0_1_both_give_0_1(tmp_path):
    make_tree(tmp_path / "a", count=4, mask="binary255")
    make_tree(tmp_path / "b", count=4, mask="index")  # labels 0..2 -> not binary; rewrite as 0/1 below
    for i in range(4):
        Image.fromarray((labels_for(i) > 0).astype(np.uint8), mode="L").save(tmp_path / "b" / "masks" / f"p{i:02d}.png")
    a = FolderDataset(tmp_path / "a", "all", binary=True, size=(16, 24), augment=False)
    b = FolderDataset(tmp_path / "b", "all", binary=True, size=(16, 24), augment=False)
    assert a.num_classes == 2 and a.class_names == ("background", "foreground")
    for i in range(4):
        expected = torch.from_numpy((labels_for(i) > 0).astype(np.int64))
        assert torch.equal(a[i][1], expected) and torch.equal(b[i][1], expected)


def test_colour_masks_decode_through_the_palette(tmp_path):
    make_tree(tmp_path, count=3, mask="colour")
    data = FolderDataset(tmp_path, "all", palette=PALETTE, size=(16, 24), augment=False)
    assert data.num_classes == 3
    for stem, loaded in loaded_masks(data).items():
        assert torch.equal(loaded, torch.from_numpy(labels_for(int(stem[1:]))).long())
    rgb = np.array([[[0, 0, 0], [9, 9, 9]]], dtype=np.uint8)
    mapped = decode_colour_mask(rgb, {(0, 0, 0): 1, (9, 9, 9): 255})
    assert mapped.tolist() == [[1, 255]]
    with pytest.raises(ValueError, match=r"p00\.png.*colour image; pass palette"):
        FolderDataset(tmp_path, "all", num_classes=3, augment=False, size=16)[0]
    with pytest.raises(ValueError, match=r"colours not in the palette: \[\(0, 255, 0\)\]"):
        decode_colour_mask(np.array([[[0, 255, 0]]], dtype=np.uint8), PALETTE[:2], "m.png")


def test_implicit_split_follows_crc32_of_the_stem_and_explicit_split_folders(tmp_path):
    make_tree(tmp_path / "flat", count=20)
    train = FolderDataset(tmp_path / "flat", "train", num_classes=3, size=16)
    val = FolderDataset(tmp_path / "flat", "val", num_classes=3, size=16)
    expected_val = {f"p{i:02d}" for i in range(20) if zlib.crc32(f"p{i:02d}".encode()) % 1000 < 200}
    assert 0 < len(expected_val) < 20
    assert {img.stem for img, _ in val.pairs} == expected_val
    assert {img.stem for img, _ in train.pairs} == {f"p{i:02d}" for i in range(20)} - expected_val
    make_tree(tmp_path / "split" / "train", count=3)
    make_tree(tmp_path / "split" / "val", count=2)
    assert len(FolderDataset(tmp_path / "split", "val", num_classes=3, size=16)) == 2
    assert len(FolderDataset(tmp_path / "split", "all", num_classes=3, size=16)) == 5


def test_normalisation_uses_training_split_statistics(tmp_path):
    make_tree(tmp_path, count=20, image_ext=".tif")
    train = FolderDataset(tmp_path, "train", num_classes=3, size=(16, 24), augment=False)
    val = FolderDataset(tmp_path, "val", num_classes=3, size=(16, 24))
    mean, std = channel_stats(image_to_tensor(read_image(img)) for img, _ in train.pairs)
    assert np.allclose(train.mean, mean) and np.allclose(train.std, std)
    assert val.mean == train.mean and val.std == train.std
    pixels = torch.stack([train[i][0] for i in range(len(train))]).transpose(0, 1).flatten(1)  # (3, all pixels)
    torch.testing.assert_close(pixels.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels.std(1, correction=0), torch.ones(3), atol=1e-4, rtol=0)


def test_augmentation_depends_on_seed_epoch_and_index_only(tmp_path):
    make_tree(tmp_path, count=4)
    data = FolderDataset(tmp_path, "all", num_classes=3, size=12, augment=True, seed=5)
    first = [data[i][1] for i in range(4)]
    again = FolderDataset(tmp_path, "all", num_classes=3, size=12, augment=True, seed=5)
    again.set_epoch(3)
    again.set_epoch(0)
    assert all(torch.equal(a, again[i][1]) for i, a in enumerate(first))
    data.set_epoch(1)
    assert any(not torch.equal(a, data[i][1]) for i, a in enumerate(first))
    data.set_epoch(0)
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=0)
    assert torch.equal(torch.cat([m for _, m in loader]), torch.stack(first))


def test_classes_txt_names_the_classes(tmp_path):
    make_tree(tmp_path, count=3)
    (tmp_path / "classes.txt").write_text("sky\nroad\n# comment\ncar\n")
    assert FolderDataset(tmp_path, "all", size=16).class_names == ("sky", "road", "car")
    with pytest.raises(ValueError, match="classes.txt"):
        FolderDataset(tmp_path, "all", num_classes=4, size=16)


def test_missing_root_names_the_layout_and_the_readme(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        FolderDataset(tmp_path / "nowhere", num_classes=2)
    message = str(info.value)
    assert "nowhere" in message and "ROOT/images" in message and "ROOT/masks" in message
    assert "data/README.md" in message


def test_missing_mask_names_the_image(tmp_path):
    make_tree(tmp_path, count=3)
    (tmp_path / "masks" / "p01.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask missing for image .*p01\.png.*masks/p01\.png"):
        FolderDataset(tmp_path, "all", num_classes=3)


def test_truncated_image_names_the_file(tmp_path):
    make_tree(tmp_path, count=3, image_ext=".jpg")
    path = tmp_path / "images" / "p01.jpg"
    path.write_bytes(path.read_bytes()[:200])
    data = FolderDataset(tmp_path, "all", num_classes=3, mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(ValueError, match=r"image .*p01\.jpg cannot be read.*truncated"):
        data[1]
    (tmp_path / "images" / "p02.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"p02\.jpg cannot be read"):
        data[2]


def test_size_mismatch_names_both_files(tmp_path):
    make_tree(tmp_path, count=2)
    Image.fromarray(np.zeros((10, 24), np.uint8)).save(tmp_path / "masks" / "p00.png")
    data = FolderDataset(tmp_path, "all", num_classes=3, size=16)
    with pytest.raises(ValueError, match=r"image .*p00\.png is 24x16 pixels but its mask .*p00\.png is 24x10"):
        data[0]


def test_label_outside_the_classes_names_the_file(tmp_path):
    make_tree(tmp_path, count=2)
    labels = labels_for(1)
    labels[0, 0] = 7
    Image.fromarray(labels, mode="L").save(tmp_path / "masks" / "p01.png")
    data = FolderDataset(tmp_path, "all", num_classes=3, size=16)
    with pytest.raises(ValueError, match=r"mask .*p01\.png holds label values \[7\] outside the 3 classes"):
        data[1]
    binary = FolderDataset(tmp_path, "all", binary=True, size=16)
    with pytest.raises(ValueError, match=r"binary mask .*p00\.png holds values \[2\]"):
        binary[0]


def test_resumed_epoch_draws_the_same_augmented_batches_with_any_workers(tmp_path):
    from segan_lib.train.batches import TrainBatches

    make_tree(tmp_path, count=8)
    options = dict(num_classes=3, size=12, augment=True, seed=1)
    unbroken = TrainBatches(FolderDataset(tmp_path, "all", **options), batch_size=2, seed=0)
    list(unbroken.epoch(0, steps=4))
    expected = list(unbroken.epoch(1, steps=4))[2:]
    for workers in (0, 2):  # a fresh process resuming at step 2 of epoch 1
        resumed = TrainBatches(FolderDataset(tmp_path, "all", **options), batch_size=2, seed=0, num_workers=workers)
        got = list(resumed.epoch(1, steps=4, start=2))
        assert len(got) == 2
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))


def test_sixteen_bit_greyscale_images_scale_to_eight_bits(tmp_path):
    values = np.array([[0, 257, 65535], [32896, 1000, 128]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "grey.png")
    expected = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(read_image(tmp_path / "grey.png"), np.repeat(expected[..., None], 3, axis=2))
    Image.fromarray(np.zeros((2, 3), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif is a floating-point"):
        read_image(tmp_path / "float.tif")
