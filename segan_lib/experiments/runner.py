"""The experiment runner: every arm on paired seeds, resumable, written to ``OUT/results.json``.

For each seed ``s`` (outer loop, so the pairs of a seed are complete early) and each arm::

    seed every RNG with s, build the U-Net       -> every arm of seed s starts from the same weights
    build the arm's strategy (critic after)      -> building a critic cannot change the U-Net
    an arm with a labelled fraction f keeps the labels of split_labelled(images, fraction=f,
          seed=s) only                           -> the same labelled images for every arm of seed s
    train with TrainConfig(seed=s) on the training images of seed s (SynthShapes seed s, the
          arm's regime)                          -> every arm of seed s sees the same batches in the
                                                    same order (the engine's order depends on the seed
                                                    and the number of images only)
    score on the held-out images (seed held_out_seed, same regime): Dice, IoU and whatever
          structure metrics the evaluation returns
    write OUT/runs/<arm>/seed<s>.json (and .npz: predicted labels of the first images shown)
    rewrite OUT/results.json (atomically: a temporary file, then a rename)

With ``jobs > 1`` (CPU only) the runs not yet finished are trained that many at a time, each in a
process of its own (:mod:`~segan_lib.experiments.parallel`); every run seeds itself as above, so
the results are the same. A finished ``(arm, seed)`` found in OUT is not trained again; a file written by a different
experiment, preset or arm definition is an error rather than silently mixed in. At the end the
verdicts are computed (:mod:`~segan_lib.experiments.verdicts`) and the figures written
(``paired_differences.png``, ``curves.png``, ``predictions_<regime>.png``).
"""
from __future__ import annotations

import io
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segan_lib import course
from segan_lib._files import check_writable_dir
from segan_lib.experiments.curves import CURVE_IMAGES, curve_callback, label_curve_summary, plateau_summary
from segan_lib.experiments.labelled import labelled_training
from segan_lib.experiments.parallel import in_processes
from segan_lib.experiments.regimes import regime_data
from segan_lib.experiments.results import (
    SCHEMA_VERSION, environment, json_number, read_json, scores_from_metrics, write_atomic, write_json,
)
from segan_lib.experiments.spec import Arm, Experiment, Preset
from segan_lib.experiments.validity import run_validity
from segan_lib.experiments.verdicts import verdicts
from segan_lib.losses import get_pixel_loss
from segan_lib.metrics import logits_to_pred
from segan_lib.models.unet import UNet
from segan_lib.train import Strategy, TrainConfig, Trainer, build_strategy
from segan_lib.train.batches import steps_in_epoch
from segan_lib.train.hardware import (
    announce_compute, describe_compute, resolve_amp, resolve_device, use_channels_last, use_compile,
)

# The critic's size options of each adversarial method (one place to follow a rename).
CRITIC_SIZE_OPTIONS = {"segan": ("critic_base_channels", "critic_depth"),
                       "hybrid": ("critic_base_channels", "critic_depth"),
                       "semi": ("critic_base_channels", "critic_depth")}


def initial_segmentor(preset: Preset, seed: int) -> UNet:
    """``UNet(3, num_classes, ...)`` of ``preset``, built right after seeding every RNG with ``seed``."""
    course.seed_everything(seed)
    return UNet(3, preset.num_classes, base_channels=preset.base_channels, depth=preset.depth,
                batch_norm=preset.batch_norm)


def build_arm_strategy(arm: Arm, segmentor: torch.nn.Module, preset: Preset, **extra: object) -> Strategy:
    """``build_strategy(arm.method, segmentor, ...)`` at the preset's learning rate; an adversarial
    arm's critic gets the preset's size unless the arm's options set it; ``extra``: options the
    runner adds (:func:`~segan_lib.experiments.labelled.labelled_training`'s)."""
    options = {**arm.options, **extra}
    if arm.method in CRITIC_SIZE_OPTIONS:
        width, depth = CRITIC_SIZE_OPTIONS[arm.method]
        options = {width: preset.critic_base_channels, depth: preset.critic_depth, **options}
    loss = get_pixel_loss(arm.loss, **arm.loss_options) if arm.loss_options else arm.loss
    return build_strategy(arm.method, segmentor, in_channels=3, num_classes=preset.num_classes, lr=preset.lr,
                          loss=loss, **options)


def train_config(preset: Preset, seed: int, device: torch.device, epochs: int | None = None) -> TrainConfig:
    """The engine settings of one run (``epochs``: None for the preset's): no validation during
    training, no checkpoints, no bar."""
    epochs = preset.epochs if epochs is None else epochs
    return TrainConfig(epochs=epochs, batch_size=preset.batch_size, seed=seed, device=str(device),
                       amp=preset.amp, compile=preset.compile, log_every=preset.log_every, eval_every=0,
                       progress=False)


@dataclass
class PreparedRun:
    """One ``(arm, seed)`` ready to train: its trainer (strategy, training data, config) and held-out data."""

    arm: Arm
    seed: int
    trainer: Trainer
    held_out: object
    curve_every: int = 0  # the preset's: score on curve_data every that many steps (0: never)
    curve_data: object = None  # the first CURVE_IMAGES held-out images


def prepare_run(experiment: Experiment, preset: Preset, arm: str | Arm, seed: int,
                device: str | torch.device = "cpu", held_out: object = None) -> PreparedRun:
    """Build the U-Net (seeded), the arm's strategy and a ``Trainer`` for ``seed``; nothing trains yet.

    ``held_out``: the regime's held-out data if already built (else it is built here).
    """
    arm = experiment.arm(arm) if isinstance(arm, str) else arm
    device = torch.device(device)
    regime = experiment.regimes[arm.regime]
    train_data = regime_data(regime, n=preset.n_train, size=preset.size, num_classes=preset.num_classes, seed=seed,
                             device=device)
    if held_out is None:
        held_out = regime_data(regime, n=preset.n_eval, size=preset.size, num_classes=preset.num_classes,
                               seed=experiment.held_out_seed, device=device)
    train_data, extra, epochs = labelled_training(arm, preset, train_data, seed)
    if preset.cosine:  # anneal every rate to 0 over this arm's steps (the same for every arm of a fraction)
        extra["cosine_steps"] = epochs * steps_in_epoch(len(train_data), preset.batch_size)
    strategy = build_arm_strategy(arm, initial_segmentor(preset, seed), preset, **extra)
    trainer = Trainer(strategy, train_data, None, num_classes=preset.num_classes,
                      config=train_config(preset, seed, device, epochs))
    curve_data = None if not preset.curve_every else regime_data(
        regime, n=min(CURVE_IMAGES, preset.n_eval), size=preset.size, num_classes=preset.num_classes,
        seed=experiment.held_out_seed, device=device)
    return PreparedRun(arm, seed, trainer, held_out, preset.curve_every, curve_data)


def execute_run(run: PreparedRun, n_show: int) -> tuple[dict, np.ndarray]:
    """Train ``run``, score it on its held-out data; returns the run record and the predicted
    labels ``(n_show, S, S)`` uint8 of the first ``n_show`` held-out images."""
    trainer, curve = run.trainer, None
    if run.curve_every:
        record_curve, curve = curve_callback(run.curve_data, run.curve_every)
        trainer.callbacks.append(record_curve)
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate(run.held_out)
    trainer.strategy.train(False)
    images, _ = run.held_out.get_batch(torch.arange(n_show))
    labels = logits_to_pred(trainer.strategy.predict_logits(images.to(trainer.device))).cpu().numpy()
    images_seen = trainer.step * trainer.config.batch_size
    validity = run_validity(trainer.strategy, history, trainer.step, run.held_out)
    record = {
        "arm": run.arm.name, "seed": run.seed,
        "scores": scores_from_metrics(metrics, list(run.held_out.CLASS_NAMES)),
        "train_seconds": seconds, "images_per_second": images_seen / seconds if seconds > 0 else None,
        "steps": trainer.step, "images_seen": images_seen, "device": str(trainer.device), "torch": torch.__version__,
        "compute": trainer.compute, **({"validity": validity} if validity is not None else {}),
        **({"curve": curve} if curve is not None else {}),
        "history": {key: [json_number(v) for v in values] for key, values in history.to_dict().items()},
    }
    return record, labels.astype(np.uint8)


def fingerprint(experiment: Experiment, preset: Preset, arm: Arm) -> dict[str, object]:
    """What must match for a stored run to count as a finished run of this experiment."""
    return {"experiment": experiment.name, "preset": preset.to_dict(), "arm": arm.to_dict(),
            "regime": experiment.regimes[arm.regime].to_dict(), "held_out_seed": experiment.held_out_seed}


def _first_difference(stored: object, current: object, path: str = "") -> str:
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in dict.fromkeys([*stored, *current]):
            if stored.get(key) != current.get(key):
                return _first_difference(stored.get(key), current.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'value'}: stored {stored!r}, now {current!r}"


def load_finished(path: Path, expected: dict) -> dict | None:
    """The stored run at ``path`` if there is one; ``ValueError`` if it belongs to another setup."""
    if not path.exists():
        return None
    record = read_json(path)
    if record.get("fingerprint") != expected:
        raise ValueError(f"{path} was written by a different run ({_first_difference(record.get('fingerprint'), expected)}"
                         "); use another --out folder or delete it")
    return record


def experiment_command(name: str, preset: str, seeds: Sequence[int], out: str | Path | None, device: str) -> str:
    """The ``segan experiment ...`` line that reproduces a run of the registered experiment ``name``."""
    seeds_text = str(len(seeds)) if list(seeds) == list(range(len(seeds))) else ",".join(map(str, seeds))
    parts = ["segan", "experiment", name, "--preset", preset, "--seeds", seeds_text]
    parts += ["--out", str(out)] if out is not None else []
    parts += ["--device", device] if device != "auto" else []
    return shlex.join(parts)


def _resolve_seeds(seeds: int | Sequence[int] | None, preset: Preset, held_out_seed: int) -> list[int]:
    if seeds is None:
        seeds = preset.seeds
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {seeds}")
        seeds = range(seeds)
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be distinct ints >= 0, got {seeds}")
    if held_out_seed in seeds:
        raise ValueError(f"seeds must not include {held_out_seed}, the seed of the held-out images, got {seeds}")
    return seeds


def run_experiment(experiment: Experiment, preset: str | Preset = "quick", *,
                   seeds: int | Sequence[int] | None = None, out: str | Path | None = None, device: str = "auto",
                   progress: bool = True, command: str | None = None, jobs: int = 1) -> dict:
    """Run every arm of ``experiment`` on every seed (see the module docstring); returns the results.

    Args:
        experiment: an :class:`Experiment` (:func:`segan_lib.experiments.registry.run_experiment`
            also takes the name of a registered one, ``"adversarial"``).
        preset: a preset name of the experiment (``"quick"``, ``"reference"``, ``"full"``) or a
            :class:`Preset` (recorded as ``"custom"``).
        seeds: how many paired seeds (``0 .. n-1``) or which; None: the preset's count.
        out: the folder of ``results.json``, ``runs/`` and the figures; None keeps everything in
            memory (no files, no resume, no figures).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...; progress: a tqdm bar over arms x seeds.
        command: the command line to record; None builds the ``segan experiment ...`` line.
        jobs: runs trained at a time, each in its own process (:mod:`~segan_lib.experiments.parallel`)
            with the preset's threads (or the cores shared out); CPU only. The results are the same
            as with 1. A script that passes ``jobs > 1`` keeps its work under
            ``if __name__ == "__main__":`` (each worker imports it).

    Returns:
        The ``results.json`` dict (:mod:`segan_lib.experiments.results`), verdicts included.
    """
    if not isinstance(experiment, Experiment):  # names are looked up by the registry, which imports this module
        raise ValueError(f"experiment must be an Experiment (segan_lib.experiments.run_experiment also takes a "
                         f"registered name), got {type(experiment).__name__}")
    preset_name = preset if isinstance(preset, str) else "custom"
    preset = experiment.preset(preset) if isinstance(preset, str) else preset
    if not isinstance(preset, Preset):
        raise ValueError(f"preset must be a preset name or a Preset, got {type(preset).__name__}")
    seeds = _resolve_seeds(seeds, preset, experiment.held_out_seed)
    torch_device = resolve_device(device)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if jobs > 1 and torch_device.type != "cpu":
        raise ValueError(f"jobs > 1 trains runs side by side on CPU cores; on {torch_device.type} run them one at a "
                         f"time (jobs=1), got jobs={jobs}")
    out = None if out is None else check_writable_dir(out, "out")  # before any run, not after the first
    if command is None:
        command = experiment_command(experiment.name, preset_name, seeds, out, device)
    threads = torch.get_num_threads()
    if preset.threads is not None:
        torch.set_num_threads(preset.threads)
    try:
        results = _run_all(experiment, preset, preset_name, seeds, out, torch_device, progress, command, jobs)
    finally:
        torch.set_num_threads(threads)
    return results


def _run_all(experiment: Experiment, preset: Preset, preset_name: str, seeds: list[int], out: Path | None,
             device: torch.device, progress: bool, command: str, jobs: int = 1) -> dict:
    from tqdm.auto import tqdm

    held_out = {name: regime_data(regime, n=preset.n_eval, size=preset.size, num_classes=preset.num_classes,
                                  seed=experiment.held_out_seed, device=device)
                for name, regime in experiment.regimes.items() if any(a.regime == name for a in experiment.arms)}
    class_names = list(next(iter(held_out.values())).CLASS_NAMES)
    records: dict[str, dict[int, dict]] = {arm.name: {} for arm in experiment.arms}
    labels: dict[str, dict[int, np.ndarray]] = {arm.name: {} for arm in experiment.arms}
    env = environment(device)
    if progress:
        announce_compute(describe_compute(device, resolve_amp(preset.amp, device),
                                          use_channels_last(None, device, preset.amp), use_compile(preset.compile, device)))
    bar = tqdm(total=len(seeds) * len(experiment.arms), desc=experiment.name, unit="run", disable=not progress,
               dynamic_ncols=True)
    try:
        for arm, seed, (record, arm_labels) in _finished_runs(experiment, preset, seeds, device, held_out, out, jobs,
                                                              bar):
            records[arm.name][seed], labels[arm.name][seed] = record, arm_labels
            bar.update(1)
            unfinished = sum(map(len, records.values())) < len(seeds) * len(experiment.arms)
            if out is not None and unfinished:  # what is done so far, readable while the rest runs
                write_json(out / "results.json", assemble_results(
                    experiment, preset_name, preset, seeds, command, env, class_names, records, complete=False))
    finally:
        bar.close()
    results = assemble_results(experiment, preset_name, preset, seeds, command, env, class_names, records,
                               complete=True)
    if out is not None:
        from segan_lib.experiments.figures import write_figures  # matplotlib only when figures are written

        results["figures"] = write_figures(out, experiment, preset, results, records, labels, held_out)
        write_json(out / "results.json", results)
    return results


def _finished_runs(experiment: Experiment, preset: Preset, seeds: list[int], device: torch.device, held_out: dict,
                   out: Path | None, jobs: int, bar: object) -> Iterator[tuple[Arm, int, tuple[dict, np.ndarray]]]:
    """``(arm, seed, (record, labels))`` of every arm and seed, seed by seed: one at a time in this
    process, or (``jobs > 1``) the finished ones read here and the rest trained ``jobs`` at a time
    in other processes, yielded as they finish."""
    tasks = [(seed, arm) for seed in seeds for arm in experiment.arms]
    if jobs == 1:
        for seed, arm in tasks:
            bar.set_postfix_str(f"{arm.name} seed {seed}")
            yield arm, seed, _run_or_load(experiment, preset, arm, seed, device, held_out[arm.regime], out)
        return
    to_train = []
    for seed, arm in tasks:
        if out is not None and load_finished(out / "runs" / arm.name / f"seed{seed}.json",
                                             fingerprint(experiment, preset, arm)) is not None:
            yield arm, seed, _run_or_load(experiment, preset, arm, seed, device, held_out[arm.regime], out)
        else:
            to_train.append((experiment, preset, arm, seed, out))
    bar.set_postfix_str(f"{len(to_train)} runs to train, {jobs} at a time")
    threads = preset.threads or max(1, (os.cpu_count() or 1) // jobs)
    for (_, _, arm, seed, _), result in in_processes(_train_in_process, to_train, jobs, threads):
        yield arm, seed, result


_HELD_OUT: dict[tuple, object] = {}  # a worker process's held-out data, built once per regime and preset


def _train_in_process(experiment: Experiment, preset: Preset, arm: Arm, seed: int,
                      out: Path | None) -> tuple[dict, np.ndarray]:
    """:func:`_run_or_load` of one run on the CPU, in a worker process of :func:`_finished_runs`."""
    key = (experiment.name, arm.regime, preset.n_eval, preset.size, preset.num_classes)
    if key not in _HELD_OUT:
        _HELD_OUT[key] = regime_data(experiment.regimes[arm.regime], n=preset.n_eval, size=preset.size,
                                     num_classes=preset.num_classes, seed=experiment.held_out_seed,
                                     device=torch.device("cpu"))
    return _run_or_load(experiment, preset, arm, seed, torch.device("cpu"), _HELD_OUT[key], out)


def _run_or_load(experiment: Experiment, preset: Preset, arm: Arm, seed: int, device: torch.device,
                 held_out: object, out: Path | None) -> tuple[dict, np.ndarray]:
    """The record and predicted labels of ``(arm, seed)``: read from ``out`` if finished there, else trained
    (and stored: the labels first, then the JSON that marks the run as finished)."""
    expected = fingerprint(experiment, preset, arm)
    path = None if out is None else out / "runs" / arm.name / f"seed{seed}.json"
    record = None if path is None else load_finished(path, expected)
    if record is not None:
        with np.load(path.with_suffix(".npz")) as stored:
            return record, stored["labels"]
    record, labels = execute_run(prepare_run(experiment, preset, arm, seed, device, held_out), preset.n_show)
    record["fingerprint"] = expected
    if path is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, labels=labels)
        write_atomic(path.with_suffix(".npz"), buffer.getvalue())
        write_json(path, record)
    return record, labels


def assemble_results(experiment: Experiment, preset_name: str, preset: Preset, seeds: list[int], command: str,
                     env: dict, class_names: list[str], records: dict[str, dict[int, dict]], *,
                     complete: bool) -> dict:
    """The ``results.json`` dict of the runs in ``records`` (arm -> seed -> run record), verdicts computed."""
    keep = ("scores", "train_seconds", "images_per_second", "steps", "images_seen", "device", "compute", "validity",
            "curve")
    results = {
        "schema": SCHEMA_VERSION, "experiment": experiment.name, "description": experiment.description,
        "preset": preset_name, "settings": preset.to_dict(), "seeds": seeds,
        "held_out_seed": experiment.held_out_seed, "command": command, "environment": env,
        "class_names": class_names,
        "regimes": {name: regime.to_dict() for name, regime in experiment.regimes.items()},
        "arms": {arm.name: {k: v for k, v in arm.to_dict().items() if k != "name"} for arm in experiment.arms},
        "pairs": [list(pair) for pair in experiment.pairs], "primary_metrics": list(experiment.primary_metrics),
        "runs": {arm: {str(seed): {k: record[k] for k in keep if k in record}
                       for seed, record in sorted(per_seed.items())}
                 for arm, per_seed in records.items() if per_seed},
        "complete": complete, "verdicts": [], "figures": [],
    }
    results["verdicts"] = [v.to_dict() for v in verdicts(results)]
    for key, summary in (("plateau", plateau_summary(results)), ("label_curve", label_curve_summary(results))):
        if summary is not None:
            results[key] = summary
    return results
