"""`segan data export`, its atomic writes, and the committed sample in data/sample."""
import argparse
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segan_lib._files import write_atomic
from segan_lib.data.export import add_export_command, export_synthshapes, image_to_uint8, mask_to_png, run_export
from segan_lib.data.folders import FolderDataset
from segan_lib.data.synthetic import SynthShapes

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def read_pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_export_writes_synthshapes_as_paired_folders(tmp_path):
    out = export_synthshapes(tmp_path / "out", 5, size=32, num_classes=3, seed=4)
    assert out == tmp_path / "out"
    synth = SynthShapes(5, size=32, num_classes=3, seed=4)
    images, masks = read_pngs(out / "images"), read_pngs(out / "masks")
    assert sorted(images) == sorted(masks) == [f"{i:04d}.png" for i in range(5)]
    for i in range(5):
        image, mask = synth[i]
        assert np.array_equal(masks[f"{i:04d}.png"], mask.numpy())  # index PNG: values are the labels
        assert np.array_equal(images[f"{i:04d}.png"], image_to_uint8(image))
    assert Image.open(out / "masks" / "0000.png").mode == "P"
    assert (out / "classes.txt").read_text().split("\n")[:3] == ["background", "disc", "rectangle"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left
    (out / "plain.txt").write_text("x")  # exported files get the usual permissions (umask)
    assert stat.S_IMODE((out / "masks" / "0000.png").stat().st_mode) == stat.S_IMODE((out / "plain.txt").stat().st_mode)
    loaded = FolderDataset(out, "all", size=32, augment=False)
    assert (len(loaded), loaded.num_classes) == (5, 3)
    assert all(torch.equal(loaded[i][1], synth[i][1]) for i in range(5))


def test_image_to_uint8_formula():
    image = torch.tensor([[[0.0, 1.0, -4.0]], [[2.0, -1.0, 4.0]], [[0.5, -0.5, 0.0]]])  # (3, 1, 3)
    # pixel (0, w) holds the three channels of column w: clip(round(127.5 + 40 x), 0, 255)
    expected = np.array([[[128, 208, 148], [168, 88, 108], [0, 255, 128]]], dtype=np.uint8)
    assert np.array_equal(image_to_uint8(image), expected)


def test_binary_export_loads_as_binary_folders(tmp_path):
    export_synthshapes(tmp_path, 4, size=16, seed=2, binary=True)
    assert (tmp_path / "classes.txt").read_text() == "background\nforeground\n"
    data = FolderDataset(tmp_path, "all", binary=True, size=16, augment=False)
    assert all(torch.equal(data[i][1], SynthShapes(4, size=16, binary=True, seed=2)[i][1]) for i in range(4))


def test_export_refuses_stray_files_and_rewrites_its_own(tmp_path):
    export_synthshapes(tmp_path, 3, size=16)
    export_synthshapes(tmp_path, 3, size=16, seed=1)  # same names: rewritten in place
    assert np.array_equal(read_pngs(tmp_path / "masks")["0002.png"], SynthShapes(3, size=16, seed=1)[2][1].numpy())
    with pytest.raises(FileExistsError, match=r"0002\.png"):
        export_synthshapes(tmp_path, 2, size=16)  # 0002.png would silently stay in the dataset
    (tmp_path / "images" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"holiday\.jpg"):
        export_synthshapes(tmp_path, 3, size=16)


def test_export_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "0000.png"
    target.write_bytes(b"old complete file")

    def write_half_then_fail(handle) -> None:
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, write_half_then_fail)  # how export writes each file
    assert target.read_bytes() == b"old complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["0000.png"]


def test_export_command_registers_data_export(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="segan")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "export", "--out", str(tmp_path), "--n", "3", "--size", "16", "--seed", "5"])
    assert (args.n, args.size, args.seed, args.num_classes, args.binary) == (3, 16, 5, 4, False)
    assert args.func is run_export
    assert args.func(args) == 0
    assert "wrote 3 image/mask pairs" in capsys.readouterr().out
    assert len(list((tmp_path / "masks").glob("*.png"))) == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "export"])  # --out is required


def test_segan_data_export_through_the_console_entry_point(tmp_path, capsys):
    from segan_lib.cli import main

    argv = ["data", "export", "--out", str(tmp_path), "--n", "2", "--size", "16", "--binary"]
    assert main(argv) == 0
    assert np.isin(read_pngs(tmp_path / "masks")["0001.png"], (0, 1)).all()
    (tmp_path / "masks" / "extra.png").write_bytes(b"x")
    before = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert main(argv) == 2  # an input error, as argparse's
    assert capsys.readouterr().err == (f"segan: error: {tmp_path / 'masks'} already holds files this export would "
                                       "not write (['extra.png']); export into an empty folder or remove them\n")
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == before  # refused before writing


def test_export_into_a_folder_with_other_files_writes_nothing(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "mine.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="mine.png"):
        export_synthshapes(tmp_path, 2, size=16)
    assert not (tmp_path / "images").exists()  # checked before any folder was made


def test_committed_sample_is_what_the_documented_command_writes(tmp_path):
    fresh = export_synthshapes(tmp_path, 32, size=64, num_classes=4, seed=0)
    for sub in ("images", "masks"):
        committed, regenerated = read_pngs(SAMPLE / sub), read_pngs(fresh / sub)
        assert sorted(committed) == sorted(regenerated) and len(committed) == 32
        for name in committed:
            if sub == "masks":
                assert np.array_equal(committed[name], regenerated[name]), name
            else:  # a last-bit difference in float reductions across CPUs may flip a rounding tie
                difference = np.abs(committed[name].astype(int) - regenerated[name].astype(int))
                assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, name
    assert (SAMPLE / "classes.txt").read_text() == (fresh / "classes.txt").read_text()
    readme = (SAMPLE.parent / "README.md").read_text()
    assert "segan data export --out data/sample --n 32 --size 64 --seed 0" in readme


def test_committed_sample_loads_through_the_folder_loader():
    train = FolderDataset(SAMPLE, "train", num_classes=4, size=64)
    val = FolderDataset(SAMPLE, "val", num_classes=4, size=64)
    assert len(train) + len(val) == 32 and len(val) >= 2
    assert train.class_names == ("background", "disc", "rectangle", "triangle")
    image, mask = train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.int64
    assert set(torch.cat([val[i][1].flatten() for i in range(len(val))]).unique().tolist()) <= {0, 1, 2, 3}


def test_short_training_run_from_the_committed_sample():
    from segan_lib.models import UNet
    from segan_lib.train import SupervisedStrategy, TrainConfig, Trainer

    torch.manual_seed(0)
    train = FolderDataset(SAMPLE, "train", num_classes=4, size=32)
    val = FolderDataset(SAMPLE, "val", num_classes=4, size=32)
    strategy = SupervisedStrategy(UNet(3, 4, base_channels=8, depth=2), "dice_ce", lr=3e-3)
    config = TrainConfig(epochs=2, batch_size=4, steps_per_epoch=3, device="cpu", log_every=1, progress=False)
    history = Trainer(strategy, train, val, num_classes=4, config=config).fit()
    losses = [v for key, values in history.items() if "loss" in key for v in values]
    assert losses and all(np.isfinite(losses))
    assert len(history["val_mean_dice"]) == 2 and all(0.0 <= d <= 1.0 for d in history["val_mean_dice"])


def test_mask_to_png_keeps_labels_as_palette_indices_and_refuses_bad_masks(tmp_path):
    mask = torch.tensor([[0, 3, 255], [20, 1, 0]])
    png = mask_to_png(mask)
    assert png.mode == "P" and np.asarray(png).tolist() == mask.tolist()
    assert png.getpalette()[3 * 3:3 * 4] == [128, 128, 0]  # class 3 drawn olive (VOC colour map)
    bad_masks = [(torch.tensor([[0, 256]]), r"0\.\.255.*got 0\.\.256"), (torch.tensor([[-1, 0]]), "0..255"),
                 (torch.zeros(2, 2), "int64 tensor of shape"), (torch.zeros(1, 2, 2, dtype=torch.long), r"\(H, W\)"),
                 (np.zeros((2, 2), np.int64), "ndarray")]
    for bad, message in bad_masks:
        with pytest.raises(ValueError, match=message):
            mask_to_png(bad)


def test_export_arguments_are_checked():
    with pytest.raises(ValueError, match=r"image must be a float tensor of shape \(3, H, W\)"):
        image_to_uint8(torch.zeros(1, 4, 4))
    for kwargs, message in [({"n": 0}, "n must be > 0"), ({"n": 2.5}, "n must be a positive int"),
                            ({"n": 2, "size": 0}, "size must be > 0")]:
        with pytest.raises(ValueError, match=message):
            export_synthshapes("unused", **kwargs)


def test_segan_train_and_eval_on_the_committed_sample_as_data_readme_says(tmp_path, capsys):
    from segan_lib.cli import main

    out = tmp_path / "run"
    argv = ["train", "--dataset", "folders", "--root", str(SAMPLE), "--num-classes", "4", "--size", "32",
            "--base-channels", "4", "--depth", "2", "--batch-size", "4", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "validation mean Dice" in capsys.readouterr().out
    assert main(["eval", str(out / "last.pt"), "--device", "cpu"]) == 0
    assert "triangle" in capsys.readouterr().out  # class names from data/sample/classes.txt
