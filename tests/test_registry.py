"""build_dataset: one name -> the right dataset, split sizes, seeds and clear errors."""
from pathlib import Path

import pytest
import torch

from segan_lib.data.folders import FolderDataset
from segan_lib.data.registry import DATASET_NAMES, build_dataset
from segan_lib.data.synthetic import SynthShapes

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def test_synth_uses_seed_for_train_and_seed_plus_one_for_a_smaller_val():
    train = build_dataset("synth", None, "train", size=32, seed=3, n=40, num_classes=3)
    val = build_dataset("synth", None, "val", size=32, seed=3, n=40, num_classes=3)
    assert isinstance(train, SynthShapes) and (len(train), train.seed, train.num_classes) == (40, 3, 3)
    assert (len(val), val.seed) == (8, 4)
    assert torch.equal(val[0][1], SynthShapes(8, size=32, num_classes=3, seed=4)[0][1])
    assert build_dataset("synth", None, "train", size=16, binary=True, n=8).num_classes == 2


def test_folders_on_the_committed_sample_augments_train_only():
    train = build_dataset("folders", str(SAMPLE), "train", size=32, n=10)
    val = build_dataset("folders", str(SAMPLE), "val", size=32, n=10)
    assert isinstance(train, FolderDataset) and (len(train), train.num_classes) == (10, 4)
    assert train.transform.augment and not val.transform.augment
    assert len(val) == 2  # max(1, n // 5)
    assert not build_dataset("folders", SAMPLE, "train", size=32, augment=False).transform.augment
    image, mask = train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


@pytest.mark.parametrize("name", ["folders", "voc", "cityscapes", "ade20k"])
def test_missing_root_points_at_the_readme(name, tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="data/README.md"):
        build_dataset(name, str(tmp_path / "absent"), "train")
    with pytest.raises(ValueError, match="root is required"):
        build_dataset(name, None, "train")


def test_bad_arguments():
    assert DATASET_NAMES == ("synth", "folders", "voc", "cityscapes", "ade20k")
    with pytest.raises(ValueError, match="name must be one of"):
        build_dataset("coco", None, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset("synth", None, "test")
    with pytest.raises(ValueError, match="n must be a positive"):
        build_dataset("synth", None, "train", n=0)
    with pytest.raises(ValueError, match="binary=True is only for"):
        build_dataset("voc", "/nowhere", "train", binary=True)


def test_split_sizes_by_hand():
    from segan_lib.data.registry import file_split_cap, synth_split_size

    assert (synth_split_size(None, "train"), synth_split_size(None, "val")) == (1000, 200)
    assert (synth_split_size(100, "train"), synth_split_size(100, "val"), synth_split_size(20, "val")) == (100, 20, 8)
    assert file_split_cap(None, "train") is None and file_split_cap(None, "val") is None
    assert (file_split_cap(12, "train"), file_split_cap(12, "val"), file_split_cap(3, "val")) == (12, 2, 1)


def test_num_classes_defaults_to_four_shapes_or_the_folder_class_list(tmp_path):
    assert build_dataset("synth", None, "train", size=16, n=8).num_classes == 4
    assert build_dataset("synth", None, "train", size=16, n=8, num_classes=3).num_classes == 3
    assert build_dataset("folders", SAMPLE, "train", size=16, n=4).class_names == (
        "background", "disc", "rectangle", "triangle")  # from data/sample/classes.txt
    with pytest.raises(ValueError, match=r"5 classes expected .* class names list 4"):  # classes.txt disagrees
        build_dataset("folders", SAMPLE, "train", size=16, n=4, num_classes=5)
    from segan_lib.data.export import export_synthshapes

    export_synthshapes(tmp_path, 4, size=16, binary=True)
    binary = build_dataset("folders", tmp_path, "train", size=16, binary=True, num_classes=4)  # the CLI's default
    assert binary.num_classes == 2 and binary.binary
