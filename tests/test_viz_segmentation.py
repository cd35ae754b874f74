"""Tests of segan_lib.viz.segmentation: arrays and figures for images, masks and curves."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segan_lib.viz.segmentation import (  # noqa: E402
    IGNORE_RGB,
    PALETTE,
    denormalize,
    mask_to_rgb,
    overlay,
    plot_history,
    show_predictions,
    voc_palette,
)



def test_voc_palette_known_colours() -> None:
    # The PASCAL VOC devkit's colour map: background, aeroplane, bicycle, bird, boat, ..., person.
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                7: (128, 128, 128), 8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128)}
    for index, rgb in expected.items():
        np.testing.assert_allclose(PALETTE[index] * 255, rgb, atol=1e-4)
    assert voc_palette(21).shape == (21, 3)
    assert len({tuple(c) for c in (PALETTE * 255).round().astype(int).tolist()}) == 255  # all distinct
    assert not np.isclose(PALETTE, IGNORE_RGB).all(axis=1).any()  # ignore grey is no class colour


def test_denormalize_stretches_each_channel_to_unit_range() -> None:
    images = torch.randn(2, 3, 5, 7) * 3 + 1
    out = denormalize(images)
    assert out.shape == (2, 5, 7, 3) and out.dtype == np.float32
    assert np.allclose(out.min(axis=(1, 2)), 0) and np.allclose(out.max(axis=(1, 2)), 1)
    # (x - min) / (max - min) on one channel of one image:
    channel = images[1, 2].numpy()
    expected = (channel - channel.min()) / (channel.max() - channel.min())
    np.testing.assert_allclose(out[1, :, :, 2], expected, rtol=1e-5, atol=1e-6)
    assert denormalize(images[0]).shape == (5, 7, 3)  # single image (C, H, W)
    np.testing.assert_allclose(denormalize(torch.ones(1, 2, 2)), 0.5)  # constant channel


def test_denormalize_with_mean_and_std_inverts_normalisation() -> None:
    raw = torch.rand(1, 3, 4, 4)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.1]
    normalised = (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    out = denormalize(normalised, mean=mean, std=std)
    np.testing.assert_allclose(out, raw.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    assert denormalize(torch.full((3, 2, 2), 10.0), mean=mean, std=std).max() == 1.0  # clipped


def test_denormalize_bad_input() -> None:
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\) or \(C, H, W\)"):
        denormalize(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="mean and std must hold 3 values"):
        denormalize(torch.zeros(1, 3, 2, 2), mean=[0.5], std=[0.2])
    with pytest.raises(ValueError, match="mean and std must be given together"):
        denormalize(torch.zeros(1, 3, 2, 2), mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="images must be a torch.Tensor or numpy array"):
        denormalize([[1.0]])


def test_mask_to_rgb_colours_classes_and_ignore() -> None:
    mask = torch.tensor([[[0, 1], [2, 255]], [[3, 3], [0, 1]]])
    rgb = mask_to_rgb(mask, num_classes=4)
    assert rgb.shape == (2, 2, 2, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, 0, 0], (0, 0, 0))
    np.testing.assert_allclose(rgb[0, 0, 1], PALETTE[1])
    np.testing.assert_allclose(rgb[0, 1, 1], IGNORE_RGB)
    np.testing.assert_allclose(rgb[1, 0, 0], (128 / 255, 128 / 255, 0))
    assert mask_to_rgb(np.zeros((3, 4), dtype=np.int32), 2).shape == (3, 4, 3)


def test_mask_to_rgb_bad_input() -> None:
    with pytest.raises(ValueError, match=r"mask holds label values \[4\] outside 0..3 or 255"):
        mask_to_rgb(torch.tensor([[0, 4]]), 4)
    with pytest.raises(ValueError, match="mask must hold integer class indices"):
        mask_to_rgb(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="num_classes must be an int in 1..255"):
        mask_to_rgb(torch.zeros(2, 2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match=r"mask must have shape \(..., H, W\)"):
        mask_to_rgb(torch.zeros(4, dtype=torch.long), 2)


def test_overlay_blends_only_foreground() -> None:
    images = torch.zeros(1, 3, 2, 2)
    images[0, :, 0, 0] = 1.0  # stretched: pixel (0, 0) white, the rest black
    masks = torch.tensor([[[0, 1], [1, 255]]])
    out = overlay(images, masks, 2, alpha=0.25)
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, 0, 0], (1, 1, 1))  # background: plain image
    np.testing.assert_allclose(out[0, 0, 1], 0.25 * PALETTE[1], atol=1e-6)  # 0.75 * black + 0.25 * colour
    np.testing.assert_allclose(out[0, 1, 1], 0.25 * np.array(IGNORE_RGB), atol=1e-6)
    grey = overlay(torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), 2)
    assert grey.shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match=r"masks must have shape \(1, 2, 2\)"):
        overlay(images, torch.zeros(1, 2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="alpha must be in"):
        overlay(images, masks, 2, alpha=1.5)


def test_show_predictions_grid_and_legend() -> None:
    torch.manual_seed(0)
    images, masks = torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6, 8, 8))
    logits = torch.randn(6, 3, 8, 8)
    fig = show_predictions(images, masks, logits, class_names=["bg", "a", "b"], max_items=4)
    assert len(fig.axes) == 3 * 4
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["image", "true mask", "prediction"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["bg", "a", "b"]
    # the prediction row shows the argmax of the logits
    shown = fig.axes[8].get_images()[0].get_array()
    np.testing.assert_allclose(shown, overlay(images[:1], logits[:1].argmax(1), 3)[0], atol=1e-6)
    fig_labels = show_predictions(images[:2], masks[:2], masks[:2])  # labels as preds, 2 items
    assert len(fig_labels.axes) == 3 * 2 and not fig_labels.legends


def test_show_predictions_binary_logit_and_grey_images() -> None:
    images, masks = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4))
    fig = show_predictions(images, masks, torch.randn(2, 1, 4, 4))
    assert len(fig.axes) == 6


def test_show_predictions_bad_input() -> None:
    images, masks = torch.randn(2, 3, 4, 4), torch.randint(0, 2, (2, 4, 4))
    with pytest.raises(ValueError, match=r"preds must give labels of shape \(2, 4, 4\)"):
        show_predictions(images, masks, torch.randn(2, 2, 4, 6))
    with pytest.raises(ValueError, match="class_names must have 2 names"):
        show_predictions(images, masks, masks, class_names=["a", "b", "c"], num_classes=2)
    with pytest.raises(ValueError, match="max_items must be > 0"):
        show_predictions(images, masks, masks, max_items=0)
    with pytest.raises(ValueError, match=r"preds must be labels \(B, H, W\) or float logits"):
        show_predictions(images, masks, torch.zeros(2, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="mask holds label values"):
        show_predictions(images, masks + 5, masks, num_classes=2)


def test_plot_history_one_panel_per_key() -> None:
    # The layout of segan_lib.train.History: train family aligned with "step", val family with "val_step".
    history = {"step": [10, 20, 30, 40], "epoch": [0.5, 1.0, 1.5, 2.0], "loss": [1.0, 0.8, 0.5, 0.4],
               "ce": [0.7, 0.6, 0.4, 0.3], "val_step": [20, 40], "val_epoch": [1, 2],
               "val_mean_dice": [0.3, 0.6], "val_dice": [[0.9, 0.1, 0.2], [0.95, 0.4, 0.5]]}
    fig = plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "ce", "val_mean_dice"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["step", "step", "val_step"]
    np.testing.assert_array_equal(fig.axes[2].lines[0].get_xydata(), [[20, 0.3], [40, 0.6]])
    assert len(plot_history(history, keys=["loss"]).axes) == 1
    per_class = plot_history(history, keys=["val_dice"]).axes[0]
    assert [line.get_label() for line in per_class.lines] == ["class 0", "class 1", "class 2"]
    np.testing.assert_array_equal(per_class.lines[1].get_ydata(), [0.1, 0.4])


def test_plot_history_one_eval_and_one_log_uses_val_step() -> None:
    history = {"step": [5], "loss": [1.0], "val_step": [8], "val_mean_iou": [0.5]}
    assert [ax.get_xlabel() for ax in plot_history(history).axes] == ["step", "val_step"]


def test_plot_history_val_per_epoch_and_mapping() -> None:
    class History:  # dict-like, not a dict
        def __init__(self, data: dict) -> None:
            self._data = data

        def keys(self):
            return self._data.keys()

        def __getitem__(self, key: str) -> list:
            return self._data[key]

    fig = plot_history(History({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0],
                                "epoch": [1, 2], "val_mean_iou": [0.2, 0.4]}))
    assert [ax.get_xlabel() for ax in fig.axes] == ["step", "epoch"]


def test_plot_history_bad_input() -> None:
    with pytest.raises(ValueError, match="history must have a 'step' list"):
        plot_history({"loss": [1.0]})
    with pytest.raises(ValueError, match=r"keys \['dice'\] are not numeric lists in history"):
        plot_history({"step": [1], "loss": [1.0]}, keys=["dice"])
    with pytest.raises(ValueError, match="history\\['loss'\\] has 2 values but 'step' has 3"):
        plot_history({"step": [1, 2, 3], "loss": [1.0, 2.0]})
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_history({"step": [1, 2]})
    with pytest.raises(ValueError, match="history must be a dict of lists"):
        plot_history([1, 2, 3])


def test_plot_history_takes_the_trainers_history() -> None:
    from segan_lib.train.history import History

    history = History()
    for step in (10, 20, 30, 40):
        history.append_train(step, step / 20, {"loss": torch.tensor(1.0 / step)})
        if step % 20 == 0:
            history.append_val(step, step // 20, {"mean_dice": 0.1 * step / 20, "dice": torch.tensor([0.9, 0.2])})
    fig = plot_history(history)
    assert [(ax.get_title(), ax.get_xlabel()) for ax in fig.axes] == [("loss", "step"), ("val_mean_dice", "val_step")]
