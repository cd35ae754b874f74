"""``results.json``: what an experiment run records, and the checks a reader can rely on.

Layout (every number a float, NaN written as ``null``)::

    {"schema": 2, "experiment": "adversarial", "description": "...", "preset": "quick",
     "settings": {<Preset fields>}, "seeds": [0, 1], "held_out_seed": 999,
     "command": "segan experiment adversarial --preset quick --seeds 2 --out runs/x",
     "environment": {"date", "torch", "python", "platform", "cpu_count", "torch_threads",
                     "device", "device_name"},
     "class_names": ["background", "disc", ...],
     "regimes": {name: {"description", "noise_std", "occluders"}},
     "arms": {name: {"method", "loss", "loss_options", "options", "regime", "baseline"}},
     "pairs": [[arm, baseline], ...], "primary_metrics": ["dice", "boundary_f1"],
     "runs": {arm: {"<seed>": {"scores": {"per_class": {metric: {class: value}},
                                         "mean": {metric: value}, "overall": {name: value}},
                              "train_seconds", "images_per_second", "steps", "images_seen",
                              "device"}}},
     "complete": true, "verdicts": [<Verdict.to_dict()>], "figures": ["paired_differences.png", ...]}

``scores`` is generic over what the evaluation returns: every per-class entry ``(K,)``
(Dice, IoU, and boundary F1, HD95, topology error where the metrics provide them) goes to
``per_class``, its mean over the foreground classes to ``mean`` (``mean_<metric>`` when the
evaluation gives it, else the NaN-ignoring mean of classes ``1..K-1``), any other number
(pixel accuracy) to ``overall``. ``train_seconds`` is the wall time of ``Trainer.fit`` (on a
GPU, the first run of each method in a process includes compiling it); ``images_per_second``
is ``images_seen / train_seconds``.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from segan_lib._files import write_atomic  # re-exported: runner and figures write through it

SCHEMA_VERSION = 2  # 2: primary_metrics, and verdicts with paired t intervals, Holm and permutation p-values
REQUIRED_KEYS = ("schema", "experiment", "description", "preset", "settings", "seeds", "held_out_seed", "command",
                 "environment", "class_names", "regimes", "arms", "pairs", "primary_metrics", "runs", "complete",
                 "verdicts", "figures")
ENVIRONMENT_KEYS = ("date", "torch", "python", "platform", "cpu_count", "torch_threads", "device", "device_name")
RUN_KEYS = ("scores", "train_seconds", "images_per_second", "steps", "images_seen", "device")


def json_number(value: object) -> float | None:
    """``float(value)``, or None for NaN (JSON has no NaN)."""
    number = float(value)
    return None if math.isnan(number) else number


def as_float(value: float | None) -> float:
    """The inverse of :func:`json_number`: None -> NaN."""
    return math.nan if value is None else float(value)


def scores_from_metrics(metrics: Mapping[str, object], class_names: Sequence[str]) -> dict[str, dict]:
    """``{"per_class", "mean", "overall"}`` of an evaluation dict (see the module docstring).

    ``metrics``: what ``Trainer.evaluate`` returns: ``(K,)`` tensors (or lists) per class,
    floats otherwise. ``class_names``: the K names, background first.
    """
    num_classes = len(class_names)
    per_class, mean, overall = {}, {}, {}
    for key, value in metrics.items():
        values = value.tolist() if isinstance(value, torch.Tensor) else value
        if isinstance(values, (list, tuple)):
            if len(values) != num_classes:
                raise ValueError(f"metrics[{key!r}] must hold one value per class ({num_classes}), got {len(values)}")
            per_class[key] = {name: json_number(v) for name, v in zip(class_names, values)}
        elif not key.startswith("mean_"):
            overall[key] = json_number(values)
    for key in per_class:
        given = metrics.get(f"mean_{key}")
        if given is not None:
            mean[key] = json_number(given.item() if isinstance(given, torch.Tensor) else given)
        else:  # foreground classes 1..K-1, NaN (None) left out
            present = [v for v in list(per_class[key].values())[1:] if v is not None]
            mean[key] = sum(present) / len(present) if present else None
    return {"per_class": per_class, "mean": mean, "overall": overall}


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def environment(device: torch.device) -> dict[str, object]:
    """Where and when the numbers were made: date (UTC), versions, machine, device."""
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": device_name,
    }


def write_json(path: str | Path, data: object) -> None:
    """``data`` as indented JSON at ``path``, atomically (:func:`write_atomic`); NaN is refused."""
    write_atomic(path, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8"))


def read_json(path: str | Path) -> dict:
    """The JSON object stored at ``path``."""
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"results: {message}")


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_results(results: Mapping[str, object]) -> None:
    """Raise ``ValueError`` naming the first way ``results`` breaks the layout of the module docstring.

    Checks the keys, the environment, that every arm of ``arms`` has a run for every seed
    (when ``complete``), and that each run's scores hold Dice and IoU for every class.
    """
    _require(isinstance(results, Mapping), f"must be a JSON object, got {type(results).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in results]
    _require(not missing, f"missing keys {missing}")
    _require(results["schema"] == SCHEMA_VERSION, f"schema must be {SCHEMA_VERSION}, got {results['schema']!r}")
    missing = [key for key in ENVIRONMENT_KEYS if key not in results["environment"]]
    _require(not missing, f"environment lacks {missing}")
    _require(isinstance(results["command"], str) and results["command"].startswith("segan experiment "),
             f"command must be a 'segan experiment ...' line, got {results['command']!r}")
    classes, arms, seeds = results["class_names"], results["arms"], results["seeds"]
    _require(isinstance(seeds, list) and all(isinstance(s, int) for s in seeds), f"seeds must be ints, got {seeds!r}")
    for arm, baseline in results["pairs"]:
        _require(arm in arms and baseline in arms, f"pair ({arm!r}, {baseline!r}) names an unknown arm")
    for arm, runs in results["runs"].items():
        _require(arm in arms, f"runs of unknown arm {arm!r}")
        for seed, run in runs.items():
            where = f"runs[{arm!r}][{seed!r}]"
            missing = [key for key in RUN_KEYS if key not in run]
            _require(not missing, f"{where} lacks {missing}")
            scores = run["scores"]
            for metric in ("dice", "iou"):
                _require(list(scores["per_class"].get(metric, {})) == list(classes),
                         f"{where} must score {metric} for the classes {classes}")
                _require(metric in scores["mean"], f"{where} lacks the mean {metric}")
            values = [v for per in scores["per_class"].values() for v in per.values()]
            values += list(scores["mean"].values()) + list(scores["overall"].values())
            _require(all(_is_number(v) for v in values), f"{where} holds a score that is not a number")
    if results["complete"]:
        for arm in arms:
            done = sorted(int(s) for s in results["runs"].get(arm, {}))
            _require(done == sorted(seeds), f"complete results lack runs of arm {arm!r}: has seeds {done}, "
                                            f"expected {sorted(seeds)}")


def mean_score(results: Mapping[str, object], arm: str, seed: int, metric: str) -> float:
    """``results["runs"][arm][seed]["scores"]["mean"][metric]`` as a float (NaN if undefined or absent)."""
    run = results["runs"].get(arm, {}).get(str(seed))
    if run is None:
        return math.nan
    return as_float(run["scores"]["mean"].get(metric))
