"""TensorBoard logs: every player's scalars, the learning rates, the validation metrics and the
prediction grid (image | truth | prediction) read back with tensorboard's own EventAccumulator at the steps of the
History; a resumed run leaves one curve per tag; only rank 0 writes; a missing tensorboard
package stops at once with a one-sentence message."""
from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from segan_lib import cli, course
from segan_lib.data.synthetic import SynthShapes
from segan_lib.models import UNet
from segan_lib.train import TrainConfig, Trainer, distributed
from segan_lib.train.segan import SeganStrategy
from segan_lib.train.tensorboard import GAP, HEADER, MISSING_TENSORBOARD, TensorBoardLogger, open_tensorboard
from segan_lib.viz.segmentation import denormalize, overlay

from builders import PairData, free_port, supervised_trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(log_dir: Path):
    """Every event under ``log_dir`` (all images kept, not a sample)."""
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def scalars(events, tag: str) -> tuple[list[int], list[float]]:
    points = events.Scalars(tag)
    return [p.step for p in points], [p.value for p in points]


@pytest.fixture(scope="module")
def segan_run(tmp_path_factory):
    """A SegAN run on 8 SynthShapes images of 16x16 (2 steps per epoch, 2 epochs), validated on 4."""
    log_dir = tmp_path_factory.mktemp("tb") / "tensorboard"
    course.seed_everything(0)
    strategy = SeganStrategy(UNet(3, 4, base_channels=4, depth=2, batch_norm=True), in_channels=3, num_classes=4,
                             critic_base_channels=4, critic_depth=2, dice_weight=1.0, critic_lr=2e-4)
    config = TrainConfig(epochs=2, batch_size=4, log_every=1, progress=False, device="cpu", tensorboard_dir=log_dir)
    trainer = Trainer(strategy, SynthShapes(8, size=16, seed=0), SynthShapes(4, size=16, seed=1), num_classes=4,
                      config=config)
    history = trainer.fit()
    return trainer, history, read_events(log_dir)


def test_every_logged_scalar_of_both_players_is_written_at_its_step(segan_run):
    trainer, history, events = segan_run
    names = [key for key in history if key not in ("step", "epoch") and not key.startswith("val_")]
    for player in ("segmentor", "critic"):
        assert f"loss_{player}" in names and f"grad_norm_{player}" in names
    assert set(events.Tags()["scalars"]) >= {f"train/{name}" for name in names}
    for name in names:
        steps, values = scalars(events, f"train/{name}")
        assert steps == history["step"] == [1, 2, 3, 4], name
        assert values == pytest.approx(history[name], rel=1e-6), name


def test_learning_rate_of_each_optimiser(segan_run):
    _, history, events = segan_run
    for name, lr in (("segmentor", 1e-3), ("critic", 2e-4)):
        steps, values = scalars(events, f"lr/{name}")
        assert steps == history["step"] and values == pytest.approx([lr] * len(steps))


def test_validation_metrics_at_each_evaluation(segan_run):
    _, history, events = segan_run
    assert history["val_step"] == [2, 4]
    for name in ("mean_dice", "mean_iou", "pixel_accuracy"):
        steps, values = scalars(events, f"val/{name}")
        assert steps == history["val_step"] and values == pytest.approx(history[f"val_{name}"], rel=1e-6)
    for k in range(4):
        steps, values = scalars(events, f"val/dice_class_{k}")
        assert steps == history["val_step"]
        assert values == pytest.approx([dice[k] for dice in history["val_dice"]], rel=1e-6)


def test_prediction_grid_has_a_row_per_sample_and_labelled_columns(segan_run):
    trainer, history, events = segan_run
    pictures = events.Images("val/predictions")
    assert [p.step for p in pictures] == history["val_step"]
    grid = np.asarray(Image.open(io.BytesIO(pictures[-1].encoded_image_string)).convert("RGB"))
    side, gap, header = 96, GAP, HEADER  # 16 px samples enlarged 6 times
    assert grid.shape == (header + gap + 4 * (side + gap), gap + 3 * (side + gap), 3)  # 4 rows, 3 columns
    images, masks = zip(*(trainer.val_data[i] for i in range(4)))
    images, masks = torch.stack(images), torch.stack(masks)
    segmentor = trainer.strategy.segmentor.eval()  # the weights after the last step, as at that evaluation
    with torch.no_grad():
        predicted = segmentor(images).argmax(dim=1)  # (4, 16, 16)
    expected = [denormalize(images), overlay(images, masks, 4), overlay(images, predicted, 4)]  # (4, 16, 16, 3)
    for sample in range(4):
        top = header + gap + sample * (side + gap)
        for column, pictures_expected in enumerate(expected):
            left = gap + column * (side + gap)
            want = (pictures_expected[sample] * 255).astype(np.uint8).repeat(6, axis=0).repeat(6, axis=1)
            assert np.abs(grid[top:top + side, left:left + side].astype(int) - want).max() <= 1, (sample, column)
    # The truth differs from the plain image where a shape is; the prediction differs from the truth
    # somewhere after two short epochs (else the columns could have been swapped unnoticed).
    assert (masks > 0).any() and not np.allclose(expected[0], expected[1])
    assert (predicted != masks).any() and not np.allclose(expected[1], expected[2])
    titles = grid[:header].min(axis=2)  # the white band above the panels, with one dark title per column
    spans = [titles[:, gap + c * (side + gap):gap + c * (side + gap) + side] for c in range(3)]
    assert all((span < 128).sum() > 20 for span in spans), "each column has its title"
    widths = [np.ptp(np.flatnonzero((span < 128).any(axis=0))) for span in spans]
    assert widths[1] < widths[0] < widths[2], widths  # "truth" is the shortest title, "prediction" the longest


def test_resumed_run_leaves_one_curve_per_tag(tmp_path):
    log_dir, first, second = tmp_path / "tb", tmp_path / "first", tmp_path / "second"
    unbroken = supervised_trainer(val=PairData(8, seed=1), epochs=1, checkpoint_dir=str(first),
                                  tensorboard_dir=str(log_dir))
    unbroken.fit()
    shutil.copy(first / "last.pt", tmp_path / "epoch1.pt")
    unbroken.config.epochs = 2
    unbroken.fit()  # logs steps 6, 8 and validates at 8: a run that then "crashes"
    unbroken.tensorboard.close()
    resumed = supervised_trainer(val=PairData(8, seed=1), epochs=2, checkpoint_dir=str(second),
                                 tensorboard_dir=str(log_dir))
    history = resumed.fit(resume_from=tmp_path / "epoch1.pt")
    resumed.tensorboard.close()
    events = read_events(log_dir)
    assert scalars(events, "train/loss")[0] == history["step"] == [2, 4, 6, 8]
    assert scalars(events, "val/mean_dice")[0] == history["val_step"] == [4, 8]
    assert [p.step for p in events.Images("val/predictions")] == [4, 8]


def test_without_tensorboard_the_run_stops_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes "import tensorboard" fail
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        supervised_trainer(tensorboard_dir=str(tmp_path / "tb"))
    assert supervised_trainer().tensorboard is None  # not asked for: not needed
    code = cli.main(["train", "--tensorboard", "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"segan: error: {MISSING_TENSORBOARD}"
    assert not (tmp_path / "run").exists()  # nothing was built or trained
    assert MISSING_TENSORBOARD.count(". ") == 0 and MISSING_TENSORBOARD.endswith(".")  # one sentence


def test_cli_writes_to_out_tensorboard_by_default(tmp_path):
    tiny = ["train", "--samples", "16", "--size", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "8",
            "--epochs", "1", "--device", "cpu", "--no-progress", "--log-every", "1"]
    assert cli.build_parser().parse_args(["train"]).tensorboard is None
    assert cli.main([*tiny, "--out", str(tmp_path / "run"), "--tensorboard"]) == 0
    events = read_events(tmp_path / "run" / "tensorboard")
    assert scalars(events, "train/loss")[0] == [1, 2]
    assert {"lr/segmentor", "val/mean_dice"} <= set(events.Tags()["scalars"])
    assert cli.main([*tiny, "--out", str(tmp_path / "other"), "--tensorboard", str(tmp_path / "logs")]) == 0
    assert scalars(read_events(tmp_path / "logs"), "train/loss")[0] == [1, 2]
    assert not (tmp_path / "other" / "tensorboard").exists()


def test_logger_arguments(tmp_path):
    assert open_tensorboard(None, is_main=True) is None
    assert open_tensorboard(tmp_path / "tb", is_main=False) is None and not (tmp_path / "tb").exists()
    assert isinstance(open_tensorboard(tmp_path / "tb", is_main=True), TensorBoardLogger)
    with pytest.raises(ValueError, match="max_images"):
        TensorBoardLogger(tmp_path, max_images=-1)
    assert TrainConfig(tensorboard_dir=tmp_path).tensorboard_dir == str(tmp_path)  # a Path is accepted


def rank_worker(rank: int, world_size: int, port: int, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        trainer = supervised_trainer(val=PairData(8, seed=1), epochs=1, tensorboard_dir=str(Path(out) / "tb"))
        trainer.fit()
        (Path(out) / f"rank{rank}.txt").write_text(type(trainer.tensorboard).__name__)
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_only_rank_0_writes_under_torchrun(tmp_path):
    mp.spawn(rank_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "rank0.txt").read_text() == "TensorBoardLogger"
    assert (tmp_path / "rank1.txt").read_text() == "NoneType"
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert scalars(read_events(tmp_path / "tb"), "train/loss")[0] == [2, 4]
