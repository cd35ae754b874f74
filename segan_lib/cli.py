"""The ``segan`` command: ``segan train``, ``segan eval``, ``segan predict``, ``segan bench`` and ``segan data export``.

Examples::

    segan train --quick                          # a minute or two on a laptop CPU
    segan train --dataset folders --root my_data --num-classes 3 --out runs/mine
    segan train --method segan --out runs/segan --resume       # continue runs/segan/last.pt
    segan train --method semi --labelled-fraction 0.125        # Hung et al.: 1/8 of the labels
    segan train --no-compile                     # on a GPU: eager mode, no minute of compiling first
    torchrun --nproc_per_node=2 -m segan_lib.cli train --batch-size 32   # DDP, global batch 32
    segan eval runs/mine/last.pt --split val
    segan predict runs/mine/best.pt my_photos/ --out my_masks --overlay

Every option of ``segan train`` has a full-size default; ``--quick`` swaps in the small
preset :data:`QUICK_PRESET`, and any option given explicitly wins over both. PyTorch uses
all CPU cores unless ``--threads N`` or the environment variable ``SEGAN_THREADS=N`` (what
the test suite sets, so parallel test workers do not fight over cores) says otherwise.

Errors in the input (a bad option value, an output folder that cannot be written or holds
other files, a file that is not a segan checkpoint, ...) are printed as one line
``segan: error: ...`` and the command exits with status 2, as argparse does for a bad option;
every command that writes into an ``--out`` folder checks it before any work
(:func:`segan_lib._files.check_writable_dir`). Status 1 is left for work that failed on valid
input: an nbgrader step of ``segan assignments``, a lesson cell or Sphinx in ``segan book``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence

from segan_lib import cli_types
from segan_lib.losses import PIXEL_LOSSES
from segan_lib.models.unet import UNet
from segan_lib.train.methods import METHODS

DATASETS = ("synth", "folders", "voc", "cityscapes", "ade20k")
# Defaults for a real run (a GPU), and the small preset of --quick (a 2-core CPU, < 2 min).
FULL_PRESET = {"epochs": 30, "batch_size": 16, "size": 128, "base_channels": 32, "depth": 4, "n": None,
               "lr": None, "loss": "dice_ce", "log_every": 10, "batch_norm": True,
               "cosine": True, "threads": None}
# A small U-Net (8-16-32-64 channels, 120k parameters) sees 960 images 8 times, on all
# cores (threads None: SEGAN_THREADS if set, else PyTorch's choice), so a laptop's cores all work.
QUICK_PRESET = {"epochs": 8, "batch_size": 8, "size": 64, "base_channels": 8, "depth": 3, "n": 960,
                "lr": 5e-3, "loss": "dice_ce", "log_every": 20, "batch_norm": True, "cosine": True, "threads": None}
DATA_SEED = 0  # SynthShapes train seed (validation: DATA_SEED + 1), fixed so runs share data


def add_dataset_options(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    """The dataset options that ``segan train`` and ``segan eval`` share (``--dataset`` defaults to ``default``)."""
    add = parser.add_argument
    add("--dataset", choices=DATASETS, default=default,
        help="dataset: synth (generated, no files) or a folder layout (see data/README.md)")
    add("--root", help="dataset folder (all but synth)")
    add("--num-classes", type=cli_types.positive_int,
        help="label classes incl. background (synth: default 4; folders: default from classes.txt)")
    add("--binary", action="store_true", default=None, help="foreground/background masks, one sigmoid output")
    add("--samples", dest="n", type=cli_types.positive_int,
        help="training samples (validation: samples // 5); default all, 1000 for synth")
    add("--batch-size", type=cli_types.positive_int, help="global batch size (split across torchrun processes)")
    add("--device", type=cli_types.device, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N, mps")
    add("--num-workers", type=cli_types.non_negative_int, default=0,
        help="DataLoader workers for file datasets (default 0)")


def build_parser() -> argparse.ArgumentParser:
    """The ``segan`` parser: sub-command ``train``, and the others (``eval``, ``predict``, ...) from their modules."""
    parser = argparse.ArgumentParser(prog="segan", description="Train and evaluate segmentation networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a segmentor", description="Train a U-Net with a method and a loss.")
    add_dataset_options(train, default="synth")
    add = train.add_argument
    add("--method", choices=METHODS, default="supervised", help="training method (default supervised)")
    add("--loss", choices=tuple(PIXEL_LOSSES), help="pixel loss (default dice_ce)")
    add("--epochs", type=cli_types.positive_int, help=f"epochs (default {FULL_PRESET['epochs']})")
    add("--lr", type=cli_types.positive_float, help="learning rate (default: the method's)")
    add("--size", type=cli_types.positive_int, help=f"image size in pixels (default {FULL_PRESET['size']})")
    add("--base-channels", type=cli_types.positive_int, help="U-Net channels of the first level")
    add("--depth", type=cli_types.positive_int, help="U-Net down-sampling steps")
    add("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
        help="batch norm in the U-Net (the original has none; default on)")
    add("--cosine", action=argparse.BooleanOptionalAction, default=None,
        help="anneal every learning rate to 0 with a cosine over the run (default: on for supervised, "
             "off for segan, hybrid and semi)")
    add("--threads", type=cli_types.positive_int,
        help="CPU threads for PyTorch (default: $SEGAN_THREADS if set, else PyTorch's choice: all cores)")
    add("--quick", action="store_true", help="small preset that trains in a minute or two on a laptop CPU")
    add("--out", help="folder for last.pt, best.pt and history.json (default runs/METHOD); checked for "
                      "writing before the run starts")
    add("--resume", nargs="?", const="", metavar="PATH", help="continue from a checkpoint (default OUT/last.pt)")
    add("--seed", type=cli_types.non_negative_int, default=0, help="seed of initialisation and data order (default 0)")
    add("--amp", choices=("auto", "bf16", "off"), default="auto", help="bf16 autocast (auto: on CUDA and on CPUs with native bf16; off: the plain fp32 path)")
    add("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the networks (default: on with CUDA, off on the CPU; eager if compiling fails); "
             "--no-compile skips the minute of compilation, e.g. for short runs or debugging")
    add("--log-every", type=cli_types.positive_int, help="steps between loss read-outs")
    add("--checkpoint-every", type=cli_types.non_negative_int, default=0,
        help="steps between checkpoints (0: each epoch)")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--tensorboard", nargs="?", const="", metavar="DIR",
        help="TensorBoard logs of every player, learning rates and validation (default DIR: OUT/tensorboard)")
    labels = train.add_mutually_exclusive_group()  # semi-supervised data: a fixed split from --seed
    labels.add_argument("--labelled-fraction", type=cli_types.fraction, metavar="F",
                        help="keep the labels of this share of the training set only, e.g. 0.125 (--method semi "
                             "trains on the rest as unlabelled images; other methods ignore the rest)")
    labels.add_argument("--labelled", type=cli_types.positive_int, metavar="N",
                        help="keep the labels of N training images")
    add("--lambda-adv", type=cli_types.non_negative_float,
        help="weight of the adversarial term (hybrid, semi; default 0.01)")
    add("--lambda-semi", type=cli_types.non_negative_float, help="weight of the self-training term (semi; default 0.1)")
    add("--t-semi", type=cli_types.fraction, help="confidence threshold of the self-training term (semi; default 0.2)")
    add("--confidence", choices=("discriminator", "softmax"),
        help="semi: whose confidence picks the self-training pixels (default discriminator, Hung et al.; "
             "softmax: plain self-training, no discriminator)")
    train.set_defaults(func=run_train)

    _add_extra_commands(commands)
    return parser


# Sub-commands that live next to their code: module -> function(subparsers) that adds them.
EXTRA_COMMANDS = (("segan_lib.evaluate", "add_eval_command"),  # segan eval
                  ("segan_lib.data.export", "add_export_command"),  # segan data export
                  ("segan_lib.assignments", "add_assignments_command"),  # segan assignments
                  ("segan_lib.experiments.command", "add_experiment_command"),  # segan experiment
                  ("segan_lib.bench", "add_bench_command"),  # segan bench
                  ("segan_lib.predict", "add_predict_command"),  # segan predict
                  ("segan_lib.book", "add_book_command"))  # segan book


def _add_extra_commands(commands: argparse._SubParsersAction) -> None:
    """Register each of :data:`EXTRA_COMMANDS` whose module is present."""
    for module_name, function_name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        getattr(module, function_name)(commands)


def resolve_train_options(args: argparse.Namespace) -> dict[str, object]:
    """The effective options: an explicit flag, else the preset (--quick or full)."""
    preset = QUICK_PRESET if args.quick else FULL_PRESET
    options = {key: getattr(args, key, None) for key in preset}
    return {key: preset[key] if value is None else value for key, value in options.items()}


def dataset_options(args: argparse.Namespace, size: int, n: int | None, stored: dict | None = None) -> dict:
    """The dataset description a checkpoint stores (``meta["dataset"]``): the flags given, else ``stored``'s."""
    stored = stored or {}
    return {
        "name": args.dataset or stored.get("name", "synth"),
        "root": args.root if args.root is not None else stored.get("root"),
        "size": size,
        "num_classes": args.num_classes or stored.get("num_classes"),  # None: the dataset's own
        "binary": bool(args.binary if args.binary is not None else stored.get("binary", False)),
        "n": n,
    }


def build_data(options: dict, split: str, device: str):
    """The ``split`` ("train" or "val") of the dataset :func:`dataset_options` describes."""
    from segan_lib.data.registry import build_dataset

    dataset = build_dataset(options["name"], options["root"], split, size=options["size"], seed=DATA_SEED,
                            n=options["n"], binary=options["binary"], num_classes=options["num_classes"])
    if options["name"] == "synth" and device != "cpu":  # render SynthShapes batches on the GPU
        from segan_lib.train.hardware import resolve_device

        dataset.device = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    return dataset


def dataset_class_names(dataset: object, num_classes: int) -> list[str]:
    """The ``num_classes`` names :func:`format_scores` prints for ``dataset`` ("class k" where it has none)."""
    names = list(getattr(dataset, "class_names", None) or getattr(dataset, "CLASS_NAMES", ()))
    if num_classes == 2 and getattr(dataset, "binary", False):
        return ["background", "foreground"]
    return names[:num_classes] if len(names) >= num_classes else [f"class {k}" for k in range(num_classes)]


def format_scores(scores: dict, class_names: Sequence[str], split: str = "validation") -> str:
    """A per-class table and the foreground means of ``split``, as printed by train and eval.

    ``scores``: ``SegmentationMetrics.compute()`` output (per-class entries as tensors or lists),
    optionally with ``StructureMetrics.compute()``'s keys: then the table gains the columns
    BF1 (boundary F1), HD95 (pixels), Topo (topology error) and Pres (presence error), and
    their foreground means.
    """
    structure = "boundary_f1" in scores
    width = max(len("class"), *(len(n) for n in class_names))
    header = f"{'class':<{width}}  {'Dice':>6}  {'IoU':>6}"
    columns = [list(scores["dice"]), list(scores["iou"])]
    if structure:
        header += f"  {'BF1':>6}  {'HD95':>6}  {'Topo':>6}  {'Pres':>6}"
        columns += [list(scores[key]) for key in ("boundary_f1", "hd95", "topology_error", "presence_error")]
    lines = [header]
    for name, *values in zip(class_names, *columns):
        row = f"{name:<{width}}  {values[0]:6.3f}  {values[1]:6.3f}"
        if structure:
            row += f"  {values[2]:6.3f}  {values[3]:6.2f}  {values[4]:6.2f}  {values[5]:6.3f}"
        lines.append(row)
    lines.append(f"{split} mean Dice (foreground): {scores['mean_dice']:.3f}")
    lines.append(f"{split} mean IoU (foreground): {scores['mean_iou']:.3f}")
    if structure:
        lines.append(f"{split} mean boundary F1 (foreground): {scores['mean_boundary_f1']:.3f}")
        lines.append(f"{split} mean HD95 (foreground): {scores['mean_hd95']:.2f} px")
        lines.append(f"{split} mean topology error (foreground): {scores['mean_topology_error']:.2f}")
        lines.append(f"{split} mean presence error (foreground): {scores['mean_presence_error']:.3f}")
    lines.append(f"pixel accuracy: {scores['pixel_accuracy']:.3f}")
    if structure:
        from segan_lib.metrics import BOUNDARY_TOLERANCE

        lines.append(f"BF1: boundary F1 within {BOUNDARY_TOLERANCE:g} px; "
                     "HD95: 95th-percentile boundary distance in px, where the class is in both masks;")
        lines.append("Topo: components + holes miscounted; Pres: share of images with the class in one mask only "
                     "(all per image, averaged)")
    return "\n".join(lines)


def _semi_supervised_setup(args: argparse.Namespace, train_data: object, epochs: int,
                           batch_size: int) -> tuple[object, dict, dict]:
    """The labelled split of ``train_data`` (when asked), the ``semi`` options, and the meta to record.

    Returns ``(training data, strategy options, meta entries)``. ``L_semi`` waits a quarter of
    the run's steps on the labelled data (Hung et al.: 5,000 of 20,000).
    """
    from segan_lib.data.split import split_labelled
    from segan_lib.train.batches import steps_in_epoch
    from segan_lib.train.semi import semi_warmup_steps

    semi_flags = {"--lambda-semi": args.lambda_semi, "--t-semi": args.t_semi, "--confidence": args.confidence}
    given = [flag for flag, value in semi_flags.items() if value is not None]
    if args.method != "semi" and given:
        raise ValueError(f"{given[0]} is only for --method semi, got --method {args.method}")
    if args.lambda_adv is not None and args.method not in ("hybrid", "semi"):
        raise ValueError(f"--lambda-adv is only for --method hybrid or semi, got --method {args.method}")
    options = {} if args.lambda_adv is None else {"lambda_adv": args.lambda_adv}
    if args.labelled_fraction is None and args.labelled is None:
        if args.method == "semi":
            raise ValueError("--method semi needs --labelled-fraction F or --labelled N (which images keep labels)")
        return train_data, options, {}
    labelled, unlabelled = split_labelled(train_data, fraction=args.labelled_fraction, count=args.labelled,
                                          seed=args.seed)
    meta = {"split": {"seed": args.seed, "num_samples": len(train_data), "labelled_indices": labelled.indices.tolist()}}
    if args.method == "semi":
        total_steps = epochs * steps_in_epoch(len(labelled), batch_size)
        options.update(unlabelled=unlabelled, semi_start_step=semi_warmup_steps(total_steps), seed=args.seed)
        options.update({key: value for key, value in (("lambda_semi", args.lambda_semi), ("t_semi", args.t_semi),
                                                      ("confidence", args.confidence)) if value is not None})
    return labelled, options, meta


def build_unet(model: dict) -> UNet:
    """The U-Net of ``meta["model"]`` (``name, in_channels, num_classes, base_channels, depth,
    batch_norm``): what ``segan train`` trains and ``segan eval`` rebuilds from a checkpoint."""
    return UNet(model["in_channels"], model["num_classes"], base_channels=model["base_channels"],
                depth=model["depth"], batch_norm=model.get("batch_norm", False))


def run_train(args: argparse.Namespace) -> int:
    """``segan train``: build data, U-Net and strategy, train, print the validation scores."""
    import torch

    from segan_lib._files import check_writable_dir
    from segan_lib.course import seed_everything, threads_from_env
    from segan_lib.data.preprocess import preprocessing_of
    from segan_lib.train import TrainConfig, Trainer, build_strategy
    from segan_lib.train.batches import steps_in_epoch
    from segan_lib.train.tensorboard import require_tensorboard

    started = time.perf_counter()
    if args.tensorboard is not None:
        require_tensorboard()  # fails now if it is missing, not after building the data
    opts = resolve_train_options(args)
    out = check_writable_dir(args.out or f"runs/{args.method}", "--out")  # before any data or model is built
    threads = opts["threads"] if opts["threads"] is not None else threads_from_env()
    if threads is not None:
        torch.set_num_threads(threads)
    data_options = dataset_options(args, opts["size"], opts["n"])
    train_data = build_data(data_options, "train", args.device)
    val_data = build_data(data_options, "val", args.device)
    num_classes = int(train_data.num_classes)
    preprocess = preprocessing_of(train_data)  # what segan predict does to new images (before any split)
    train_data, options, split_meta = _semi_supervised_setup(args, train_data, opts["epochs"], opts["batch_size"])
    if args.method == "semi" and args.loss is None:
        opts["loss"] = "ce"  # Hung et al.'s labelled term
    model = {"name": "unet", "in_channels": int(preprocess["in_channels"]),
             "num_classes": 1 if num_classes == 2 and data_options["binary"] else num_classes,
             "base_channels": opts["base_channels"], "depth": opts["depth"], "batch_norm": opts["batch_norm"]}
    seed_everything(args.seed)  # the initial weights depend on the seed only
    segmentor = build_unet(model)
    # --cosine anneals every rate of any method to 0 over the whole run; without the flag only a
    # supervised run does (the presets' default), and the adversarial methods keep constant rates
    if args.cosine or (args.cosine is None and opts["cosine"] and args.method == "supervised"):
        options["cosine_steps"] = opts["epochs"] * steps_in_epoch(len(train_data), opts["batch_size"])
    strategy = build_strategy(args.method, segmentor, in_channels=model["in_channels"], num_classes=num_classes,
                              lr=opts["lr"], loss=opts["loss"], **options)
    tensorboard_dir = None if args.tensorboard is None else args.tensorboard or str(out / "tensorboard")
    config = TrainConfig(epochs=opts["epochs"], batch_size=opts["batch_size"], seed=args.seed, device=args.device,
                         amp=args.amp, compile=args.compile, log_every=opts["log_every"], checkpoint_dir=str(out),
                         checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                         num_workers=args.num_workers, tensorboard_dir=tensorboard_dir)
    meta = {"model": model, "dataset": data_options, "in_channels": model["in_channels"], "loss": opts["loss"],
            "preprocess": preprocess, **split_meta}
    trainer = Trainer(strategy, train_data, val_data, num_classes=num_classes, config=config, meta=meta)
    resume = None if args.resume is None else (args.resume or out / "last.pt")
    history = trainer.fit(resume_from=resume)
    if trainer.dist.is_main:
        (out / "history.json").write_text(json.dumps(history.to_dict()), encoding="utf-8")
        scores = {key: history.last("val_" + key) for key in ("dice", "iou", "mean_dice", "mean_iou", "pixel_accuracy")}
        print(format_scores(scores, dataset_class_names(val_data, num_classes)))
        print(f"checkpoints in {out}; {trainer.step} steps, {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segan`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from segan_lib.train import distributed
    from segan_lib.train.checkpoint import CheckpointError
    from segan_lib.train.history import TrainingDiverged

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError, CheckpointError, TrainingDiverged) as error:
        print(f"segan: error: {error}", file=sys.stderr)
        return 2  # like argparse's own "segan: error: ..." for a bad option
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
