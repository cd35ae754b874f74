"""Computed verdicts: does an arm beat its matched baseline, seed by paired seed?

For a pair (arm, baseline) and a metric, the *paired difference* of seed ``s`` is

    d_s = metric(arm, s) - metric(baseline, s)

(both trained from the same initial weights on the same batches in the same order). Higher
is better for Dice, IoU and boundary F1; lower for HD95 and topology error
(:func:`higher_is_better`). The rule, applied the same way in both directions:

* the arm **beats** its baseline if ``d_s`` favours the arm on *every* seed (strictly);
* the baseline beats the arm if ``d_s`` favours the baseline on every seed;
* otherwise, or with fewer than ``min_seeds`` paired seeds, or a NaN anywhere:
  **no clear difference**.

The mean of the ``d_s`` and their spread (min .. max) are printed beside every verdict, so
a reader sees how large a difference the rule accepted or refused. Nothing here is typed
by hand: the words come from the numbers.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segan_lib.experiments.results import as_float

LOWER_IS_BETTER: tuple[str, ...] = ("hd95", "topology_error")
BETTER, WORSE, NO_CLEAR_DIFFERENCE = "better", "worse", "no clear difference"
FIRST_METRICS = ("dice", "iou")  # table order: these first, then the rest as the runs list them


def higher_is_better(metric: str) -> bool:
    """False for distances and error counts (``hd95``, ``topology_error``, any ``*_error`` or
    ``hd*`` / ``*hausdorff*`` name), True for overlap scores (Dice, IoU, boundary F1)."""
    name = metric.lower()
    lower = name in LOWER_IS_BETTER or name.endswith("error") or name.startswith("hd") or "hausdorff" in name
    return not lower


@dataclass(frozen=True)
class Verdict:
    """The verdict on ``arm`` vs ``baseline`` for one ``metric`` (the foreground mean).

    ``seeds`` and ``differences``: the paired seeds and ``arm - baseline`` on each.
    ``outcome``: ``"better"`` (the arm beats its baseline), ``"worse"`` (the baseline beats
    the arm) or ``"no clear difference"``.
    """

    arm: str
    baseline: str
    metric: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    outcome: str

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def mean(self) -> float:
        """Mean paired difference (NaN if any is NaN or there is none)."""
        return statistics.fmean(self.differences) if self.differences else math.nan

    @property
    def low(self) -> float:
        return min(self.differences, default=math.nan)

    @property
    def high(self) -> float:
        return max(self.differences, default=math.nan)

    @property
    def sentence(self) -> str:
        """The verdict in words, e.g. ``"ce+hybrid beats ce"``."""
        if self.outcome == BETTER:
            return f"{self.arm} beats {self.baseline}"
        if self.outcome == WORSE:
            return f"{self.baseline} beats {self.arm}"
        return NO_CLEAR_DIFFERENCE

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``results.json`` (NaN as None)."""
        def number(x: float) -> float | None:
            return None if math.isnan(x) else x
        return {"arm": self.arm, "baseline": self.baseline, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "seeds": list(self.seeds),
                "differences": [number(d) for d in self.differences], "mean": number(self.mean),
                "min": number(self.low), "max": number(self.high), "outcome": self.outcome,
                "verdict": self.sentence}


def judge(differences: Sequence[float], metric: str, *, min_seeds: int = 2) -> str:
    """The outcome of the rule in the module docstring for paired ``differences`` (arm - baseline)."""
    if len(differences) < min_seeds or any(math.isnan(d) for d in differences):
        return NO_CLEAR_DIFFERENCE
    sign = 1.0 if higher_is_better(metric) else -1.0
    if all(sign * d > 0 for d in differences):
        return BETTER
    if all(sign * d < 0 for d in differences):
        return WORSE
    return NO_CLEAR_DIFFERENCE


def verdict_metrics(results: Mapping[str, object]) -> list[str]:
    """The mean metrics every run of ``results`` holds: Dice and IoU first, then the others in order."""
    found: list[str] = []
    runs = [run for per_arm in results["runs"].values() for run in per_arm.values()]
    for run in runs:
        found += [m for m in run["scores"]["mean"] if m not in found]
    common = [m for m in found if all(m in run["scores"]["mean"] for run in runs)]
    return [m for m in FIRST_METRICS if m in common] + [m for m in common if m not in FIRST_METRICS]


def verdicts(results: Mapping[str, object], metrics: Sequence[str] | None = None, *,
             min_seeds: int = 2) -> list[Verdict]:
    """One :class:`Verdict` per matched pair of ``results`` and per metric.

    ``results``: the ``results.json`` layout (``pairs``, ``seeds``, ``runs``; see
    :mod:`segan_lib.experiments.results`). ``metrics``: names of ``scores["mean"]``
    (default: :func:`verdict_metrics`). A seed counts when both arms have a run for it.
    """
    if not isinstance(min_seeds, int) or min_seeds < 1:
        raise ValueError(f"min_seeds must be an int >= 1, got {min_seeds!r}")
    metrics = verdict_metrics(results) if metrics is None else list(metrics)
    out = []
    for arm, baseline in results["pairs"]:
        runs, base_runs = results["runs"].get(arm, {}), results["runs"].get(baseline, {})
        seeds = tuple(s for s in results["seeds"] if str(s) in runs and str(s) in base_runs)
        for metric in metrics:
            differences = tuple(as_float(runs[str(s)]["scores"]["mean"].get(metric))
                                - as_float(base_runs[str(s)]["scores"]["mean"].get(metric)) for s in seeds)
            out.append(Verdict(arm, baseline, metric, seeds, differences,
                               judge(differences, metric, min_seeds=min_seeds)))
    return out


def format_verdicts(rows: Sequence[Verdict]) -> str:
    """An aligned text table: arm, baseline, metric (with its better direction), the mean paired
    difference, its min .. max over seeds, each seed's difference, and the verdict."""
    if not rows:
        return "no matched pairs to judge"
    headers = ["arm", "baseline", "metric", "mean diff", "min .. max", "per seed (arm - baseline)", "verdict"]

    def signed(x: float) -> str:
        return "nan" if math.isnan(x) else f"{x:+.3f}"

    lines = [[v.arm, v.baseline, f"{v.metric} ({'higher' if v.higher_is_better else 'lower'} better)",
              signed(v.mean), f"{signed(v.low)} .. {signed(v.high)}",
              " ".join(signed(d) for d in v.differences) or "-", v.sentence] for v in rows]
    widths = [max(len(line[j]) for line in [headers] + lines) for j in range(len(headers))]

    def render(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return "\n".join([render(headers), render(["-" * w for w in widths])] + [render(line) for line in lines])
