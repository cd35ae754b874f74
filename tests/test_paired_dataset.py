"""The base class of the file datasets: items, normalisation statistics, seeding and argument errors."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segan_lib.data.paired import PairedSegmentationDataset, training_stats


class IndexMasks(PairedSegmentationDataset):
    """The smallest real subclass: mask values are the labels."""

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return raw.astype(np.int64)


def write_pair(folder: Path, stem: str, rgb: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image, mask = folder / f"{stem}.png", folder / f"{stem}_mask.png"
    Image.fromarray(rgb.astype(np.uint8), mode="RGB").save(image)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(mask)
    return image, mask


def solid(colour: tuple[int, int, int], shape=(2, 2)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (*shape, 3)).copy()


NAMES = ("background", "thing")


def test_training_stats_of_two_solid_images_by_hand(tmp_path):
    pairs = [write_pair(tmp_path, "a", solid((51, 102, 153)), np.zeros((2, 2))),
             write_pair(tmp_path, "b", solid((153, 102, 51)), np.zeros((2, 2)))]
    # channels in [0, 1]: (0.2, 0.4, 0.6) and (0.6, 0.4, 0.2) -> mean 0.4 each, population std
    # 0.2, 0 and 0.2; a constant channel gets std 1 so that normalising only centres it.
    mean, std = training_stats(pairs, 2)
    np.testing.assert_allclose(mean, (0.4, 0.4, 0.4), atol=1e-6)
    np.testing.assert_allclose(std, (0.2, 1.0, 0.2), atol=1e-6)
    data = IndexMasks(pairs, class_names=NAMES, stats_pairs=pairs, size=2)
    assert data.mean == mean and data.std == std
    image, _ = data[0]  # channel 0: (0.2 - 0.4) / 0.2 = -1; channel 1: 0; channel 2: +1
    torch.testing.assert_close(image, torch.tensor([-1.0, 0.0, 1.0])[:, None, None].expand(3, 2, 2))
    with pytest.raises(ValueError, match="training split is empty.*pass mean= and std="):
        training_stats([], 2)


def test_items_normalise_by_hand_and_keep_labels(tmp_path):
    rgb = np.array([[[0, 51, 255], [102, 204, 153]]], np.uint8)  # (1, 2, 3)
    labels = np.array([[1, 255]])
    pair = write_pair(tmp_path, "x", rgb, labels)
    data = IndexMasks([pair], class_names=NAMES, stats_pairs=[], size=(1, 2),
                      mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    image, mask = data[0]
    # (x / 255 - 0.5) / std_c: channel 0 (0, 102) -> (-1, -0.2); channel 1 (51, 204) -> (-1.2, 1.2)
    expected = torch.tensor([[[-1.0, -0.2]], [[-1.2, 1.2]], [[0.5, 0.1]]])
    torch.testing.assert_close(image, expected)
    assert mask.dtype == torch.int64 and mask.tolist() == [[1, 255]]
    raw_image, raw_labels = data.load_pair(0)
    assert raw_image.dtype == np.uint8 and np.array_equal(raw_image, rgb)
    assert raw_labels.dtype == np.int64 and raw_labels.tolist() == [[1, 255]]


def test_load_pair_names_the_files_of_a_bad_pair(tmp_path):
    wrong_size = write_pair(tmp_path, "big", solid((0, 0, 0), (4, 6)), np.zeros((4, 5)))
    out_of_range = write_pair(tmp_path, "bad", solid((0, 0, 0)), np.array([[0, 1], [2, 9]]))
    data = IndexMasks([wrong_size, out_of_range], class_names=NAMES, stats_pairs=[], mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match=r"image .*big\.png is 6x4 pixels but its mask .*big_mask\.png is 5x4"):
        data[0]
    with pytest.raises(ValueError, match=r"mask .*bad_mask\.png holds label values \[2, 9\] outside the 2 classes"):
        data[1]


def test_the_base_class_needs_a_mask_decoder(tmp_path):
    pair = write_pair(tmp_path, "x", solid((1, 2, 3)), np.zeros((2, 2)))
    base = PairedSegmentationDataset([pair], class_names=NAMES, stats_pairs=[pair], size=2)
    with pytest.raises(NotImplementedError, match="PairedSegmentationDataset must implement decode_mask"):
        base[0]


def test_n_and_indexing(tmp_path):
    pairs = [write_pair(tmp_path, f"p{i}", solid((i, i, i)), np.full((2, 2), i % 2)) for i in range(4)]
    data = IndexMasks(pairs, class_names=NAMES, stats_pairs=pairs, size=2, n=3)
    assert len(data) == 3 and data.pairs == pairs[:3]
    assert torch.equal(data[-1][0], data[2][0]) and data[-1][1].tolist() == [[0, 0], [0, 0]]
    with pytest.raises(IndexError, match="index 3 out of range for 3 pairs"):
        data[3]
    with pytest.raises(IndexError, match="index -4"):
        data[-4]


def test_augmentation_draws_are_a_function_of_seed_epoch_and_index(tmp_path):
    pair = write_pair(tmp_path, "x", solid((9, 9, 9), (8, 8)), np.zeros((8, 8)))
    data = IndexMasks([pair], class_names=NAMES, stats_pairs=[pair], size=4, seed=3)

    def draws(dataset: IndexMasks, index: int) -> torch.Tensor:
        return torch.rand(5, generator=dataset.sample_generator(index))

    first = draws(data, 0)
    assert torch.equal(first, draws(IndexMasks([pair], class_names=NAMES, stats_pairs=[pair], size=4, seed=3), 0))
    assert not torch.equal(first, draws(data, 1))  # another index
    data.set_epoch(1)
    assert data.epoch == 1 and not torch.equal(first, draws(data, 0))  # another epoch
    data.set_epoch(0)
    assert torch.equal(first, draws(data, 0))
    assert not torch.equal(first, draws(IndexMasks([pair], class_names=NAMES, stats_pairs=[pair], size=4), 0))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="epoch must be an int >= 0"):
            data.set_epoch(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be a positive number of pairs"),
    ({"n": 1.5}, "n must be a positive number of pairs"),
    ({"seed": -1}, "seed must be an int >= 0"),
    ({"seed": True}, "seed must be an int >= 0"),
    ({"mean": (0.5, 0.5, 0.5)}, "give both mean and std or neither"),
    ({"class_names": ("only",)}, "class_names must name at least 2 classes"),
    ({"pairs": []}, "IndexMasks has no image/mask pairs"),
    ({"size": 0}, "size must be a positive int"),
    ({"mean": (0.5, 0.5), "std": (1.0, 1.0)}, "mean and std must have 3 entries"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    pair = write_pair(tmp_path, "x", solid((1, 2, 3)), np.zeros((2, 2)))
    arguments = {"pairs": [pair], "class_names": NAMES, "stats_pairs": [pair], "size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        IndexMasks(arguments.pop("pairs"), **arguments)
