"""Reading image and mask files, with errors that name the file and what is wrong with it.

Every file dataset (paired folders, VOC, Cityscapes, ADE20K) reads its files through
:func:`read_image` and :func:`read_mask`, and checks the decoded labels with
:func:`check_labels`, so a truncated file, a floating-point mask or a label outside the
classes stops with the same kind of message whichever layout it came from. A dataset that
is missing altogether raises :func:`missing_root_error`, which points at ``data/README.md``.
Nothing here downloads anything.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IGNORE_INDEX = 255
LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg")
README_HINT = ("See data/README.md in the segan-course repository for each dataset's layout, "
               "where it is published and where to unpack it. Nothing is downloaded at run time.")


def missing_root_error(dataset: str, root: str | Path, layout: str) -> FileNotFoundError:
    """The error for a dataset root that is absent or not laid out as expected.

    Example: ``missing_root_error("Cityscapes", "/data/cs", "ROOT/leftImg8bit/...")`` reads
    "Cityscapes not found at /data/cs: expected ROOT/leftImg8bit/.... See data/README.md ...".
    """
    return FileNotFoundError(f"{dataset} not found at {root}: expected {layout}. {README_HINT}")


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to 8-bit RGB ``(H, W, 3)``; unreadable or truncated files name the file.

    Palette, greyscale (repeated over three channels), RGBA (alpha dropped) and CMYK images
    are converted by Pillow; 16-bit greyscale ``x`` becomes ``round(255 x / 65535)``.
    Floating-point images are refused.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith("I"):  # 16/32-bit integer greyscale
                values = np.asarray(img).astype(np.int64)
            elif img.mode == "F":
                values = None
            else:
                return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"image {path} cannot be read ({exc}): the file is truncated, corrupt "
                         "or not an image Pillow can open") from exc
    if values is None or values.min() < 0 or values.max() > 65535:
        raise ValueError(f"image {path} is a floating-point or 32-bit image; store it as 8- or 16-bit")
    grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(255 x / 65535)
    return np.repeat(grey[..., None], 3, axis=2)  # (H, W) -> (H, W, 3)


def check_lossless_mask(path: Path) -> None:
    """A mask stored as JPEG is an error naming the file: lossy compression changes label values."""
    if path.suffix.lower() in LOSSY_MASK_SUFFIXES:
        raise ValueError(f"mask {path} is a JPEG: lossy compression changes label values; "
                         "store masks as PNG (or TIFF/BMP)")


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask file without changing its values: integer ``(H, W)`` or ``(H, W, C)``.

    Single-channel masks (``L``, ``I;16``, ``I``) give their values; palette (``P``) masks
    give their palette *indices*, not colours; 1-bit masks give 0/1; colour masks give
    ``(H, W, C)`` (RGB, RGBA, or ``LA`` greyscale + alpha). JPEG masks are refused (lossy
    compression changes label values) and so are floating-point masks, each naming the file.
    """
    check_lossless_mask(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "1":
                return np.asarray(img, dtype=np.uint8)  # bool -> 0/1
            values = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"mask {path} cannot be read ({exc}): the file is truncated, corrupt "
                         "or not an image Pillow can open") from exc
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"mask {path} holds {values.dtype} values; masks must hold integer class indices")
    return values


def check_labels(labels: np.ndarray, num_classes: int, path: Path | str) -> None:
    """Labels ``(H, W)`` must lie in ``0..num_classes-1`` or be 255 (ignore); else name the file and values."""
    bad = (labels < 0) | ((labels >= num_classes) & (labels != IGNORE_INDEX))
    if bad.any():
        values = np.unique(labels[bad])[:8].tolist()
        raise ValueError(f"mask {path} holds label values {values} outside the {num_classes} classes "
                         f"0..{num_classes - 1} (255 = ignore)")
