"""Pictures of segmentations: images, masks, overlays and training curves.

Every function returns arrays or a matplotlib ``Figure`` and never calls ``plt.show()``;
the notebook decides when to show. Masks are coloured with the PASCAL VOC colour map
(Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010):
class 0 (background) is black, class 1 dark red, 2 dark green, 3 olive, 4 navy, ...;
pixels equal to ``ignore_index`` 255 are drawn in grey :data:`IGNORE_RGB`, a colour no class
below 255 gets.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from segan_lib._checks import check_positive
from segan_lib.data.files import IGNORE_INDEX
from segan_lib.data.palette import voc_colormap
from segan_lib.metrics import logits_to_pred

IGNORE_RGB = (0.6, 0.6, 0.6)  # 153/255: VOC colours are sums of 128, 64, 32, so never this grey


def voc_palette(num_colors: int = 255) -> np.ndarray:
    """The PASCAL VOC colour map, ``(num_colors, 3)`` float32 in [0, 1], ``num_colors <= 256``.

    :func:`segan_lib.data.palette.voc_colormap` divided by 255: bits 0, 3, 6 of the class
    index go to bits 7, 6, 5 of red; bits 1, 4, 7 to green; bits 2, 5 to blue. Class 1 =
    (128, 0, 0) / 255, class 15 ("person") = (192, 128, 128) / 255.
    """
    check_positive("num_colors", num_colors)
    return (voc_colormap(num_colors) / 255.0).astype(np.float32)


PALETTE = voc_palette(255)  # (255, 3): colours of classes 0..254


def _to_numpy(name: str, x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def denormalize(
    images: torch.Tensor | np.ndarray,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Normalised images ``(B, C, H, W)`` or ``(C, H, W)`` -> displayable ``(B, H, W, C)``
    or ``(H, W, C)`` float32 in [0, 1] (channels last, for ``imshow``).

    With ``mean`` and ``std`` (one value per channel): ``clip(x * std + mean, 0, 1)``, the
    inverse of the normalisation. Without them: each channel of each image is stretched to
    [0, 1], ``(x - min) / (max - min)`` (a constant channel becomes 0.5).
    """
    array = _to_numpy("images", images).astype(np.float32)
    if array.ndim not in (3, 4):
        raise ValueError(f"images must have shape (B, C, H, W) or (C, H, W), got shape {array.shape}")
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together (or neither)")
    batch = array if array.ndim == 4 else array[None]  # (B, C, H, W)
    channels = batch.shape[1]
    if mean is not None:
        mean_arr = np.asarray(mean, dtype=np.float32)
        std_arr = np.asarray(std, dtype=np.float32)
        if mean_arr.shape != (channels,) or std_arr.shape != (channels,):
            raise ValueError(
                f"mean and std must hold {channels} values (one per channel), got {mean_arr.shape} and {std_arr.shape}"
            )
        out = np.clip(batch * std_arr[:, None, None] + mean_arr[:, None, None], 0.0, 1.0)
    else:
        low = batch.min(axis=(2, 3), keepdims=True)  # (B, C, 1, 1)
        span = batch.max(axis=(2, 3), keepdims=True) - low
        safe = np.where(span > 0, span, 1.0)
        out = np.where(span > 0, (batch - low) / safe, 0.5)
    out = out.transpose(0, 2, 3, 1).astype(np.float32)  # (B, H, W, C)
    return out if array.ndim == 4 else out[0]


def mask_to_rgb(mask: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """Class-index mask ``(..., H, W)`` -> colours ``(..., H, W, 3)`` float32 in [0, 1].

    Class ``k`` gets ``PALETTE[k]``; ``IGNORE_INDEX`` (255) gets :data:`IGNORE_RGB`. Any other
    value, or a float mask, raises ``ValueError``.
    """
    if not isinstance(num_classes, int) or not 1 <= num_classes <= len(PALETTE):
        raise ValueError(f"num_classes must be an int in 1..{len(PALETTE)}, got {num_classes!r}")
    labels = _to_numpy("mask", mask)
    if labels.ndim < 2:
        raise ValueError(f"mask must have shape (..., H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"mask must hold integer class indices, got dtype {labels.dtype}")
    ignored = labels == IGNORE_INDEX
    bad = ~ignored & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise ValueError(
            f"mask holds label values {np.unique(labels[bad])[:8].tolist()} outside "
            f"0..{num_classes - 1} or {IGNORE_INDEX} (ignore)"
        )
    rgb = PALETTE[np.where(ignored, 0, labels)]  # (..., H, W, 3)
    rgb[ignored] = IGNORE_RGB
    return rgb


def overlay(
    images: torch.Tensor | np.ndarray, masks: torch.Tensor | np.ndarray, num_classes: int, *, alpha: float = 0.5
) -> np.ndarray:
    """Masks blended over images: ``(B, C, H, W)`` + ``(B, H, W)`` -> ``(B, H, W, 3)`` in [0, 1].

    ``out = (1 - alpha) * image + alpha * colour`` on every non-background pixel (class > 0
    or ignore); background pixels show the plain image. Images go through :func:`denormalize`;
    a 1-channel image is shown grey.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    rgb = denormalize(images)
    if rgb.ndim != 4 or rgb.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (B, C, H, W) with C = 1 or 3, got {_shape(images)}")
    labels = _to_numpy("masks", masks)
    if labels.shape != rgb.shape[:3]:
        raise ValueError(f"masks must have shape {rgb.shape[:3]} (B, H, W) to match images, got {labels.shape}")
    rgb = np.broadcast_to(rgb, (*rgb.shape[:3], 3))  # grey -> (B, H, W, 3)
    colours = mask_to_rgb(labels, num_classes)  # (B, H, W, 3)
    weight = np.where(labels[..., None] != 0, alpha, 0.0).astype(np.float32)  # (B, H, W, 1)
    return (1.0 - weight) * rgb + weight * colours


def _shape(x: object) -> tuple[int, ...] | str:
    return tuple(x.shape) if isinstance(x, (torch.Tensor, np.ndarray)) else type(x).__name__


def _predicted_labels(preds: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(B, H, W)`` labels as given; ``(B, K, H, W)`` logits through ``metrics.logits_to_pred``
    (argmax over K; K = 1: logit > 0)."""
    array = _to_numpy("preds", preds)
    if array.ndim == 3:
        return array
    if array.ndim == 4 and np.issubdtype(array.dtype, np.floating):
        return logits_to_pred(torch.as_tensor(array)).numpy()  # (B, H, W)
    raise ValueError(f"preds must be labels (B, H, W) or float logits (B, K, H, W), got {_shape(preds)}")


def show_predictions(
    images: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    preds: torch.Tensor | np.ndarray,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    max_items: int = 4,
    alpha: float = 0.5,
) -> Figure:
    """A grid with one column per sample and three rows: image, true mask over the image,
    predicted mask over the image.

    ``images (B, C, H, W)`` (C = 1 or 3), ``masks (B, H, W)`` class indices, ``preds``
    either labels ``(B, H, W)`` or logits ``(B, K, H, W)``. Shows the first
    ``min(B, max_items)`` samples. ``num_classes`` defaults to ``len(class_names)``, else to
    ``max(K, 2)`` for logits, else to the largest label present + 1. With ``class_names`` a
    legend of the class colours is added.
    """
    check_positive("max_items", max_items)
    labels = _predicted_labels(preds)
    true = _to_numpy("masks", masks)
    if labels.shape != true.shape:
        raise ValueError(f"preds must give labels of shape {true.shape} like masks, got {_shape(preds)}")
    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        elif _to_numpy("preds", preds).ndim == 4:
            num_classes = max(int(preds.shape[1]), 2)
        else:
            present = np.concatenate([true[true != IGNORE_INDEX], labels[labels != IGNORE_INDEX]])
            num_classes = int(present.max()) + 1 if present.size else 1
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names must have {num_classes} names (num_classes), got {len(class_names)}")
    n = min(true.shape[0], max_items)
    rows = {
        "image": denormalize(images[:n]),
        "true mask": overlay(images[:n], true[:n], num_classes, alpha=alpha),
        "prediction": overlay(images[:n], labels[:n], num_classes, alpha=alpha),
    }
    fig, axes = plt.subplots(3, n, figsize=(2.4 * n, 7.4), squeeze=False)
    for row, (title, pictures) in enumerate(rows.items()):
        for col in range(n):
            ax = axes[row, col]
            picture = pictures[col]
            ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture,
                      cmap="gray" if picture.shape[-1] == 1 else None, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title)
            if row == 0:
                ax.set_title(f"sample {col}")
    if class_names is not None:
        handles = [Patch(facecolor=PALETTE[k], edgecolor="black", label=name) for k, name in enumerate(class_names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    return fig


def plot_history(history: object, keys: Sequence[str] | None = None) -> Figure:
    """Training curves, one panel per key, against the optimisation step.

    ``history`` is a dict (or the Trainer's ``History``) of lists with a ``"step"`` list.
    Training keys (losses) must be as long as ``"step"`` and are drawn against it. Keys
    starting with ``"val_"`` (one entry per evaluation) are drawn against the first of
    ``"val_step"``, ``"val_epoch"``, ``"epoch"`` of the same length; the x-label says which.
    A key of per-class lists (e.g. ``"val_dice"``, ``(evaluations, K)``) gives one line per
    class. ``keys`` defaults to every numeric key of one value per entry except the x-axes
    ``"step"``, ``"epoch"``, ``"val_step"``, ``"val_epoch"``.
    """
    if not hasattr(history, "keys") or not hasattr(history, "__getitem__"):
        raise ValueError(f"history must be a dict of lists, got {type(history).__name__}")
    columns = {}
    for k in history.keys():
        try:
            columns[k] = np.asarray(history[k], dtype=np.float64)  # (n,) or (n, K) per-class values
        except (TypeError, ValueError):
            continue  # not numbers (e.g. names): not plottable
    if "step" not in columns:
        raise ValueError(f"history must have a 'step' list, got keys {sorted(columns)}")
    x_keys = ("step", "epoch", "val_step", "val_epoch")
    if keys is None:
        keys = [k for k in columns if k not in x_keys and columns[k].ndim == 1]
    if not keys:
        raise ValueError("there is nothing to plot: history has no list besides the x-axes")
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ValueError(f"keys {missing} are not numeric lists in history (plottable keys: {sorted(columns)})")
    panels = []
    for key in keys:
        candidates = ("val_step", "val_epoch", "epoch") if key.startswith("val_") else ("step",)
        x_key = next((x for x in candidates if x in columns and len(columns[x]) == len(columns[key])), None)
        if x_key is None:
            lengths = ", ".join(f"{x!r} has {len(columns[x])}" for x in candidates if x in columns)
            raise ValueError(f"history[{key!r}] has {len(columns[key])} values but {lengths}; no x-axis of that length")
        panels.append((key, x_key))
    n_cols = min(len(panels), 3)
    n_rows = -(-len(panels) // n_cols)  # ceil
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.2 * n_rows), squeeze=False)
    for ax, (key, x_key) in zip(axes.flat, panels):
        values = columns[key]  # (n,) or (n, K)
        lines = ax.plot(columns[x_key], values, marker="o" if len(values) < 30 else None)
        if values.ndim == 2:
            for k, line in enumerate(lines):
                line.set_label(f"class {k}")
            ax.legend(fontsize="small")
        ax.set_title(key)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        fig.delaxes(ax)
    fig.tight_layout()
    return fig
