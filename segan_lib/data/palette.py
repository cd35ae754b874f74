"""Colour palettes of masks: the PASCAL VOC colour map and colour-coded masks to class indices.

Label masks are best stored as index PNGs (pixel value = class). Some are saved as RGB
pictures instead, one colour per class; :func:`decode_colour_mask` turns those back into
indices through a palette and refuses any colour it does not know, naming the file.
:func:`voc_colormap` is the colour map of the PASCAL VOC development kit (Everingham et al.,
"The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010), used by VOC's palette PNGs,
by ``segan data export`` and by the plots of :mod:`segan_lib.viz.segmentation`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# A colour list (colour i is class i) or a colour -> class mapping.
Palette = Sequence[Sequence[int]] | Mapping[tuple[int, int, int], int]


def voc_colormap(n: int = 256) -> np.ndarray:
    """The VOC devkit colour map ``(n, 3)`` uint8 for classes ``0..n-1``.

    Bits 0, 3, 6 of the class index go to bits 7, 6, 5 of red; bits 1, 4, 7 to green; bits
    2, 5 to blue: 1 -> (128, 0, 0), 15 ("person") -> (192, 128, 128), 255 -> (224, 224, 192).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 256:
        raise ValueError(f"n must be an int in 1..256 (colours of classes 0..n-1), got {n!r}")
    colours = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        value, rgb = index, [0, 0, 0]
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << bit
            value >>= 3
        colours[index] = rgb
    return colours


def palette_table(palette: Palette) -> dict[int, int]:
    """``{r << 16 | g << 8 | b: class}`` from a colour list (class i = palette[i]) or a colour -> class map.

    Raises ``ValueError`` for a colour that is not three values in 0..255 and for a colour
    given two different classes.
    """
    items = palette.items() if isinstance(palette, Mapping) else enumerate(palette)
    table: dict[int, int] = {}
    for a, b in items:
        colour, cls = (a, b) if isinstance(palette, Mapping) else (b, a)
        rgb = tuple(int(c) for c in colour)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"palette colours must be (r, g, b) with 0 <= c <= 255, got {colour!r}")
        code = rgb[0] << 16 | rgb[1] << 8 | rgb[2]
        if code in table and table[code] != int(cls):
            raise ValueError(f"palette gives colour {rgb} two classes: {table[code]} and {cls}")
        table[code] = int(cls)
    return table


def decode_colour_mask(rgb: np.ndarray, palette: Palette, path: Path | str = "<array>") -> np.ndarray:
    """Colour mask ``(H, W, 3)`` uint8 -> class indices ``(H, W)`` int64 through ``palette``.

    ``palette`` is a sequence of ``(r, g, b)`` (colour ``i`` is class ``i``) or a mapping
    ``(r, g, b) -> class`` (map a colour to 255 to ignore it). A colour not in the palette is
    an error naming ``path`` and the colours.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"mask {path} must be a colour image (H, W, 3) to decode through a palette, "
                         f"got shape {rgb.shape}")
    table = palette_table(palette)
    codes = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]  # (H, W)
    colours, inverse = np.unique(codes, return_inverse=True)
    unknown = [(int(c) >> 16, int(c) >> 8 & 255, int(c) & 255) for c in colours if int(c) not in table]
    if unknown:
        raise ValueError(f"mask {path} holds colours not in the palette: {unknown[:6]}")
    lookup = np.array([table[int(c)] for c in colours], dtype=np.int64)
    return lookup[inverse].reshape(rgb.shape[:2])
