"""The preprocessing of training, written down so a trained model sees new images the same way.

``segan train`` stores :func:`preprocessing_of` its training dataset in the checkpoint's
``meta["preprocess"]``, plain data that ``segan predict`` reads back::

    {"size": [h, w], "in_channels": 3, "normalize": "dataset", "mean": [m_r, m_g, m_b], "std": [s_r, s_g, s_b]}
    {"size": [h, w], "in_channels": 3, "normalize": "per_image"}

:func:`preprocess_image` then maps an 8-bit RGB image ``(H, W, 3)`` to the network's input:
``x = pixel / 255``, resized to ``(h, w)`` bilinearly (antialiased when shrinking, as in
:func:`~segan_lib.data.transforms.resize_image`), then

* ``"dataset"`` (file datasets: folders, VOC, Cityscapes, ADE20K): ``(x - mean_c) / std_c`` with
  the per-channel statistics of the training split (:func:`~segan_lib.data.paired.training_stats`),
  exactly the evaluation transform of :class:`~segan_lib.data.transforms.PairedTransform`;
* ``"per_image"`` (SynthShapes, whose images are standardised one by one):
  ``(x - mean_hw) / sqrt(var_hw + 1e-6)`` per image and channel over its ``h x w`` pixels.
  An image written by ``segan data export`` (``127.5 + 40 x``, clipped to 0..255) gives back
  ``x`` up to 8-bit rounding when no pixel was clipped, and close to it otherwise.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from segan_lib.data.transforms import as_size, image_to_tensor, normalize, resize_image

NORMALIZATIONS = ("dataset", "per_image")
PER_IMAGE_EPS = 1e-6  # the variance floor of SynthShapes' per-image standardisation


def preprocessing_of(dataset: object) -> dict[str, object]:
    """The preprocessing of ``dataset`` as plain data (see the module docstring).

    File datasets (with ``transform.size``, ``mean`` and ``std``) give ``"dataset"``;
    SynthShapes (``get_batch`` and an int ``size``) gives ``"per_image"``. Anything else
    raises ``ValueError``: its preprocessing is unknown.
    """
    in_channels = int(getattr(dataset, "in_channels", 3))
    transform = getattr(dataset, "transform", None)
    if hasattr(dataset, "mean") and hasattr(dataset, "std") and hasattr(transform, "size"):
        return {"size": list(as_size(transform.size)), "in_channels": in_channels, "normalize": "dataset",
                "mean": [float(m) for m in dataset.mean], "std": [float(s) for s in dataset.std]}
    if hasattr(dataset, "get_batch") and isinstance(getattr(dataset, "size", None), int):
        return {"size": list(as_size(dataset.size)), "in_channels": in_channels, "normalize": "per_image"}
    raise ValueError(f"dataset must be a file dataset (transform, mean, std) or SynthShapes to record its "
                     f"preprocessing, got {type(dataset).__name__}")


def check_preprocessing(preprocess: object, where: str) -> dict[str, object]:
    """``preprocess`` if it is a valid record (keys and types above), else ``ValueError`` naming ``where``."""
    problem = None
    if not isinstance(preprocess, Mapping):
        problem = f"a dict, got {type(preprocess).__name__}"
    elif preprocess.get("normalize") not in NORMALIZATIONS:
        problem = f"normalize in {NORMALIZATIONS}, got {preprocess.get('normalize')!r}"
    elif preprocess.get("in_channels") != 3:
        problem = f"in_channels 3 (RGB images), got {preprocess.get('in_channels')!r}"
    elif preprocess["normalize"] == "dataset" and not all(
            isinstance(preprocess.get(k), (list, tuple)) and len(preprocess[k]) == 3 for k in ("mean", "std")):
        problem = f"3 values in mean and std, got {preprocess.get('mean')!r} and {preprocess.get('std')!r}"
    if problem is None:
        try:
            as_size(preprocess.get("size"))
        except ValueError:
            problem = f"a size [h, w], got {preprocess.get('size')!r}"
    if problem:
        raise ValueError(f"the preprocessing stored in {where} must have {problem}")
    return dict(preprocess)


def preprocess_image(image: np.ndarray, preprocess: Mapping[str, object]) -> torch.Tensor:
    """8-bit RGB ``(H, W, 3)`` -> the network's input ``(3, h, w)`` float32 (formulas in the module docstring)."""
    x = resize_image(image_to_tensor(image), as_size(preprocess["size"]))  # (3, h, w) in [0, 1]
    if preprocess["normalize"] == "dataset":
        return normalize(x, preprocess["mean"], preprocess["std"])
    centred = x - x.mean(dim=(1, 2), keepdim=True)  # minus the mean of each channel
    variance = centred.square().mean(dim=(1, 2), keepdim=True)  # (3, 1, 1)
    return centred / (variance + PER_IMAGE_EPS).sqrt()
