"""``segan data export``: write a SynthShapes sample as paired folders.

The output is the paired-folder layout that :class:`~segan_lib.data.folders.FolderDataset`
reads (and that you would give your own data)::

    OUT/images/0000.png ...   8-bit RGB, 127.5 + 40 x of the normalised image x, for viewing
    OUT/masks/0000.png  ...   index PNGs ('P' mode: the pixel values are the class indices,
                              the VOC colour map only makes them visible in an image viewer)
    OUT/classes.txt           one class name per line

Each file is written to a temporary name in the same folder and renamed into place
(``os.replace``, :func:`segan_lib._files.write_atomic`), so an interrupted export never leaves
a half-written file; files get the permissions of any file the user creates (umask). The committed
sample in ``data/sample`` is ``segan data export --out data/sample --n 32 --size 64 --seed 0``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segan_lib._checks import check_positive
from segan_lib._files import check_writable_dir, write_atomic
from segan_lib.data.palette import voc_colormap

SAMPLE_COMMAND = "segan data export --out data/sample --n 32 --size 64 --seed 0"
EXPORT_SCALE = 40.0  # grey levels per standard deviation in the exported 8-bit images


def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """Normalised image ``(3, H, W)`` -> 8-bit ``(H, W, 3)``: ``clip(round(127.5 + 40 x), 0, 255)``.

    SynthShapes images are standardised per image and channel, so one fixed linear map shows
    ``x`` in about ``[-3.2, 3.2]`` standard deviations, and sample ``i`` is written the same
    whatever ``n`` is exported.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        described = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor of shape (3, H, W), got {described}")
    scaled = (image.float() * EXPORT_SCALE + 127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)


def mask_to_png(mask: torch.Tensor) -> Image.Image:
    """Mask ``(H, W)`` int64 with values 0..254 or 255 -> 'P' PNG whose indices are the labels."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.dtype != torch.int64 or mask.numel() == 0:
        described = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a non-empty int64 tensor of shape (H, W), got {described}")
    if mask.min() < 0 or mask.max() > 255:
        raise ValueError(f"mask values must be in 0..255 to fit an index PNG, "
                         f"got {int(mask.min())}..{int(mask.max())}")
    png = Image.fromarray(mask.to(torch.uint8).numpy(), mode="L").convert("P")
    png.putpalette(voc_colormap().ravel().tolist())
    return png


def export_synthshapes(
    out_dir: str | Path, n: int, *, size: int = 64, num_classes: int = 4, seed: int = 0, binary: bool = False,
) -> Path:
    """Write ``n`` SynthShapes pairs (``seed``, ``size``, ``num_classes``, ``binary``) to ``out_dir``.

    Files are named ``0000.png``... by sample index; existing files of those names are
    replaced. Any other file already in ``out_dir/images`` or ``out_dir/masks`` is an error
    (it would silently join the dataset). Returns ``out_dir`` as a ``Path``.
    """
    from segan_lib.data.synthetic import SynthShapes

    for name, value in (("n", n), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_positive(name, value)
    out = Path(out_dir)
    names = [f"{i:04d}.png" for i in range(n)]
    for sub in ("images", "masks"):  # checked before anything is written
        folder = check_writable_dir(out / sub, "out_dir")  # e.g. out_dir/images must not be a file
        if not folder.is_dir():
            continue
        stray = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name not in names)
        if stray:
            raise FileExistsError(f"{folder} already holds files this export would not write ({stray[:5]}); "
                                  "export into an empty folder or remove them")
    dataset = SynthShapes(n, size=size, num_classes=num_classes, binary=binary, seed=seed)
    images, masks = dataset.get_batch(torch.arange(n))  # (n, 3, H, W), (n, H, W)
    for i, name in enumerate(names):
        rgb = Image.fromarray(image_to_uint8(images[i].cpu()), mode="RGB")
        write_atomic(out / "images" / name, lambda handle, img=rgb: img.save(handle, format="PNG"))
        png = mask_to_png(masks[i].cpu())
        write_atomic(out / "masks" / name, lambda handle, img=png: img.save(handle, format="PNG"))
    class_names = "\n".join(dataset.CLASS_NAMES) + "\n"  # binary: background, foreground
    write_atomic(out / "classes.txt", class_names.encode("utf-8"))
    return out


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``segan data export``. Input errors (an ``--out`` that cannot be a folder, one
    holding other files, a bad number) reach ``segan_lib.cli.main``: one line, exit status 2."""
    check_writable_dir(args.out, "--out")
    try:
        out = export_synthshapes(args.out, args.n, size=args.size, num_classes=args.num_classes,
                                 seed=args.seed, binary=args.binary)
    except FileExistsError as error:  # other files in OUT/images or OUT/masks: an input error, like a bad flag
        raise ValueError(str(error)) from error
    print(f"wrote {args.n} image/mask pairs to {out}/images and {out}/masks")
    return 0


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data export`` on the ``segan`` sub-command parsers (handler via ``args.func``)."""
    from segan_lib.cli_types import positive_int

    data = subparsers.add_parser("data", help="dataset utilities", description="Dataset utilities.")
    data_commands = data.add_subparsers(dest="data_command", metavar="{export}", required=True)
    export = data_commands.add_parser(
        "export", help="write a SynthShapes sample as paired folders (images/, masks/)",
        description=f"Write SynthShapes pairs as OUT/images/*.png and OUT/masks/*.png (index PNGs). "
                    f"The committed sample: {SAMPLE_COMMAND}",
    )
    export.add_argument("--out", required=True, help="output folder (images/, masks/, classes.txt)")
    export.add_argument("--n", type=positive_int, default=32, help="number of pairs (default 32)")
    export.add_argument("--size", type=positive_int, default=128, help="image height and width in pixels (default 128)")
    export.add_argument("--seed", type=int, default=0, help="SynthShapes seed (default 0)")
    export.add_argument("--num-classes", type=int, default=4, help="classes incl. background (default 4)")
    export.add_argument("--binary", action="store_true", help="foreground/background masks (0/1)")
    export.set_defaults(func=run_export)
