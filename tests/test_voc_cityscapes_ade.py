"""VOC, Cityscapes and ADE20K loaders on tiny generated trees in each official layout."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segan_lib.data.ade20k import (
    ADE20K_CLASSES, ADE20KSegmentation, ade20k_labels, ade20k_pairs, find_ade20k_root,
)
from segan_lib.data.cityscapes import (
    CITYSCAPES_CLASSES, CITYSCAPES_LABELS, LABEL_ID_TO_TRAIN_ID, CityscapesLabel, CityscapesSegmentation,
    cityscapes_pairs,
    label_ids_to_train_ids,
)
from segan_lib.data.voc import VOC_CLASSES, VOCSegmentation, find_voc_root, voc_colormap, voc_pairs

SHAPE = (12, 16)


def save_rgb(path: Path, seed: int, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)


def save_index(path: Path, values: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(values.astype(np.uint8), mode="L")
    if palette:
        png = png.convert("P")
        png.putpalette(voc_colormap().ravel().tolist())
    png.save(path)


# ---------------------------------------------------------------- PASCAL VOC 2012
def voc_mask(seed: int) -> np.ndarray:
    mask = np.random.default_rng(seed).integers(0, 21, SHAPE)
    mask[0, :] = 255  # an object border
    return mask


def make_voc(root: Path, ids=("2007_000032", "2007_000039", "2008_000001", "2008_000002")) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for k, i in enumerate(ids):
        save_rgb(voc / "JPEGImages" / f"{i}.jpg", k, "JPEG")
        save_index(voc / "SegmentationClass" / f"{i}.png", voc_mask(k), palette=True)
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (sets / "val.txt").write_text(ids[3] + "\n")
    return voc


def test_voc_reads_palette_indices_keeps_255_and_names_21_classes(tmp_path):
    make_voc(tmp_path)
    data = VOCSegmentation(tmp_path, "train", size=SHAPE, augment=False)  # root = folder holding VOCdevkit
    assert (len(data), data.num_classes, data.ignore_index) == (3, 21, 255)
    assert data.class_names == VOC_CLASSES and VOC_CLASSES[15] == "person" and VOC_CLASSES[20] == "tvmonitor"
    image, mask = data[1]
    assert image.shape == (3, *SHAPE) and mask.dtype == torch.int64
    assert torch.equal(mask, torch.from_numpy(voc_mask(1)))
    assert (mask[0] == 255).all()
    val = VOCSegmentation(tmp_path / "VOCdevkit" / "VOC2012", "val", size=SHAPE)
    assert len(val) == 1 and val.mean == data.mean  # val is normalised with train statistics


def test_voc_rgb_mask_is_decoded_through_the_colour_map(tmp_path):
    voc = make_voc(tmp_path)
    Image.fromarray(voc_colormap()[voc_mask(0)]).save(voc / "SegmentationClass" / "2007_000032.png")
    data = VOCSegmentation(voc, "train", size=SHAPE, augment=False)
    assert torch.equal(data[0][1], torch.from_numpy(voc_mask(0)))
    assert voc_colormap()[255].tolist() == [224, 224, 192] and voc_colormap()[1].tolist() == [128, 0, 0]


def test_voc_bad_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)PASCAL VOC 2012 not found.*JPEGImages.*data/README\.md"):
        VOCSegmentation(tmp_path)
    voc = make_voc(tmp_path)
    bad = voc_mask(2)
    bad[5, 5] = 30
    save_index(voc / "SegmentationClass" / "2008_000001.png", bad, palette=True)
    data = VOCSegmentation(voc, "train", size=SHAPE)
    with pytest.raises(ValueError, match=r"2008_000001\.png holds label values \[30\] outside the 21 classes"):
        data[2]
    (voc / "SegmentationClass" / "2008_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask missing for image .*2008_000002\.jpg"):
        VOCSegmentation(voc, "val")
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt is missing"):
        VOCSegmentation(voc, "val")


# ---------------------------------------------------------------- Cityscapes
def test_cityscapes_official_label_to_train_id_entries():
    # cityscapesscripts/helpers/labels.py: the label ids of train ids 0..18, in order; every
    # other id 0..33 (void, parking, rail track, guard rail, bridge, tunnel, polegroup,
    # caravan, trailer, ...) has trainId 255.
    train_label_ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    expected = {label_id: 255 for label_id in range(34)} | {i: t for t, i in enumerate(train_label_ids)}
    assert LABEL_ID_TO_TRAIN_ID == expected
    assert CITYSCAPES_CLASSES == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
    mapped = label_ids_to_train_ids(np.array([[7, 8, 26, 0], [23, 31, 4, 29]], dtype=np.uint8))
    assert mapped.tolist() == [[0, 1, 13, 255], [10, 16, 255, 255]]


def make_cityscapes(root: Path) -> list[np.ndarray]:
    masks = []
    for split, city, count in (("train", "aachen", 2), ("train", "bremen", 1), ("val", "lindau", 1)):
        for k in range(count):
            name = f"{city}_{k:06d}_000019"
            label_ids = np.random.default_rng(len(masks)).integers(0, 34, SHAPE)
            save_rgb(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", len(masks))
            save_index(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label_ids)
            masks.append(label_ids)
    return masks


def test_cityscapes_masks_become_train_ids(tmp_path):
    label_ids = make_cityscapes(tmp_path)
    data = CityscapesSegmentation(tmp_path, "train", size=SHAPE, augment=False)
    assert (len(data), data.num_classes, data.class_names) == (3, 19, CITYSCAPES_CLASSES)
    expected = np.vectorize(LABEL_ID_TO_TRAIN_ID.get)(label_ids[0])
    assert torch.equal(data[0][1], torch.from_numpy(expected))
    assert data.pairs[2][0].parent.name == "bremen"
    assert len(CityscapesSegmentation(tmp_path, "val", size=SHAPE)) == 1


def test_cityscapes_bad_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)Cityscapes not found.*gtFine_labelIds.*data/README\.md"):
        CityscapesSegmentation(tmp_path)
    make_cityscapes(tmp_path)
    mask_path = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png"
    save_index(mask_path, np.full(SHAPE, 40))
    data = CityscapesSegmentation(tmp_path, "train", size=SHAPE)
    with pytest.raises(ValueError, match=r"aachen_000001_000019_gtFine_labelIds\.png holds label ids \[40\]"):
        data[1]
    mask_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"mask missing for image .*aachen_000001_000019_leftImg8bit\.png"):
        CityscapesSegmentation(tmp_path, "train")


# ---------------------------------------------------------------- ADE20K
def make_ade(root: Path) -> list[np.ndarray]:
    base = root / "ADEChallengeData2016"
    masks = []
    for folder, prefix, count in (("training", "ADE_train", 3), ("validation", "ADE_val", 1)):
        for k in range(1, count + 1):
            values = np.random.default_rng(len(masks)).integers(0, 151, SHAPE)
            values[0, 0], values[0, 1], values[0, 2] = 0, 1, 150
            save_rgb(base / "images" / folder / f"{prefix}_{k:08d}.jpg", k, "JPEG")
            save_index(base / "annotations" / folder / f"{prefix}_{k:08d}.png", values)
            masks.append(values)
    return masks


def test_ade20k_zero_becomes_ignore_and_classes_shift_down(tmp_path):
    raw = make_ade(tmp_path)
    data = ADE20KSegmentation(tmp_path, "train", size=SHAPE, augment=False)
    assert (len(data), data.num_classes) == (3, 150)
    assert len(ADE20K_CLASSES) == 150 and ADE20K_CLASSES[0] == "wall" and ADE20K_CLASSES[149] == "flag"
    mask = data[0][1]
    assert mask[0, :3].tolist() == [255, 0, 149]
    assert torch.equal(mask, torch.from_numpy(np.where(raw[0] == 0, 255, raw[0] - 1)))
    assert len(ADE20KSegmentation(tmp_path / "ADEChallengeData2016", "val", size=SHAPE)) == 1


def test_ade20k_bad_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)ADE20K.*not found.*annotations.*data/README\.md"):
        ADE20KSegmentation(tmp_path)
    make_ade(tmp_path)
    with pytest.raises(ValueError, match=r"bad\.png holds values \[151\] outside 0\.\.150"):
        ade20k_labels(np.array([[0, 151]]), "bad.png")
    (tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask missing for image .*ADE_val_00000001\.jpg"):
        ADE20KSegmentation(tmp_path, "val")


# ---------------------------------------------------------------- layouts and arguments
def test_voc_root_may_be_the_voc2012_folder_or_a_parent(tmp_path):
    voc = make_voc(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        assert find_voc_root(root) == voc
    pairs = voc_pairs(voc, "train")
    assert [(i.name, m.name) for i, m in pairs][0] == ("2007_000032.jpg", "2007_000032.png")
    assert [m.parent.name for _, m in pairs] == ["SegmentationClass"] * 3
    (voc / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*2007_000039\.jpg listed in .*train\.txt is missing"):
        voc_pairs(voc, "train")
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'trainval'\), got 'test'"):
        VOCSegmentation(voc, "test")


def test_cityscapes_layout_errors_name_the_folder(tmp_path):
    make_cityscapes(tmp_path)
    assert [m.name for _, m in cityscapes_pairs(tmp_path, "val")] == ["lindau_000000_000019_gtFine_labelIds.png"]
    with pytest.raises(FileNotFoundError, match=r"split folder .*leftImg8bit/test is missing"):
        cityscapes_pairs(tmp_path, "test")
    (tmp_path / "leftImg8bit" / "empty" / "city").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no \*_leftImg8bit\.png images in .*empty"):
        cityscapes_pairs(tmp_path, "empty")
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val'\), got 'test'"):
        CityscapesSegmentation(tmp_path, "test")


def test_cityscapes_masks_must_be_single_channel_label_ids(tmp_path):
    with pytest.raises(ValueError, match=r"mask c\.png must be a single-channel labelIds image, got shape \(2, 2, 3\)"):
        label_ids_to_train_ids(np.zeros((2, 2, 3), np.uint8), "c.png")
    with pytest.raises(ValueError, match=r"mask w\.png holds label ids outside .*0\.\.33: min 0, max 300"):
        label_ids_to_train_ids(np.array([[0, 300]], np.uint16), "w.png")
    road = CITYSCAPES_LABELS[7]
    assert isinstance(road, CityscapesLabel) and (road.name, road.label_id, road.train_id) == ("road", 7, 0)
    assert [label.label_id for label in CITYSCAPES_LABELS] == list(range(34))


def test_ade20k_layout_errors_and_a_bad_label_in_a_file(tmp_path):
    make_ade(tmp_path)
    base = tmp_path / "ADEChallengeData2016"
    assert find_ade20k_root(tmp_path) == base and find_ade20k_root(base) == base
    assert [i.name for i, _ in ade20k_pairs(base, "val")] == ["ADE_val_00000001.jpg"]
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val'\), got 'training'"):
        ADE20KSegmentation(tmp_path, "training")
    with pytest.raises(ValueError, match=r"mask a\.png must be a single-channel annotation PNG"):
        ade20k_labels(np.zeros((2, 2, 3), np.uint8), "a.png")
    bad = np.ones(SHAPE, np.uint8)
    bad[3, 4] = 200
    save_index(base / "annotations" / "training" / "ADE_train_00000002.png", bad)
    data = ADE20KSegmentation(tmp_path, "train", size=SHAPE)
    with pytest.raises(ValueError, match=r"ADE_train_00000002\.png holds values \[200\] outside 0\.\.150"):
        data[1]
    for image in (base / "images" / "validation").iterdir():
        image.unlink()
    with pytest.raises(FileNotFoundError, match=r"no \.jpg images in .*validation"):
        ade20k_pairs(base, "val")


@pytest.mark.parametrize("name, make, classes", [("voc", make_voc, 21), ("cityscapes", make_cityscapes, 19),
                                                 ("ade20k", make_ade, 150)])
def test_segan_train_dataset_root_on_each_layout(tmp_path, capsys, name, make, classes):
    from segan_lib import cli
    from segan_lib.train import load_checkpoint

    make(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train", "--dataset", name, "--root", str(tmp_path / "data"), "--size", "16", "--base-channels", "4",
            "--depth", "2", "--batch-size", "2", "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "validation mean Dice" in capsys.readouterr().out
    saved = load_checkpoint(out / "last.pt")
    assert saved["meta"]["model"]["num_classes"] == classes and saved["meta"]["dataset"]["name"] == name
