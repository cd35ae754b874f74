"""``segan predict``: run a trained segmentor on your own images and write their masks.

Example::

    segan predict runs/mine/best.pt photos/ extra.jpg --out predictions/ --overlay

Inputs are image files (PNG, JPEG, TIFF, BMP) and folders, whose images are taken (not those of
their sub-folders). For each image ``<stem>.<ext>``::

    DIR/<stem>.png           an index PNG ('P' mode): pixel value = class index, displayed through
                             the VOC colour map, as written by ``segan data export``; it reads back
                             through the paired-folder loader (ROOT/images + ROOT/masks)
    DIR/<stem>_overlay.png   with --overlay: the image with the predicted classes blended over it,
                             (1 - 0.5) * pixel + 0.5 * colour on every pixel not of class 0

Each image goes through the preprocessing of training, stored in the checkpoint
(:mod:`segan_lib.data.preprocess`: size, normalisation statistics), the segmentor runs in
eval mode in float32 on batches of ``--batch-size`` images, the predicted classes (argmax; a
single sigmoid output: logit > 0) are resized back to the image's own size by nearest
neighbour, and each file is written to a temporary name and renamed into place (with the
permissions of any file the user creates). ``--out`` is created when the first mask is written.

Checkpoints written before the preprocessing was stored: one trained on SynthShapes is
read with its only possible preprocessing (per-image standardisation at the stored size),
with a warning; one trained on files is refused, since its normalisation statistics are lost
(train it again). A checkpoint without a segmentor (the GAN lesson's) is refused. An image
that cannot be read stops the run with an error naming the file; masks already written stay.
"""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from segan_lib._files import check_writable_dir, write_atomic
from segan_lib.data.export import mask_to_png
from segan_lib.data.files import read_image
from segan_lib.data.folders import IMAGE_EXTENSIONS, files_by_stem
from segan_lib.data.palette import voc_colormap
from segan_lib.data.preprocess import check_preprocessing, preprocess_image
from segan_lib.metrics import logits_to_pred
from segan_lib.train.checkpoint import CheckpointError, load_checkpoint
from segan_lib.train.methods import METHODS

OVERLAY_ALPHA = 0.5
OVERLAY_SUFFIX = "_overlay"


def stored_preprocessing(meta: dict, path: str | Path) -> dict[str, object]:
    """``meta["preprocess"]`` of checkpoint ``path``, checked; for older checkpoints see the module docstring."""
    if "preprocess" in meta:
        return check_preprocessing(meta["preprocess"], f"checkpoint {path}")
    dataset = meta.get("dataset") or {}
    if dataset.get("name") == "synth" and isinstance(dataset.get("size"), int):
        warnings.warn(f"checkpoint {path} stores no preprocessing (written by an older segan); it was trained on "
                      f"SynthShapes, so images are standardised per image and channel at {dataset['size']} pixels",
                      stacklevel=2)
        return {"size": [dataset["size"]] * 2, "in_channels": 3, "normalize": "per_image"}
    raise CheckpointError(f"checkpoint {path} stores no preprocessing (written by an older segan) and was trained on "
                          f"{dataset.get('name', 'unknown data')!r}, whose normalisation statistics it lacks; "
                          "train it again with this segan to predict with it")


def load_segmentor(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict, dict]:
    """The U-Net of checkpoint ``path`` in eval mode on ``device``, its ``meta`` and its preprocessing.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file when it holds no
    segmentor, no U-Net description (``meta["model"]``, written by ``segan train``) or no
    usable preprocessing, and ``FileNotFoundError`` when it does not exist.
    """
    from segan_lib.cli import build_unet

    payload = load_checkpoint(path)
    meta, nets = payload["meta"], payload["strategy"]["nets"]
    if "segmentor" not in nets:
        raise CheckpointError(f"checkpoint {path} holds no segmentor (method {meta.get('method')!r} trains "
                              f"{', '.join(nets) or 'no network'}); give a checkpoint of a segmentation method "
                              f"({', '.join(METHODS)})")
    model = meta.get("model")
    if not isinstance(model, dict) or model.get("name") != "unet":
        raise CheckpointError(f"checkpoint {path} has no U-Net description (meta['model']) to rebuild the segmentor "
                              "from; use a checkpoint written by segan train")
    preprocess = stored_preprocessing(meta, path)
    segmentor = build_unet(model)
    try:
        segmentor.load_state_dict(nets["segmentor"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not hold this U-Net's weights: {error}") from error
    return segmentor.to(device).eval(), meta, preprocess


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files of ``inputs``: files as given, folders by their images (sorted by stem).

    Errors (naming the path): a path that does not exist, a folder without images, two
    images with one stem (their masks would have one name).
    """
    if not inputs:
        raise ValueError("inputs must name at least one image file or folder, got none")
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list(files_by_stem(item, IMAGE_EXTENSIONS).values())
            if not found:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {item}")
            images.extend(found)
        elif item.is_file():
            images.append(item)
        else:
            raise FileNotFoundError(f"no image file or folder at {item}")
    by_stem: dict[str, Path] = {}
    for image in images:
        if image.stem in by_stem and by_stem[image.stem].resolve() != image.resolve():
            raise ValueError(f"{by_stem[image.stem]} and {image} share the stem {image.stem!r}, so their masks "
                             "would have one name: predict them into separate --out folders")
        by_stem.setdefault(image.stem, image)
    return list(by_stem.values())


def output_paths(images: Sequence[Path], out: Path, overlay: bool) -> dict[Path, list[Path]]:
    """``{image: [out/<stem>.png (, out/<stem>_overlay.png)]}``; ``ValueError`` if two outputs
    share a name or an output would overwrite an input image."""
    outputs = {image: [out / f"{image.stem}.png"] + ([out / f"{image.stem}{OVERLAY_SUFFIX}.png"] if overlay else [])
               for image in images}
    sources = {image.resolve(): image for image in images}
    written: dict[Path, Path] = {}
    for image, paths in outputs.items():
        for path in paths:
            key = path.resolve()
            if key in sources:
                raise ValueError(f"--out {out} would overwrite the input image {sources[key]}; choose another folder")
            if key in written:
                raise ValueError(f"{written[key]} and {image} would both write {path}; rename one of them")
            written[key] = image
    return outputs


def write_png(picture: Image.Image, path: Path) -> None:
    """Save ``picture`` as PNG at ``path`` atomically (:func:`segan_lib._files.write_atomic`:
    a temporary file in the same folder, ``os.replace``; mode ``0o666`` less the umask)."""
    write_atomic(path, lambda handle: picture.save(handle, format="PNG"))


def overlay_picture(image: np.ndarray, labels: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """Image ``(H, W, 3)`` uint8 with classes ``(H, W)`` blended over it: ``(1 - alpha) x + alpha c``
    where the class is not 0 (``c``: its VOC colour), the plain image elsewhere."""
    colours = voc_colormap()[labels].astype(np.float32)  # (H, W, 3)
    weight = np.where(labels[..., None] != 0, alpha, 0.0)  # (H, W, 1)
    blended = (1.0 - weight) * image.astype(np.float32) + weight * colours
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8), mode="RGB")


@torch.no_grad()
def predict_labels(segmentor: nn.Module, images: Sequence[np.ndarray], preprocess: dict,
                   device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Predicted classes ``(H_i, W_i)`` int64 of 8-bit RGB images ``(H_i, W_i, 3)``, as one batch.

    ``preprocess_image`` each -> ``(B, 3, h, w)`` -> segmentor logits ``(B, K, h, w)`` (float32)
    -> ``logits_to_pred`` ``(B, h, w)`` -> each resized to its image's size by nearest neighbour.
    """
    batch = torch.stack([preprocess_image(image, preprocess) for image in images]).to(device)  # (B, 3, h, w)
    predicted = logits_to_pred(segmentor(batch).float()).cpu()  # (B, h, w)
    labels = []
    for image, pred in zip(images, predicted):
        size = image.shape[:2]
        # labels < 2^24 are exact in float32; "nearest-exact" as in transforms.resize_pair
        resized = F.interpolate(pred[None, None].float(), size=size, mode="nearest-exact")[0, 0]
        labels.append(resized.long().numpy())
    return labels


def predict_files(checkpoint: str | Path, inputs: Sequence[str | Path], out: str | Path, *, overlay: bool = False,
                  batch_size: int = 8, device: str = "auto", progress: bool = True) -> list[Path]:
    """Predict every image of ``inputs`` with the segmentor of ``checkpoint``; returns the masks written.

    Layout of ``out`` and the steps in the module docstring. All inputs and output names
    are checked before the checkpoint runs (``out`` must be a folder or creatable as one;
    it is created when the first mask is written); the progress bar counts images.
    """
    from tqdm.auto import tqdm

    from segan_lib.train.hardware import resolve_device

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    out = check_writable_dir(out, "out")
    images = list_images(inputs)
    outputs = output_paths(images, out, overlay)
    torch_device = resolve_device(device)
    segmentor, _, preprocess = load_segmentor(checkpoint, torch_device)
    written = []  # out is created with the first mask, so an input that fails before leaves no folder
    with tqdm(total=len(images), desc="predict", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(images), batch_size):
            paths = images[start:start + batch_size]
            pixels = [read_image(path) for path in paths]  # (H, W, 3) uint8; a bad file names itself
            for path, image, labels in zip(paths, pixels, predict_labels(segmentor, pixels, preprocess, torch_device)):
                mask_path, *overlay_path = outputs[path]
                write_png(mask_to_png(torch.from_numpy(labels)), mask_path)
                if overlay_path:
                    write_png(overlay_picture(image, labels), overlay_path[0])
                written.append(mask_path)
            bar.update(len(paths))
    return written


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``segan predict``; prints where the masks went."""
    check_writable_dir(args.out, "--out")  # the flag's name in the message, before any image is read
    written = predict_files(args.checkpoint, args.inputs, args.out, overlay=args.overlay, batch_size=args.batch_size,
                            device=args.device, progress=not args.no_progress)
    print(f"wrote {len(written)} masks to {args.out}" + (" (and their overlays)" if args.overlay else ""))
    return 0


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segan predict`` on the ``segan`` sub-command parsers."""
    from segan_lib.cli_types import device, positive_int

    predict = subparsers.add_parser(
        "predict", help="segment your own images with a trained checkpoint",
        description="Run a checkpoint's segmentor on image files and folders; write OUT/<stem>.png index masks "
                    "(VOC colour map) at each image's own size, and OUT/<stem>_overlay.png with --overlay.")
    add = predict.add_argument
    add("checkpoint", help="a checkpoint written by segan train (last.pt, best.pt)")
    add("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files (PNG, JPEG, ...) and folders of images")
    add("--out", required=True, help="folder for the masks (created if needed)")
    add("--overlay", action="store_true", help="also write OUT/<stem>_overlay.png, the classes over the image")
    add("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add("--device", type=device, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N, mps")
    add("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(func=run_predict)
