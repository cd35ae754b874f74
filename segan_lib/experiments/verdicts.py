"""Computed verdicts: is an arm better or worse than its matched baseline, beyond seed noise?

For a pair (arm, baseline) and a metric, the *paired difference* of seed ``s`` is

    d_s = metric(arm, s) - metric(baseline, s)

over the seeds both arms ran (both trained from the same initial weights on the same batches
in the same order). Higher is better for Dice, IoU and boundary F1; lower for HD95 and the
``*_error`` counts (:func:`higher_is_better`). The verdict reads the paired t interval of the
mean of the d_s (:mod:`segan_lib.experiments.statistics`): **better** when the interval lies
wholly on the arm's good side of zero, **worse** when wholly on the other side, otherwise
**no evidence of a difference** (which is not "no difference": the seeds cannot tell).

Metrics are split before the run into a **primary** family (``results["primary_metrics"]``,
default :data:`PRIMARY_METRICS`: Dice, and boundary F1 for a claim about shape; only those the
runs hold) and **secondary** metrics:

* Primary, m metrics: Holm's step-down over the family at ``alpha`` (0.05), read as intervals.
  Order the primaries by their paired t p-value; the metric of rank j (1-based) is tested at
  level alpha / (m - j + 1), i.e. with the interval at confidence 1 - alpha / (m - j + 1),
  until the first rank k whose interval holds zero; that metric and every later one are shown
  at the stopping level alpha / (m - k + 1). This *is* Holm's procedure (an interval at
  confidence 1 - a excludes zero exactly when p < a), so the interval shown and the verdict
  never disagree, and the chance that any primary verdict of a pair is wrong when nothing
  differs stays <= alpha. ``p_holm`` is the Holm-adjusted t p-value
  (:func:`~segan_lib.experiments.statistics.holm_adjust`).
* Secondary: the plain 95 % interval (1 - alpha), uncorrected; the sentence says so.

Beside each t result: the exact sign-flip permutation p-value (and, for primaries, its Holm
adjustment over the family) as a check that does not assume normal differences. With n = 5
seeds its smallest two-sided value is 2 / 2^5 = 0.0625, never below 0.05, so the verdict is
read from the t interval and the permutation p is shown beside it.

No evidence, whatever the numbers: fewer than ``min_seeds`` paired seeds (at least 2: an
interval needs a spread), or a NaN difference on any seed (interval and p-values are then
null). Zero spread: all d_s = 0 gives the point interval [0, 0], no evidence; all d_s equal
to some c != 0 gives [c, c], which excludes zero (every seed moved by exactly c; the
permutation p beside it says how many seeds back that).

Validity: an adversarial arm's run records carry ``"validity"`` (the discriminator's health
and a shortcut probe, judged where the runs are made). A verdict summarises its arm's runs
over the paired seeds as ``{"runs": n, "unhealthy": k, "health_unknown": u, "shortcut": j}``; when more than half
the runs took a shortcut or had an overpowered discriminator, the sentence says so.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from segan_lib.experiments.results import as_float
from segan_lib.experiments.statistics import holm_adjust, paired_t_interval, sign_flip_p_value

LOWER_IS_BETTER: tuple[str, ...] = ("hd95", "topology_error")
BETTER, WORSE, NO_EVIDENCE = "better", "worse", "no evidence of a difference"
PRIMARY, SECONDARY = "primary", "secondary"
PRIMARY_METRICS: tuple[str, ...] = ("dice", "boundary_f1")  # the pre-registered family unless results say
ALPHA = 0.05
FIRST_METRICS = ("dice", "iou")  # table order: these first, then the rest as the runs list them
SHORTCUT_NOTE = ("the discriminator preferred hard predictions to soft truth, so the adversarial term tested "
                 "softness, not shape")


def higher_is_better(metric: str) -> bool:
    """False for distances and error counts (``hd95``, ``topology_error``, any ``*_error`` or
    ``hd*`` / ``*hausdorff*`` name), True for overlap scores (Dice, IoU, boundary F1)."""
    name = metric.lower()
    lower = name in LOWER_IS_BETTER or name.endswith("error") or name.startswith("hd") or "hausdorff" in name
    return not lower


def _number(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


@dataclass(frozen=True)
class Verdict:
    """The verdict on ``arm`` vs ``baseline`` for one ``metric`` (the foreground mean).

    ``family``: ``"primary"`` or ``"secondary"``. ``seeds`` and ``differences``: the paired
    seeds and ``arm - baseline`` on each. ``interval``: the paired t interval ``(low, high)``
    of the mean difference at ``confidence`` (NaN when no verdict can be reached).
    ``t_p_value`` and ``permutation_p``: two-sided, uncorrected; ``p_holm`` and
    ``permutation_p_holm``: their Holm adjustments over the primary family (NaN for
    secondaries). ``outcome``: ``"better"``, ``"worse"`` or ``"no evidence of a difference"``.
    ``validity``: ``{"runs", "unhealthy", "health_unknown", "shortcut"}`` counts of the arm's runs, or None.
    """

    arm: str
    baseline: str
    metric: str
    family: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    outcome: str
    interval: tuple[float, float] = (math.nan, math.nan)
    confidence: float = 1 - ALPHA
    t_p_value: float = math.nan
    p_holm: float = math.nan
    permutation_p: float = math.nan
    permutation_p_holm: float = math.nan
    validity: Mapping[str, int] | None = field(default=None, hash=False)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        """Mean paired difference (NaN if any is NaN or there is none)."""
        return math.fsum(self.differences) / self.n if self.differences else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation of the differences (n - 1 in the denominator; NaN for n < 2)."""
        if self.n < 2:
            return math.nan
        return math.sqrt(math.fsum((d - self.mean) ** 2 for d in self.differences) / (self.n - 1))

    @property
    def low(self) -> float:
        """The smallest paired difference (the spread over seeds, not the interval)."""
        return min(self.differences, default=math.nan)

    @property
    def high(self) -> float:
        """The largest paired difference (the spread over seeds, not the interval)."""
        return max(self.differences, default=math.nan)

    @property
    def shortcut(self) -> bool:
        """More than half of the arm's runs took the shortcut (judged hard vs soft, not shape)."""
        return bool(self.validity) and self.validity["shortcut"] > self.validity["runs"] / 2

    @property
    def overpowered(self) -> bool:
        """More than half of the arm's runs had an unhealthy (overpowered) discriminator."""
        return bool(self.validity) and self.validity["unhealthy"] > self.validity["runs"] / 2

    @property
    def sentence(self) -> str:
        """The verdict in words, e.g. ``"clean/ce+hybrid better than clean/ce"``."""
        if self.outcome in (BETTER, WORSE):
            text = f"{self.arm} {self.outcome} than {self.baseline}"
        else:
            text = NO_EVIDENCE
        if self.family == SECONDARY:
            text += " (secondary, uncorrected)"
        if self.shortcut:
            v = self.validity
            text += f" -- shortcut run(s) ({v['shortcut']} of {v['runs']}): {SHORTCUT_NOTE}"
        if self.overpowered:
            text += f" -- discriminator overpowered in {self.validity['unhealthy']} of {self.validity['runs']} runs"
        return text

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``results.json`` (NaN as None); the keys the website and notebooks read."""
        return {"arm": self.arm, "baseline": self.baseline, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "family": self.family, "seeds": list(self.seeds),
                "differences": [_number(d) for d in self.differences], "n": self.n, "mean": _number(self.mean),
                "sd": _number(self.sd), "min": _number(self.low), "max": _number(self.high),
                "interval": [_number(x) for x in self.interval], "confidence": self.confidence,
                "t_p_value": _number(self.t_p_value), "p_holm": _number(self.p_holm),
                "permutation_p": _number(self.permutation_p), "permutation_p_holm": _number(self.permutation_p_holm),
                "outcome": self.outcome, "verdict": self.sentence,
                "validity": None if self.validity is None else dict(self.validity)}


def verdict_metrics(results: Mapping[str, object]) -> list[str]:
    """The mean metrics every run of ``results`` holds: Dice and IoU first, then the others in order."""
    found: list[str] = []
    runs = [run for per_arm in results["runs"].values() for run in per_arm.values()]
    for run in runs:
        found += [m for m in run["scores"]["mean"] if m not in found]
    common = [m for m in found if all(m in run["scores"]["mean"] for run in runs)]
    return [m for m in FIRST_METRICS if m in common] + [m for m in common if m not in FIRST_METRICS]


def primary_family(results: Mapping[str, object], metrics: Sequence[str] = ()) -> list[str]:
    """The pre-registered primary metrics of ``results`` (``results["primary_metrics"]``, default
    :data:`PRIMARY_METRICS`) that its runs hold (or that ``metrics`` asks for), in their order."""
    primary = results.get("primary_metrics", PRIMARY_METRICS)
    if isinstance(primary, str) or not isinstance(primary, (list, tuple)) or not primary \
            or not all(isinstance(m, str) for m in primary):
        raise ValueError(f"results['primary_metrics'] must be a non-empty list of metric names, got {primary!r}")
    present = set(verdict_metrics(results)) | set(metrics)
    return [m for m in primary if m in present]


def summarise_validity(runs: Sequence[Mapping[str, object]]) -> dict[str, int] | None:
    """``{"runs": n, "unhealthy": k, "health_unknown": u, "shortcut": j}`` over the run records that carry
    ``"validity"`` (k: health says not healthy; u: no health reading, e.g. SegAN's critic, which has no
    accuracy; j: the probe found a shortcut), or None when none does."""
    checks = [run["validity"] for run in runs if run.get("validity") is not None]
    if not checks:
        return None
    unhealthy = sum(1 for c in checks if (c.get("health") or {}).get("healthy") is False)
    unknown = sum(1 for c in checks if (c.get("health") or {}).get("healthy") is None)
    shortcut = sum(1 for c in checks if c.get("probe") is not None and c["probe"]["shortcut"])
    return {"runs": len(checks), "unhealthy": unhealthy, "health_unknown": unknown, "shortcut": shortcut}


def _decide(differences: tuple[float, ...], metric: str, confidence: float) -> tuple[str, tuple[float, float]]:
    """Outcome and interval of the differences at ``confidence`` (the outcome read from the interval)."""
    result = paired_t_interval(differences, confidence)
    if not result.excludes_zero:
        return NO_EVIDENCE, (result.low, result.high)
    arm_side = (result.low > 0) == higher_is_better(metric)
    return (BETTER if arm_side else WORSE), (result.low, result.high)


def _judge_pair(arm: str, baseline: str, seeds: tuple[int, ...], columns: dict[str, tuple[float, ...]],
                family: list[str], validity: dict[str, int] | None, min_seeds: int, alpha: float) -> list[Verdict]:
    """The verdicts of one pair: Holm over the ``family`` metrics as intervals, the others at 1 - alpha."""
    usable = {m: len(d) >= min_seeds and not any(math.isnan(x) for x in d) for m, d in columns.items()}
    t_p = {m: paired_t_interval(d).p_value if usable[m] else math.nan for m, d in columns.items()}
    perm_p = {m: sign_flip_p_value(d) if usable[m] else math.nan for m, d in columns.items()}
    members = [m for m in family if m in columns]
    # Holm over the whole pre-registered family; a metric without a usable p counts as p = 1 (never rejected)
    holm = dict(zip(members, holm_adjust([1.0 if math.isnan(t_p[m]) else t_p[m] for m in members]))) if members else {}
    perm_holm = dict(zip(members, holm_adjust([1.0 if math.isnan(perm_p[m]) else perm_p[m] for m in members]))) \
        if members else {}
    # Holm read as intervals: from the smallest t p-value up, rank j (0-based) is tested at alpha / (m - j)
    # while every earlier rank was rejected; the first one that is not, and all after it, keep its level
    level = {m: alpha for m in columns}
    order = sorted(members, key=lambda m: 2.0 if math.isnan(t_p[m]) else t_p[m])
    for rank, m in enumerate(order):
        level[m] = alpha / (len(order) - rank)
        if not usable[m] or _decide(columns[m], m, 1 - level[m])[0] == NO_EVIDENCE:
            level.update({rest: level[m] for rest in order[rank + 1:]})
            break
    rows = []
    for m, d in columns.items():
        outcome, interval = _decide(d, m, 1 - level[m]) if usable[m] else (NO_EVIDENCE, (math.nan, math.nan))
        primary = m in members
        rows.append(Verdict(arm, baseline, m, PRIMARY if primary else SECONDARY, seeds, d, outcome, interval,
                            1 - level[m], t_p[m], holm[m] if primary and usable[m] else math.nan, perm_p[m],
                            perm_holm[m] if primary and usable[m] else math.nan, validity))
    return rows


def verdicts(results: Mapping[str, object], metrics: Sequence[str] | None = None, *,
             min_seeds: int = 2, alpha: float = ALPHA) -> list[Verdict]:
    """One :class:`Verdict` per matched pair of ``results`` and per metric (rule: module docstring).

    ``results``: the ``results.json`` layout (``pairs``, ``seeds``, ``runs``, optionally
    ``primary_metrics``; see :mod:`segan_lib.experiments.results`). ``metrics``: names of
    ``scores["mean"]`` to report (default: :func:`verdict_metrics`); the primary family is
    the same whichever are reported, so a row does not change when others are left out.
    A seed counts when both arms have a run for it. ``min_seeds``: int >= 2. ``alpha``: the
    family-wise error rate of the primaries and the level of each secondary, in (0, 1).
    """
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 2:
        raise ValueError(f"min_seeds must be an int >= 2 (an interval needs two differences), got {min_seeds!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    metrics = verdict_metrics(results) if metrics is None else list(metrics)
    family = primary_family(results, metrics)
    out = []
    for arm, baseline in results["pairs"]:
        runs, base_runs = results["runs"].get(arm, {}), results["runs"].get(baseline, {})
        seeds = tuple(s for s in results["seeds"] if str(s) in runs and str(s) in base_runs)
        # the family is judged as a whole, so every primary metric is computed even when not reported
        judged = metrics + [m for m in family if m not in metrics]
        columns = {m: tuple(as_float(runs[str(s)]["scores"]["mean"].get(m))
                            - as_float(base_runs[str(s)]["scores"]["mean"].get(m)) for s in seeds) for m in judged}
        validity = summarise_validity([runs[str(s)] for s in seeds])
        rows = _judge_pair(arm, baseline, seeds, columns, family, validity, min_seeds, alpha)
        out += [row for row in rows if row.metric in metrics]
    return out


def _validity_cell(v: Verdict) -> str:
    """``"D healthy 4/5, shortcut 1/5"``; a count marked ``!`` when it flags the verdict (over half the runs)."""
    if v.validity is None:
        return "-"
    runs, unhealthy, shortcut = v.validity["runs"], v.validity["unhealthy"], v.validity["shortcut"]
    unknown = v.validity.get("health_unknown", 0)
    health = "D health n/a" if unknown == runs else f"D healthy {runs - unhealthy - unknown}/{runs}"
    return (f"{health}{'!' if v.overpowered else ''}, "
            f"shortcut {shortcut}/{runs}{'!' if v.shortcut else ''}")


def format_verdicts(rows: Sequence[Verdict]) -> str:
    """An aligned text table, one line per verdict: arm, baseline, metric (and which way is
    better), family, the mean paired difference, its interval and confidence, the sign-flip
    permutation p, the outcome, and the checks of the arm's discriminator (marked ``!`` where
    more than half its runs failed one, which the verdict's sentence then reports); a legend below."""
    if not rows:
        return "no matched pairs to judge"
    headers = ["arm", "baseline", "metric", "family", "mean diff", "interval (confidence)", "perm p", "verdict",
               "validity"]

    def signed(x: float) -> str:
        return "nan" if math.isnan(x) else f"{x:+.3f}"

    def plain(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.3f}"

    lines = []
    for v in rows:
        interval = "-" if math.isnan(v.interval[0]) else \
            f"[{signed(v.interval[0])}, {signed(v.interval[1])}] {100 * v.confidence:.4g}%"
        lines.append([v.arm, v.baseline, f"{v.metric} ({'higher' if v.higher_is_better else 'lower'})", v.family,
                      signed(v.mean), interval, plain(v.permutation_p),
                      "no evidence" if v.outcome == NO_EVIDENCE else v.outcome, _validity_cell(v)])
    widths = [max(len(line[j]) for line in [headers] + lines) for j in range(len(headers))]

    def render(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    legend = ["", "mean diff: mean of (arm - baseline) over the paired seeds; metric (higher/lower): which way is "
                  "better.",
              "interval: paired t interval of the mean diff; primary metrics Holm-corrected over their family, "
              "secondary uncorrected.",
              "verdict: better/worse when the interval excludes zero, else no evidence of a difference. perm p: "
              "exact sign-flip p (uncorrected).",
              "validity: the arm's discriminator or critic (D): runs it stayed healthy, runs whose probe found a "
              "shortcut;",
              "  '!': over half the runs, so the verdict is flagged (overpowered D, or a test of softness, not "
              "shape)."]
    return "\n".join([render(headers), render(["-" * w for w in widths])] + [render(line) for line in lines] + legend)
