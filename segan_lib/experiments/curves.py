"""Held-out curves during training, the plateau check of the baselines, and the label-fraction curve.

A comparison with a baseline that has not finished learning says little: any arm that merely
learns faster looks better, and the verdict changes with the length of the run. So a
``reference`` preset sets ``curve_every``: every that many steps, each run scores its segmentor
on the first :data:`CURVE_IMAGES` held-out images (mean foreground Dice), and the record keeps
the curve. :func:`plateau_summary` reads the baselines' curves (the arms that other arms are
compared with), averaged over seeds, and says whether each reached its plateau: its mean
held-out Dice moved by less than :data:`PLATEAU_TOLERANCE` over the last quarter of training
(from the curve point nearest 3/4 of the steps to the last). Every arm trains for the same steps.

A semi-supervised comparison means something only where labels are scarce: if the baseline
trained on a fraction of the labels is as good as one trained on all of them, unlabelled images
have nothing to add. :func:`label_curve_summary` reads the reference arms (those compared with
nothing: labelled-only training at each fraction, and all labels) and gives, per fraction, the
mean held-out Dice with its 95 % t interval over seeds, and each step to the next fraction as a
paired difference (same seeds, so the same initial weights) with its interval.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping

from segan_lib.experiments.statistics import paired_t_interval

CURVE_IMAGES = 64  # held-out images scored at each curve point (the first ones of the held-out set)
PLATEAU_TOLERANCE = 0.01  # mean Dice may move less than this over the last quarter of training


def curve_callback(held_out: object, every: int) -> tuple[Callable, dict[str, list]]:
    """An engine callback that appends ``(step, mean Dice on held_out)`` every ``every`` steps,
    and the dict ``{"step": [...], "dice": [...]}`` it fills (the engine calls callbacks at each
    logging interval, so ``every`` must be a multiple of ``log_every``)."""
    curve: dict[str, list] = {"step": [], "dice": []}

    def record(trainer: object, step: int, logs: Mapping[str, float]) -> None:
        if step % every or (curve["step"] and curve["step"][-1] == step):
            return
        curve["step"].append(step)
        curve["dice"].append(float(trainer.evaluate(held_out)["mean_dice"]))

    return record, curve


def mean_curve(curves: list[Mapping[str, list]]) -> tuple[list[int], list[float]]:
    """Steps common to every curve and the mean Dice over the curves at each."""
    steps = sorted(set.intersection(*(set(c["step"]) for c in curves))) if curves else []
    means = [statistics.fmean(c["dice"][c["step"].index(s)] for c in curves) for s in steps]
    return steps, means


def plateau_summary(results: Mapping[str, object]) -> dict[str, dict] | None:
    """For every reference arm (one that no pair has as its contestant) with curves: ``{"steps", "mean_dice", "from_step", "to_step", "change",
    "plateaued"}``, the seed-mean curve and its change over the last quarter; None if no run has a curve."""
    contestants = {arm for arm, _ in results.get("pairs", [])}
    baselines = [arm for arm in results["runs"] if arm not in contestants]  # compared with nothing
    summary = {}
    for arm in baselines:
        curves = [run["curve"] for run in results["runs"].get(arm, {}).values() if run.get("curve")]
        steps, means = mean_curve(curves)
        if len(steps) < 2:
            continue
        three_quarters = 0.75 * steps[-1]
        start = min(range(len(steps)), key=lambda i: abs(steps[i] - three_quarters))
        change = means[-1] - means[start]
        summary[arm] = {"steps": steps, "mean_dice": means, "seeds": len(curves), "from_step": steps[start],
                        "to_step": steps[-1], "change": change, "plateaued": abs(change) < PLATEAU_TOLERANCE}
    return summary or None


def mean_interval(values: list[float]) -> list[float | None]:
    """The 95 % t interval of the mean of ``values`` as ``[low, high]`` (``[None, None]`` below two values)."""
    if len(values) < 2:
        return [None, None]
    result = paired_t_interval(values, 0.95)
    return [result.low, result.high]


def label_curve_summary(results: Mapping[str, object], metric: str = "dice") -> dict | None:
    """The labelled-only curve: ``{"fractions": [...], "arms": [...], "mean": [...], "interval": [...],
    "steps": [{"from", "to", "mean", "interval", "clear"}], "rise", "rise_interval"}``, or None when the
    results have no arm with a labelled fraction. The reference arms are the supervised arms compared
    with nothing; an arm without a fraction is full labels (1). ``clear``: the step's paired 95 % interval
    excludes zero. ``rise``: from the smallest fraction to the largest, paired."""
    arms = results.get("arms", {})
    contestants = {arm for arm, _ in results.get("pairs", [])}
    reference = [name for name, arm in arms.items() if name not in contestants and arm.get("method") == "supervised"
                 and name in results.get("runs", {})]
    if not any(arms[name].get("labelled_fraction") is not None for name in reference):
        return None
    reference.sort(key=lambda name: arms[name].get("labelled_fraction") or 1.0)
    runs = results["runs"]

    def scores(name: str) -> dict[str, float]:
        return {seed: run["scores"]["mean"][metric] for seed, run in runs[name].items()}

    def paired(low: str, high: str) -> list[float]:
        a, b = scores(low), scores(high)
        return [b[s] - a[s] for s in a if s in b]

    curve = {"metric": metric, "arms": reference,
             "fractions": [arms[name].get("labelled_fraction") or 1.0 for name in reference],
             "mean": [statistics.fmean(scores(name).values()) for name in reference],
             "interval": [mean_interval(list(scores(name).values())) for name in reference], "steps": []}
    for low, high in zip(reference, reference[1:]):
        differences = paired(low, high)
        interval = mean_interval(differences)
        curve["steps"].append({"from": low, "to": high, "mean": statistics.fmean(differences) if differences else None,
                               "interval": interval,
                               "clear": interval[0] is not None and (interval[0] > 0 or interval[1] < 0)})
    rise = paired(reference[0], reference[-1])
    curve["rise"] = statistics.fmean(rise) if rise else None
    curve["rise_interval"] = mean_interval(rise)
    return curve
