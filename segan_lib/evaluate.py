"""``segan eval``: score a trained checkpoint's segmentor on a dataset split.

Example::

    segan eval runs/mine/best.pt --split val

The U-Net is rebuilt from the checkpoint's meta (what ``segan train`` stored: the method, the
model and the dataset it was trained on), whatever method trained it, so eval takes no
``--method``; a checkpoint without a segmentor (the GAN lesson's) is refused, naming its
networks. ``--dataset``, ``--root`` and the other dataset options override the stored ones,
e.g. to score a SynthShapes model on your own folders. The scores are the per-class
Dice and IoU and their foreground means, printed by :func:`segan_lib.cli.format_scores` as
``segan train`` prints them at the end of a run. The first batch is checked against the U-Net's
input contract, so a dataset of the wrong size or channels is named before any scoring.
Registered through ``segan_lib.cli.EXTRA_COMMANDS``.
"""
from __future__ import annotations

import argparse

from segan_lib.cli import add_dataset_options, build_data, build_unet, dataset_class_names, dataset_options, format_scores


def add_eval_command(commands: argparse._SubParsersAction) -> None:
    """Register ``segan eval`` on the ``segan`` sub-command parsers."""
    evaluate = commands.add_parser("eval", help="per-class Dice and IoU of a checkpoint",
                                   description="Evaluate a checkpoint's segmentor on a dataset split.")
    evaluate.add_argument("checkpoint", help="a checkpoint written by segan train (last.pt, best.pt)")
    add_dataset_options(evaluate, default=None)
    evaluate.add_argument("--split", choices=("train", "val"), default="val", help="split to score (default val)")
    evaluate.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """``segan eval``: rebuild the U-Net from the checkpoint's meta and score a split."""
    import torch

    from segan_lib.train.checkpoint import CheckpointError, load_checkpoint
    from segan_lib.train.evaluation import evaluate_segmentation
    from segan_lib.train.hardware import resolve_amp, resolve_device
    from segan_lib.train.methods import METHODS

    payload = load_checkpoint(args.checkpoint)  # any method: eval reads it from the checkpoint's meta
    meta, nets = payload["meta"], payload["strategy"].get("nets", {})
    if "segmentor" not in nets:
        raise CheckpointError(f"checkpoint {args.checkpoint} holds no segmentor to evaluate (method "
                              f"{meta.get('method')!r} trains {', '.join(nets) or 'no network'}); give a checkpoint "
                              f"of a segmentation method ({', '.join(METHODS)})")
    model = meta.get("model")
    if not isinstance(model, dict) or model.get("name") != "unet" or "dataset" not in meta:
        raise CheckpointError(f"checkpoint {args.checkpoint} has no U-Net and dataset description (meta) to "
                              "rebuild the model from")
    stored = meta["dataset"]
    data_options = dataset_options(args, stored["size"], args.n or stored.get("n"), stored)
    data = build_data(data_options, args.split, args.device)
    segmentor = build_unet(model)
    try:
        segmentor.load_state_dict(payload["strategy"]["nets"]["segmentor"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {args.checkpoint} does not hold this U-Net's weights: {error}") from error
    device = resolve_device(args.device)
    segmentor.to(device).eval()
    amp_dtype = resolve_amp("auto", device)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            return segmentor(images).float()

    num_classes = int(meta.get("num_classes", data.num_classes))
    scores = evaluate_segmentation(predict, data, num_classes=num_classes, batch_size=args.batch_size or 16,
                                   device=device, num_workers=args.num_workers, check_images=segmentor.check_input)
    print(f"checkpoint {args.checkpoint}: method {meta.get('method')}, step {payload['step']}; "
          f"{args.split} split of {data_options['name']}, {len(data)} images")
    print(format_scores(scores, dataset_class_names(data, num_classes), "validation" if args.split == "val" else args.split))
    return 0
