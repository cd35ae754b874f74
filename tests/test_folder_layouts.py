"""Paired folders: file discovery, split folders, mask formats and the arguments of FolderDataset."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segan_lib.data.folders import FolderDataset, files_by_stem, list_folder_pairs, read_class_names

LABELS = np.array([[0, 1, 1, 2], [2, 0, 1, 255]], np.uint8)  # (2, 4)


def write_pair(root: Path, stem: str, labels: np.ndarray = LABELS, *, mask_ext: str = ".png",
               mask_mode: str = "L") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rgb = np.stack([labels * 50, 255 - labels, np.full_like(labels, 7)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(root / "images" / f"{stem}.png")
    if mask_mode == "LA":  # grey + alpha, as some editors save masks
        grey_alpha = np.stack([labels, np.full_like(labels, 255)], -1)  # (H, W, 2)
        Image.fromarray(grey_alpha, mode="LA").save(root / "masks" / f"{stem}.png")
    else:
        Image.fromarray(labels, mode="L").save(root / "masks" / f"{stem}{mask_ext}")


def test_files_by_stem_skips_hidden_and_other_files_and_refuses_twins(tmp_path):
    for name in ("b.png", "a.tif", ".a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert files_by_stem(tmp_path, (".png", ".tif")) == {"a": tmp_path / "a.tif", "b": tmp_path / "b.png"}
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"a\.png and .*a\.tif share the stem 'a': keep one file per stem"):
        files_by_stem(tmp_path, (".png", ".tif"))


def test_list_folder_pairs_matches_stems_and_names_what_is_missing(tmp_path):
    for stem in ("b", "a"):
        write_pair(tmp_path, stem)
    (tmp_path / "masks" / "orphan.png").write_bytes(b"x")  # a mask without an image is left out
    pairs = list_folder_pairs(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.png"), ("b.png", "b.png")]
    with pytest.raises(FileNotFoundError, match=r"folder .*nowhere does not exist: expected ROOT/images.*README"):
        list_folder_pairs(tmp_path / "nowhere", tmp_path / "masks")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no images \(\.png, \.jpg.*\) in .*empty"):
        list_folder_pairs(tmp_path / "empty", tmp_path / "masks")
    for stem in ("c", "d"):
        Image.new("RGB", (4, 2)).save(tmp_path / "images" / f"{stem}.png")
    with pytest.raises(FileNotFoundError, match=r"mask missing for image .*c\.png.*\(1 more images have no mask\)"):
        list_folder_pairs(tmp_path / "images", tmp_path / "masks")


def test_jpeg_masks_are_refused_when_the_dataset_is_built(tmp_path):
    write_pair(tmp_path, "a")
    write_pair(tmp_path, "b", mask_ext=".jpg")
    with pytest.raises(ValueError, match=r"mask .*b\.jpg is a JPEG: lossy compression changes label values"):
        FolderDataset(tmp_path, "all", num_classes=3)


def test_grey_alpha_masks_read_as_their_grey_values(tmp_path):
    write_pair(tmp_path, "a", mask_mode="LA")
    data = FolderDataset(tmp_path, "all", num_classes=3, size=(2, 4), augment=False)
    assert data[0][1].tolist() == LABELS.astype(int).tolist()


def test_explicit_train_folder_needs_no_val_folder_for_training(tmp_path):
    for stem in ("a", "b"):
        write_pair(tmp_path / "train", stem)
    train = FolderDataset(tmp_path, "train", num_classes=3, size=(2, 4))
    assert [image.name for image, _ in train.pairs] == ["a.png", "b.png"]
    with pytest.raises(FileNotFoundError, match=r"folder .*val/images does not exist"):
        FolderDataset(tmp_path, "val", num_classes=3, size=(2, 4))


def test_read_class_names_skips_blanks_and_comments(tmp_path):
    (tmp_path / "classes.txt").write_text("# my classes\nsky\n\n  road  \n  # indented comment\ncar\n")
    assert read_class_names(tmp_path / "classes.txt") == ["sky", "road", "car"]


def test_class_count_from_a_colour_list_palette(tmp_path):
    write_pair(tmp_path, "a")
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    data = FolderDataset(tmp_path, "all", palette=palette, size=(2, 4))  # single-channel masks: indices
    assert data.num_classes == 4 and data.class_names == ("class 0", "class 1", "class 2", "class 3")
    with pytest.raises(ValueError, match="num_classes is required for the masks in"):
        FolderDataset(tmp_path, "all", palette={(0, 0, 0): 0})  # a mapping does not say how many classes


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "test"}, r"split must be one of \('train', 'val', 'all'\), got 'test'"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), got 1\.0"),
    ({"val_fraction": -0.1}, "val_fraction must be in"),
    ({"num_classes": 1}, "num_classes must be >= 2, got 1"),
    ({"num_classes": "3"}, "num_classes must be an int >= 2 or None, got '3'"),
    ({"num_classes": 3, "binary": True}, "binary=True means 2 classes.*num_classes=3"),
    ({"num_classes": None}, "num_classes is required for the masks in .*classes.txt.*binary=True"),
    ({"class_names": ["a", "b"]}, r"3 classes expected .* but class names list 2: \['a', 'b'\]"),
    ({"split": "val", "val_fraction": 0.0}, r"split 'val' of .* is empty \(val_fraction=0\.0\)"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    write_pair(tmp_path, "a")
    arguments = {"split": "all", "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        FolderDataset(tmp_path, arguments.pop("split"), **arguments)


def test_n_keeps_the_first_pairs_and_size_is_checked(tmp_path):
    for stem in ("c", "a", "b"):
        write_pair(tmp_path, stem)
    data = FolderDataset(tmp_path, "all", num_classes=3, size=(2, 4), n=2)
    assert [image.stem for image, _ in data.pairs] == ["a", "b"]
    assert torch.equal(data[1][1], torch.from_numpy(LABELS.astype(np.int64)))
    with pytest.raises(ValueError, match=r"size must be a positive int or a \(height, width\) pair.*2\.5"):
        FolderDataset(tmp_path, "all", num_classes=3, size=2.5)
