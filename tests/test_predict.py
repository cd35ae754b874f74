"""``segan predict``: a round trip (export SynthShapes, train, predict on images of mixed sizes,
read the masks back through the paired-folder loader), the preprocessing stored at training
time, older checkpoints, and the errors a user meets (bad image, no segmentor, clashing names)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segan_lib import cli
from segan_lib.data.export import export_synthshapes
from segan_lib.data.files import read_image
from segan_lib.data.folders import FolderDataset
from segan_lib.data.palette import voc_colormap
from segan_lib.data.preprocess import preprocess_image, preprocessing_of
from segan_lib.data.synthetic import SynthShapes
from segan_lib.data.transforms import image_to_tensor, normalize, resize_image
from segan_lib.models import UNet
from segan_lib.predict import load_segmentor, overlay_picture, predict_files
from segan_lib.train import load_checkpoint
from segan_lib.train.checkpoint import atomic_save

TINY = ["--size", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "4", "--epochs", "1",
        "--device", "cpu", "--no-progress"]
SIZES = {"0000": None, "0001": (48, 40), "0005": (20, 24), "0009": (64, 64)}  # stem -> (width, height) or as exported


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> dict:
    """16 exported SynthShapes pairs of 32x32, a U-Net trained on them for 6 steps (at a learning
    rate that makes its predictions vary, so they test something), and ROOT/images holding four
    of the images at mixed sizes (one a JPEG)."""
    tmp = tmp_path_factory.mktemp("predict")
    data = export_synthshapes(tmp / "data", 16, size=32, seed=0)
    run = ["train", "--dataset", "folders", "--root", str(data), *TINY, "--epochs", "2", "--lr", "0.03"]
    assert cli.main([*run, "--out", str(tmp / "run")]) == 0
    images = tmp / "own" / "images"
    images.mkdir(parents=True)
    for stem, size in SIZES.items():
        picture = Image.open(data / "images" / f"{stem}.png")
        if size is None:
            shutil.copy(data / "images" / f"{stem}.png", images / f"{stem}.png")
        elif stem == "0005":
            picture.resize(size, Image.BILINEAR).save(images / f"{stem}.jpg", quality=95)
        else:
            picture.resize(size, Image.BILINEAR).save(images / f"{stem}.png")
    return {"data": data, "checkpoint": tmp / "run" / "last.pt", "root": tmp / "own", "tmp": tmp}


@pytest.fixture(scope="module")
def predicted(folder_run) -> dict:
    """``segan predict`` on ROOT/images into ROOT/masks, with overlays, batches of 3 (3 + 1)."""
    root = folder_run["root"]
    code = cli.main(["predict", str(folder_run["checkpoint"]), str(root / "images"), "--out", str(root / "masks"),
                     "--overlay", "--batch-size", "3", "--device", "cpu", "--no-progress"])
    assert code == 0
    return folder_run


def expected_labels(checkpoint: Path, image: np.ndarray, mean, std) -> np.ndarray:
    """The segmentor's argmax on the training preprocessing of ``image``, resized back (nearest)."""
    meta = load_checkpoint(checkpoint)["meta"]
    model = meta["model"]
    net = UNet(3, model["num_classes"], base_channels=model["base_channels"], depth=model["depth"],
               batch_norm=model["batch_norm"])
    net.load_state_dict(load_checkpoint(checkpoint)["strategy"]["nets"]["segmentor"])
    x = normalize(resize_image(image_to_tensor(image), 32), mean, std)  # (3, 32, 32)
    with torch.no_grad():
        labels = net.eval()(x[None]).argmax(dim=1)  # (1, 32, 32)
    return F.interpolate(labels[None].float(), size=image.shape[:2], mode="nearest-exact")[0, 0].long().numpy()


def test_masks_read_back_through_the_folder_loader(predicted):
    root = predicted["root"]
    dataset = FolderDataset(root, "all", num_classes=4, size=32, augment=False)
    assert [image.stem for image, _ in dataset.pairs] == sorted(SIZES)
    assert [mask.name for _, mask in dataset.pairs] == [f"{stem}.png" for stem in sorted(SIZES)]
    train = FolderDataset(predicted["data"], "train", num_classes=4, size=32)  # the statistics of training
    classes = set()
    for index, (image_path, mask_path) in enumerate(dataset.pairs):
        image, labels = dataset.load_pair(index)  # checks sizes match and labels lie in 0..3
        width, height = SIZES[image_path.stem] or (32, 32)
        assert labels.shape == image.shape[:2] == (height, width)
        with Image.open(mask_path) as mask:
            assert mask.mode == "P" and mask.getpalette() == voc_colormap().ravel().tolist()
        want = expected_labels(predicted["checkpoint"], image, train.mean, train.std)
        assert np.array_equal(labels, want), image_path.name
        classes.update(np.unique(labels).tolist())
    assert len(classes) >= 3  # the predictions vary, so the comparison is a real one


def test_overlays_blend_the_classes_over_the_image(predicted):
    root = predicted["root"]
    for stem in SIZES:
        image = read_image(next((root / "images").glob(f"{stem}.*")))
        with Image.open(root / "masks" / f"{stem}.png") as mask:
            labels = np.asarray(mask).astype(np.int64)
        with Image.open(root / "masks" / f"{stem}_overlay.png") as picture:
            assert picture.mode == "RGB"
            blended = np.asarray(picture).astype(np.float64)
        colours = voc_colormap()[labels]
        want = np.where(labels[..., None] != 0, 0.5 * image + 0.5 * colours, image)  # (H, W, 3)
        assert np.abs(blended - want).max() <= 0.5 + 1e-9
    assert not [p for p in (root / "masks").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_training_stores_the_preprocessing_it_used(folder_run):
    meta = load_checkpoint(folder_run["checkpoint"])["meta"]
    train = FolderDataset(folder_run["data"], "train", num_classes=4, size=32)
    assert meta["preprocess"] == {"size": [32, 32], "in_channels": 3, "normalize": "dataset",
                                  "mean": list(train.mean), "std": list(train.std)}
    val = FolderDataset(folder_run["data"], "val", num_classes=4, size=32)
    image, _ = val.load_pair(0)
    assert torch.equal(preprocess_image(image, meta["preprocess"]), val[0][0])  # the evaluation transform


def test_synthshapes_checkpoint_standardises_each_image(folder_run):
    tmp = folder_run["tmp"]
    assert cli.main(["train", "--dataset", "synth", "--samples", "16", *TINY, "--out", str(tmp / "synth")]) == 0
    checkpoint = tmp / "synth" / "last.pt"
    preprocess = load_checkpoint(checkpoint)["meta"]["preprocess"]
    assert preprocess == {"size": [32, 32], "in_channels": 3, "normalize": "per_image"}
    assert preprocess == preprocessing_of(SynthShapes(4, size=32))
    exported = export_synthshapes(tmp / "synth_data", 2, size=32, seed=5)
    original, _ = SynthShapes(2, size=32, seed=5)[1]
    x = preprocess_image(read_image(exported / "images" / "0001.png"), preprocess)
    # back up to 8-bit rounding (1 / 40 per grey level) and the export's clipping beyond 127.5 / 40 = 3.19
    assert (x - original).abs().mean() < 0.03
    assert torch.corrcoef(torch.stack([x.flatten(), original.flatten()]))[0, 1] > 0.99

    # An older checkpoint (no stored preprocessing) of SynthShapes: the same masks, with a warning.
    payload = load_checkpoint(checkpoint)
    del payload["meta"]["preprocess"]
    atomic_save(payload, tmp / "synth" / "old.pt")
    new = predict_files(checkpoint, [exported / "images"], tmp / "synth_new", device="cpu", progress=False)
    with pytest.warns(UserWarning, match="stores no preprocessing"):
        old = predict_files(tmp / "synth" / "old.pt", [exported / "images"], tmp / "synth_old", device="cpu",
                            progress=False)
    for a, b in zip(new, old):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def rewritten(checkpoint: Path, out: Path, change) -> Path:
    """A copy of ``checkpoint`` at ``out`` after ``change(payload)``."""
    payload = load_checkpoint(checkpoint)
    change(payload)
    return atomic_save(payload, out)


def test_checkpoints_it_cannot_use_are_refused(folder_run, tmp_path, capsys):
    checkpoint, images = folder_run["checkpoint"], folder_run["root"] / "images"

    def as_gan(payload):
        payload["meta"]["method"] = "gan"
        payload["strategy"]["nets"] = {"generator": {}, "discriminator": {}}

    cases = {
        "holds no segmentor (method 'gan' trains generator, discriminator)": as_gan,
        "stores no preprocessing": lambda payload: payload["meta"].pop("preprocess"),  # trained on files
        "has no U-Net description": lambda payload: payload["meta"].pop("model"),
    }
    for index, (message, change) in enumerate(cases.items()):
        path = rewritten(checkpoint, tmp_path / f"bad{index}.pt", change)
        assert cli.main(["predict", str(path), str(images), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"segan: error: checkpoint {path} ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_unreadable_image_stops_with_its_name_and_no_partial_file(folder_run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(folder_run["data"] / "images" / "0000.png", folder / "a_good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "out"
    only_broken = ["predict", str(folder_run["checkpoint"]), str(folder / "broken.png"), "--out", str(out)]
    assert cli.main([*only_broken, "--no-progress"]) == 2
    assert f"image {folder / 'broken.png'} cannot be read" in capsys.readouterr().err
    assert not out.exists()  # created with the first mask: no empty folder left behind
    code = cli.main(["predict", str(folder_run["checkpoint"]), str(folder), "--out", str(out), "--batch-size", "1",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"image {folder / 'broken.png'} cannot be read" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_good.png"]  # the image before it, complete
    assert np.asarray(Image.open(out / "a_good.png")).shape == (32, 32)


def test_inputs_and_outputs_are_checked_before_running(folder_run, tmp_path, capsys):
    checkpoint, data = str(folder_run["checkpoint"]), folder_run["data"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    shutil.copy(data / "images" / "0001.png", tmp_path / "other" / "0000.png")
    cases = [
        ([str(data / "images"), "--out", str(data / "images")], "would overwrite the input image"),
        ([str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")], "no image file or folder at"),
        ([str(tmp_path / "empty"), "--out", str(tmp_path / "o")], "no images (.png"),
        ([str(data / "images" / "0000.png"), str(tmp_path / "other"), "--out", str(tmp_path / "o")],
         "share the stem '0000'"),
    ]
    for args, message in cases:
        assert cli.main(["predict", checkpoint, *args, "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    written = predict_files(checkpoint, [data / "images" / "0003.png", data / "images"], tmp_path / "o",
                            device="cpu", progress=False)  # a file also inside a given folder counts once
    assert [p.name for p in written] == ["0003.png"] + [f"{i:04d}.png" for i in range(16) if i != 3]
    with pytest.raises(SystemExit):
        cli.main(["predict", checkpoint, str(data), "--out", str(tmp_path), "--batch-size", "0"])
    assert "--batch-size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    assert "IMAGE_OR_FOLDER" in capsys.readouterr().out


def test_overlay_picture_formula():
    image = np.full((1, 2, 3), 100, dtype=np.uint8)
    picture = np.asarray(overlay_picture(image, np.array([[0, 1]])))
    assert picture.tolist() == [[[100, 100, 100], [114, 50, 50]]]  # class 1 is (128, 0, 0): (100 + 128) / 2 = 114


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_predicts_what_the_cpu_predicts(predicted, tmp_path):
    images = predicted["root"] / "images"
    on_cpu = predict_files(predicted["checkpoint"], [images], tmp_path / "cpu", device="cpu", progress=False)
    on_gpu = predict_files(predicted["checkpoint"], [images], tmp_path / "gpu", device="cuda", progress=False)
    segmentor, _, _ = load_segmentor(predicted["checkpoint"], "cuda")
    assert next(segmentor.parameters()).is_cuda
    for a, b in zip(on_cpu, on_gpu):
        same = np.asarray(Image.open(a)) == np.asarray(Image.open(b))
        assert same.mean() > 0.99  # float32 on both; the odd tie may round differently
