"""TensorBoard logs of a training run: the curves of every player, the learning rates, the
validation metrics and a few prediction overlays, through ``torch.utils.tensorboard``.

``TrainConfig(tensorboard_dir="runs/x/tensorboard")`` (or ``segan train --tensorboard``) makes
the :class:`~segan_lib.train.Trainer` write, on rank 0 only, with the global step as x-axis::

    train/<name>      every averaged log of the strategy at each logging interval: loss,
                      loss_segmentor, loss_critic, grad_norm_<player>, d_acc_real, ...
    lr/<optimiser>    the learning rate of each optimiser (its first parameter group)
    val/<metric>      mean_dice, mean_iou, pixel_accuracy, dice_class_<k>, iou_class_<k>
    val/predictions   one image: a grid with a row per validation sample (the first few) and
                      three labelled columns, image | truth | prediction (the masks over the
                      image), each panel enlarged to at least 96 pixels so the labels fit

Then ``tensorboard --logdir runs/x/tensorboard``. The ``tensorboard`` package is optional (in the
``dev`` extra): without it, asking for logs raises ``ImportError`` at once, before training.
Each process starts its event file with ``purge_step`` = the first step it trains: TensorBoard
then drops what older files in the folder logged from that step on, so a run that crashed and resumed
from an earlier checkpoint shows one curve per tag, not two, and a fresh run replaces the
curves of an older one in the same folder, as it replaces its checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from segan_lib.metrics import logits_to_pred
from segan_lib.train.strategy import unwrap

MISSING_TENSORBOARD = ("TensorBoard logs need the optional tensorboard package, which is not installed: "
                       "pip install tensorboard (it is in the dev extra) or leave out --tensorboard / tensorboard_dir.")
OVERLAY_SAMPLES = 4  # validation samples drawn at each evaluation
COLUMN_TITLES = ("image", "truth", "prediction")
MIN_PANEL = 96  # pixels: a 16x16 sample is enlarged 6 times (nearest neighbour), so it can be read
GAP = 4  # white pixels between panels and around the grid
HEADER = 22  # height of the band of column titles


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or ``ImportError`` with a one-sentence fix."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(MISSING_TENSORBOARD) from error
    return SummaryWriter


def open_tensorboard(log_dir: str | Path | None, *, is_main: bool) -> TensorBoardLogger | None:
    """The logger the engine uses: None when ``log_dir`` is None or on ranks other than 0.

    Every rank checks that tensorboard is importable, so a missing package stops all
    processes of a torchrun job alike, before the first step.
    """
    if log_dir is None:
        return None
    writer_class = require_tensorboard()
    return TensorBoardLogger(log_dir, writer_class=writer_class) if is_main else None


class TensorBoardLogger:
    """Writes a :class:`~segan_lib.train.Trainer`'s logs to ``log_dir`` (tags in the module docstring).

    The engine calls the logger like any callback, ``logger(trainer, step, logs)``, at each
    logging interval, and :meth:`log_validation` after each evaluation. Each call ends with a
    flush, so the event files are complete whenever training stops.
    """

    def __init__(self, log_dir: str | Path, *, writer_class: type | None = None,
                 max_images: int = OVERLAY_SAMPLES) -> None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0:
            raise ValueError(f"max_images must be an int >= 0, got {max_images!r}")
        self.log_dir = Path(log_dir)
        self.max_images = max_images
        self._writer_class = writer_class or require_tensorboard()
        self._writer = None
        self._samples: tuple[torch.Tensor, torch.Tensor] | None = None  # CPU (N, C, H, W), (N, H, W)

    def _open(self, resumed_at: int):
        """The SummaryWriter, opened on first use; ``resumed_at``: the last step logged before
        this process started (0 for a fresh run), kept by TensorBoard; later ones are dropped."""
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=resumed_at + 1)
        return self._writer

    def __call__(self, trainer: object, step: int, logs: dict[str, float]) -> None:
        """Write the interval means ``logs`` as ``train/<name>`` and each optimiser's ``lr/<name>`` at ``step``."""
        steps = trainer.history.get("step", [])  # steps[-1] is this interval, steps[-2] the one before
        writer = self._open(int(steps[-2]) if len(steps) >= 2 else 0)
        for name, value in logs.items():
            writer.add_scalar(f"train/{name}", float(value), step)
        for name, optimizer in trainer.strategy.optimizers.items():
            writer.add_scalar(f"lr/{name}", float(optimizer.param_groups[0]["lr"]), step)
        writer.flush()

    def log_validation(self, trainer: object, step: int, metrics: dict) -> None:
        """Write ``metrics`` (``SegmentationMetrics.compute()``) as ``val/...`` scalars and the
        prediction overlays of the first :attr:`max_images` validation samples, at ``step``."""
        writer = self._open(step)
        for name, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.dim() == 1:  # per-class (K,)
                for k, class_value in enumerate(value.tolist()):
                    writer.add_scalar(f"val/{name}_class_{k}", class_value, step)
            else:
                writer.add_scalar(f"val/{name}", float(value), step)
        if self.max_images and trainer.val_data is not None:
            grid = labelled_grid(dict(zip(COLUMN_TITLES, self.prediction_panels(trainer))))
            writer.add_image("val/predictions", grid, step, dataformats="HWC")
        writer.flush()

    def prediction_panels(self, trainer: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Three ``(N, H, W, 3)`` float32 arrays in [0, 1]: the images, the true masks over them and
        the segmentor's predictions over them (eval mode, the trainer's autocast)."""
        from segan_lib.viz.segmentation import denormalize, overlay

        images, masks = self._validation_samples(trainer.val_data)
        segmentor = unwrap(trainer.strategy.nets["segmentor"])  # bare: rank 0 alone, no recompile
        was_training = segmentor.training
        segmentor.eval()
        try:
            with torch.no_grad(), trainer.strategy.autocast():
                logits = segmentor(images.to(trainer.device)).float().cpu()  # (N, K, H, W)
        finally:
            segmentor.train(was_training)
        num_classes = trainer.num_classes
        pictures = denormalize(images)  # (N, H, W, C), each channel stretched to [0, 1]
        pictures = np.broadcast_to(pictures, (*pictures.shape[:3], 3))  # grey -> RGB
        true = overlay(images, masks, num_classes)  # (N, H, W, 3)
        predicted = overlay(images, logits_to_pred(logits), num_classes)
        return tuple(panel.astype(np.float32) for panel in (pictures, true, predicted))

    def _validation_samples(self, data: object) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``max_images`` pairs of ``data`` on the CPU, read once and kept."""
        if self._samples is None:
            pairs = [data[i] for i in range(min(self.max_images, len(data)))]
            self._samples = (torch.stack([image.detach().cpu().float() for image, _ in pairs]),
                             torch.stack([mask.detach().cpu() for _, mask in pairs]))
        return self._samples

    def close(self) -> None:
        """Flush and close the event file (a later call opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def labelled_grid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """One picture of ``columns`` (title -> ``(N, H, W, 3)`` in [0, 1]): a row per sample, a column
    per title, the titles in a white band on top; ``(HEADER + N * (S + GAP) + GAP, C * (S + GAP) + GAP, 3)``
    float32 with ``S = H * ceil(MIN_PANEL / H)`` (square samples: each enlarged by the same whole factor).

    Panel ``(n, c)`` starts at row ``HEADER + GAP + n * (S + GAP)`` and column ``GAP + c * (S + GAP)``.
    """
    panels = list(columns.values())
    count, height, width, _ = panels[0].shape
    if any(panel.shape != panels[0].shape for panel in panels):
        raise ValueError(f"columns: expected arrays of one shape, got {[panel.shape for panel in panels]}")
    factor = math.ceil(MIN_PANEL / min(height, width))
    tall, wide = height * factor, width * factor
    grid = np.ones((HEADER + GAP + count * (tall + GAP), GAP + len(panels) * (wide + GAP), 3), np.float32)
    for c, panel in enumerate(panels):
        big = panel.repeat(factor, axis=1).repeat(factor, axis=2)  # (N, S, S, 3), nearest neighbour
        left = GAP + c * (wide + GAP)
        for n in range(count):
            top = HEADER + GAP + n * (tall + GAP)
            grid[top:top + tall, left:left + wide] = big[n]
    band = Image.new("L", (grid.shape[1], HEADER), 255)
    draw, font = ImageDraw.Draw(band), ImageFont.load_default(size=14)
    for c, title in enumerate(columns):
        draw.text((GAP + c * (wide + GAP) + wide / 2, HEADER - 4), title, fill=0, font=font, anchor="ms")
    grid[:HEADER] = (np.asarray(band, np.float32) / 255.0)[..., None]
    return grid
