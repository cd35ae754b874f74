"""The loss comparison (on the experiment runner): one controlled run per loss, per-class scores, table and pick."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segan_lib.train import TrainConfig
from segan_lib.experiments.losses import (
    DEFAULT_LOSSES,
    LossSpec,
    as_loss_spec,
    best_loss,
    compare_pixel_losses,
    format_comparison_table,
    mean_over_seeds,
    per_seed,
)

TINY = dict(size=16, num_classes=3, n_train=8, n_eval=4, base_channels=4, depth=1, lr=1e-2,
            config=TrainConfig(epochs=1, batch_size=4, device="cpu", progress=False, eval_every=0))


@pytest.fixture(scope="module")
def tiny_rows():
    return compare_pixel_losses(["ce", ("CE again", "ce"), ("focal g=1", "focal", {"gamma": 1.0})], **TINY)


def test_rows_hold_per_class_scores_for_every_loss(tiny_rows):
    assert [row["loss"] for row in tiny_rows] == ["ce", "CE again", "focal g=1"]
    classes = ("background", "disc", "rectangle")
    for row in tiny_rows:
        metrics = {key.split("/")[0] for key in row if "/" in key}  # Dice, IoU and any structure metric
        assert {"dice", "iou"} <= metrics
        expected_keys = {"loss", "pixel_accuracy", "train_seconds"} | {f"mean_{m}" for m in metrics}
        expected_keys |= {f"{m}/{c}" for m in metrics for c in classes}
        assert set(row) - expected_keys <= {key for key in row if "/" not in key and not key.startswith("mean_")}
        assert expected_keys <= set(row)
        for name in classes:
            dice, iou = row[f"dice/{name}"], row[f"iou/{name}"]
            assert (math.isnan(dice) and math.isnan(iou)) or (0 <= iou <= dice <= 1)
            if not math.isnan(dice):
                assert iou == pytest.approx(dice / (2 - dice))  # Dice and IoU of the same counts
        foreground = [row[f"dice/{c}"] for c in classes[1:] if not math.isnan(row[f"dice/{c}"])]
        if foreground:
            assert row["mean_dice"] == pytest.approx(sum(foreground) / len(foreground))
        assert 0 <= row["pixel_accuracy"] <= 1 and row["train_seconds"] > 0


def test_same_loss_gives_the_same_scores_same_init_and_data(tiny_rows):
    first, again = tiny_rows[0], tiny_rows[1]
    for key, value in first.items():
        if key not in ("loss", "train_seconds"):
            assert value == pytest.approx(again[key], nan_ok=True), key


def test_training_code_does_not_import_the_experiments():
    """Arrows point one way, experiments -> train: importing every training module loads no experiment."""
    code = ("import pkgutil, importlib, sys, segan_lib.train as t\n"
            "[importlib.import_module(m.name) for m in pkgutil.iter_modules(t.__path__, 'segan_lib.train.')]\n"
            "print(sorted(m for m in sys.modules if m.startswith('segan_lib.experiments')))")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_default_losses_are_the_notebook_line_up():
    assert [(s.name, dict(s.options)) for s in DEFAULT_LOSSES] == [
        ("ce", {}), ("dice", {}), ("dice_ce", {}), ("focal", {"gamma": 2.0}), ("focal", {"gamma": 4.0})]


def test_loss_specs_and_bad_input():
    assert as_loss_spec("dice") == LossSpec("dice", "dice")
    assert as_loss_spec(("F", "focal", {"gamma": 3.0})) == LossSpec("F", "focal", {"gamma": 3.0})
    with pytest.raises(ValueError, match="loss name must be one of"):
        as_loss_spec("hinge")
    with pytest.raises(ValueError, match="unknown \\['gamma'\\]"):
        as_loss_spec(("CE", "ce", {"gamma": 2.0}))
    with pytest.raises(ValueError, match="losses entries must be"):
        as_loss_spec(3)
    with pytest.raises(ValueError, match="distinct labels"):
        compare_pixel_losses(["ce", "ce"], **TINY)
    with pytest.raises(ValueError, match="eval_seed must differ"):
        compare_pixel_losses(["ce"], **{**TINY, "eval_seed": 0})


ROWS = [
    {"loss": "CE", "dice/background": 0.95, "dice/disc": 0.5, "dice/cross": float("nan"),
     "iou/background": 0.9, "iou/disc": 1 / 3, "iou/cross": float("nan"), "mean_dice": 0.5, "mean_iou": 1 / 3},
    {"loss": "Dice+CE", "dice/background": 0.96, "dice/disc": 0.7, "dice/cross": 0.1,
     "iou/background": 0.92, "iou/disc": 0.54, "iou/cross": 0.05, "mean_dice": 0.4, "mean_iou": 0.3},
    {"loss": "Dice", "dice/background": 0.9, "dice/disc": 0.0, "dice/cross": 0.0,
     "iou/background": 0.8, "iou/disc": 0.0, "iou/cross": 0.0, "mean_dice": float("nan"), "mean_iou": 0.0},
]


def test_format_table_aligns_one_metric():
    assert format_comparison_table(ROWS, "dice").splitlines() == [
        "loss     background   disc  cross  mean fg dice",
        "-------  ----------  -----  -----  ------------",
        "CE            0.950  0.500    nan         0.500",
        "Dice+CE       0.960  0.700  0.100         0.400",
        "Dice          0.900  0.000  0.000           nan",
    ]
    assert format_comparison_table(ROWS, "iou").splitlines()[2].endswith("0.333")
    with pytest.raises(ValueError, match=r"metric must be one of \['dice', 'iou'\]"):
        format_comparison_table(ROWS, "f1")
    with pytest.raises(ValueError, match="rows must hold"):
        format_comparison_table([])


def test_best_loss_reads_the_numbers():
    assert best_loss(ROWS)["loss"] == "CE"  # NaN never wins
    assert best_loss(ROWS, "dice/disc")["loss"] == "Dice+CE"
    assert best_loss(ROWS[2:], "mean_dice")["loss"] == "Dice"  # all NaN: the first row
    with pytest.raises(ValueError, match="key must be one of"):
        best_loss(ROWS, "accuracy")


def test_mean_over_seeds_and_per_seed_by_hand():
    runs = {
        0: [{"loss": "CE", "mean_dice": 0.5, "dice/disc": 0.25}, {"loss": "Dice", "mean_dice": 0.7, "dice/disc": math.nan}],
        3: [{"loss": "CE", "mean_dice": 0.9, "dice/disc": 0.75}, {"loss": "Dice", "mean_dice": 0.6, "dice/disc": 0.5}],
    }
    mean = mean_over_seeds(runs)
    assert [row["loss"] for row in mean] == ["CE", "Dice"]
    assert mean[0]["mean_dice"] == pytest.approx(0.7) and mean[0]["dice/disc"] == pytest.approx(0.5)
    assert mean[1]["mean_dice"] == pytest.approx(0.65) and math.isnan(mean[1]["dice/disc"])  # NaN stays NaN
    assert per_seed(runs, "CE") == [0.5, 0.9] and per_seed(runs, "Dice", "dice/disc")[1] == 0.5
    with pytest.raises(ValueError, match="same losses in the same order"):
        mean_over_seeds({0: runs[0], 1: runs[3][::-1]})
    with pytest.raises(ValueError, match="non-empty mapping"):
        mean_over_seeds({})
    with pytest.raises(ValueError, match="label must be one of"):
        per_seed(runs, "focal")
    with pytest.raises(ValueError, match="key must be one of"):
        per_seed(runs, "CE", "iou/disc")
