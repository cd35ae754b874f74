"""Verdicts from paired intervals: Holm over the primary family, direction by metric, validity flags,
the null and power simulations, and the paired-differences figure."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from segan_lib.experiments import Arm, Experiment
from segan_lib.experiments.figures import plot_paired_differences
from segan_lib.experiments.verdicts import (
    BETTER, NO_EVIDENCE, PRIMARY_METRICS, WORSE, format_verdicts, higher_is_better, verdict_metrics, verdicts,
)

SCHEMA = ["arm", "baseline", "metric", "higher_is_better", "family", "seeds", "differences", "n", "mean", "sd", "min",
          "max", "interval", "confidence", "t_p_value", "p_holm", "permutation_p", "permutation_p_holm", "outcome",
          "verdict", "validity"]
Z5 = np.array([-1.2, -0.4, 0.1, 0.5, 1.0])  # a fixed pattern of seed noise, scaled to mean 0 and sd 1 below
Z5 = (Z5 - Z5.mean()) / Z5.std(ddof=1)


def run(**mean):
    """A run record whose foreground means are ``mean`` (None for NaN)."""
    return {"scores": {"per_class": {}, "mean": mean, "overall": {}}}


def results(runs, pairs=(("adv", "base"),), seeds=(0, 1, 2), **extra):
    """Hand-made ``results.json`` data: ``runs`` maps arm -> list of per-seed mean dicts."""
    return {"pairs": [list(p) for p in pairs], "seeds": list(seeds), **extra,
            "runs": {arm: {str(s): run(**m) for s, m in zip(seeds, per_seed)} for arm, per_seed in runs.items()}}


def from_differences(**differences):
    """Results whose arm ``adv`` minus baseline ``base`` (all 0.5) is ``differences[metric]`` on each seed."""
    n = len(next(iter(differences.values())))
    base = [{m: 0.5 for m in differences} for _ in range(n)]
    adv = [{m: 0.5 + float(d[s]) for m, d in differences.items()} for s in range(n)]
    return results({"base": base, "adv": adv}, seeds=range(n))


def with_p(p, sd=0.02, n=5, sign=1.0):
    """Differences over ``n`` seeds whose paired t test gives two-sided p-value ``p`` (noise pattern Z5)."""
    t = stats.t.ppf(1 - p / 2, n - 1)
    return sign * t * sd / math.sqrt(n) + sd * Z5[:n]


def by_metric(rows):
    return {row.metric: row for row in rows}


def test_an_arm_is_better_when_its_interval_excludes_zero():
    data = from_differences(dice=[0.02, 0.025, 0.03, 0.022, 0.028], iou=[0.01, -0.01, 0.02, 0.0, 0.005])
    rows = by_metric(verdicts(data))
    dice, iou = rows["dice"], rows["iou"]
    assert dice.outcome == BETTER and dice.sentence == "adv better than base" and dice.family == "primary"
    assert dice.differences == pytest.approx((0.02, 0.025, 0.03, 0.022, 0.028))
    assert dice.mean == pytest.approx(0.025) and dice.low == pytest.approx(0.02) and dice.high == pytest.approx(0.03)
    reference = stats.ttest_rel(np.array(dice.differences) + 1, np.ones(5))
    assert dice.t_p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert dice.confidence == 0.95  # the only primary present: Holm over m = 1 is the plain test
    assert dice.interval == pytest.approx(stats.t.interval(0.95, 4, loc=0.025, scale=stats.sem(dice.differences)))
    assert dice.permutation_p == 0.0625  # every seed agrees: 2/2^5, the smallest five seeds allow
    # IoU (secondary): a positive mean, seeds either way: the interval holds zero
    assert iou.mean > 0 and iou.outcome == NO_EVIDENCE and iou.family == "secondary"
    assert iou.sentence == "no evidence of a difference (secondary, uncorrected)"
    assert iou.interval[0] < 0 < iou.interval[1] and iou.confidence == 0.95 and math.isnan(iou.p_holm)


def test_every_seed_agreeing_is_not_enough_and_one_seed_against_is_not_fatal():
    # the old rule called this "better" (all three positive); one large seed carries the mean
    lucky = verdicts(from_differences(dice=[0.001, 0.001, 0.08]))[0]
    assert lucky.outcome == NO_EVIDENCE and lucky.interval[0] < 0
    # eight seeds, one slightly against: the interval still lies above zero
    steady = verdicts(from_differences(dice=[0.05, 0.06, 0.04, 0.05, -0.005, 0.055, 0.045, 0.05]))[0]
    assert steady.outcome == BETTER and steady.interval[0] > 0


def test_the_baseline_is_better_when_the_interval_lies_below_zero():
    (row,) = verdicts(from_differences(dice=[-0.1, -0.05, -0.08, -0.07, -0.09]))
    assert row.outcome == WORSE and row.sentence == "adv worse than base" and row.interval[1] < 0


def test_lower_is_better_for_distances_and_error_counts_and_zero_spread():
    assert not higher_is_better("hd95") and not higher_is_better("topology_error")
    assert higher_is_better("dice") and higher_is_better("iou") and higher_is_better("boundary_f1")
    data = results({"base": [{"hd95": 5.0, "topology_error": 1.0, "boundary_f1": 0.5}] * 3,
                    "adv": [{"hd95": 4.0, "topology_error": 1.5, "boundary_f1": 0.5}] * 3})
    rows = by_metric(verdicts(data))
    # exactly 1 pixel closer on every seed: zero spread, the point interval [-1, -1] excludes zero
    assert rows["hd95"].outcome == BETTER and rows["hd95"].interval == (-1.0, -1.0) and rows["hd95"].t_p_value == 0
    assert rows["hd95"].permutation_p == 0.25  # the check beside it: three seeds are weak evidence
    assert rows["topology_error"].outcome == WORSE  # half a component more on every seed
    tie = rows["boundary_f1"]  # a tie is no win: [0, 0] holds zero
    assert tie.outcome == NO_EVIDENCE and tie.interval == (0.0, 0.0) and tie.t_p_value == 1.0 and tie.p_holm == 1.0


def test_holm_over_the_primary_family_read_as_intervals():
    # boundary F1 p = 0.01 ranks first, tested at 0.05/2: rejected; Dice p = 0.03 then at 0.05/1: rejected
    rows = by_metric(verdicts(from_differences(dice=with_p(0.03), boundary_f1=with_p(0.01), iou=with_p(0.03))))
    assert rows["boundary_f1"].t_p_value == pytest.approx(0.01) and rows["boundary_f1"].confidence == 0.975
    assert rows["dice"].confidence == 0.95 and rows["dice"].outcome == rows["boundary_f1"].outcome == BETTER
    assert rows["dice"].p_holm == pytest.approx(0.03) and rows["boundary_f1"].p_holm == pytest.approx(0.02)
    assert rows["iou"].family == "secondary" and rows["iou"].outcome == BETTER and math.isnan(rows["iou"].p_holm)
    # Dice p = 0.03 ranks first, tested at 0.025: not rejected, so Holm stops; boundary F1 (p = 0.04) shares
    # that level. Each would pass alone at 0.05; as a family of two neither does.
    rows = by_metric(verdicts(from_differences(dice=with_p(0.03), boundary_f1=with_p(0.04, sign=-1))))
    for row in rows.values():
        assert row.outcome == NO_EVIDENCE and row.confidence == 0.975
        assert row.interval[0] < 0 < row.interval[1] and row.p_holm == pytest.approx(0.06)
    # the family comes from the results: Dice alone as primary is tested at 0.05
    alone = verdicts({**from_differences(dice=with_p(0.03), boundary_f1=with_p(0.04)), "primary_metrics": ["dice"]})
    assert by_metric(alone)["dice"].outcome == BETTER and by_metric(alone)["boundary_f1"].family == "secondary"
    # a row does not depend on which others are reported: the family is judged whole
    data = from_differences(dice=with_p(0.03), boundary_f1=with_p(0.04))
    assert verdicts(data, ["dice"])[0] == by_metric(verdicts(data))["dice"]


def test_permutation_p_and_its_holm_adjustment_sit_beside_the_t_result():
    rows = by_metric(verdicts(from_differences(dice=[0.03, 0.02, 0.04, 0.05, 0.01],
                                               boundary_f1=[0.02, -0.01, 0.03, 0.04, 0.01])))
    assert rows["dice"].permutation_p == 0.0625  # every seed agrees: 2 of 32 patterns
    # boundary F1, sum 0.09: flipping a subset S gives 0.09 - 2 sum(S), which reaches |0.09| when sum(S) <= 0
    # ({}, {-0.01}, {-0.01, 0.01}) or sum(S) >= 0.09 (their complements; one ties exactly): 6 of 32
    assert rows["boundary_f1"].permutation_p == 6 / 32
    # Holm over the two: 0.0625 * 2 = 0.125, then 0.1875 * 1 (above the running max)
    assert rows["dice"].permutation_p_holm == 0.125 and rows["boundary_f1"].permutation_p_holm == 6 / 32


def test_too_few_seeds_nan_or_missing_runs_give_no_evidence():
    one_seed = results({"base": [{"dice": 0.5}], "adv": [{"dice": 0.9}]}, seeds=(0,))
    row = verdicts(one_seed)[0]
    assert row.outcome == NO_EVIDENCE and math.isnan(row.interval[0]) and row.to_dict()["interval"] == [None, None]
    with pytest.raises(ValueError, match="min_seeds"):
        verdicts(one_seed, min_seeds=1)  # an interval needs two differences
    strong = from_differences(dice=[0.1, 0.11, 0.12])
    assert verdicts(strong)[0].outcome == BETTER and verdicts(strong, min_seeds=4)[0].outcome == NO_EVIDENCE
    with_nan = results({"base": [{"dice": 0.5}, {"dice": None}, {"dice": 0.5}],
                        "adv": [{"dice": 0.9}, {"dice": 0.9}, {"dice": 0.9}]})
    row = verdicts(with_nan)[0]
    assert row.outcome == NO_EVIDENCE and math.isnan(row.mean) and math.isnan(row.differences[1])
    assert row.to_dict()["mean"] is None and row.to_dict()["t_p_value"] is None and row.to_dict()["p_holm"] is None
    partial = results({"base": [{"dice": 0.5}, {"dice": 0.5}], "adv": [{"dice": 0.6}]}, seeds=(0, 1))
    row = verdicts(partial)[0]  # seed 1 of adv not run yet: only seed 0 is paired
    assert row.seeds == (0,) and row.outcome == NO_EVIDENCE


def test_a_primary_without_evidence_still_counts_in_the_family():
    # boundary F1 is NaN on a seed: no verdict for it, but Dice is still one of a family of two
    data = from_differences(dice=with_p(0.03), boundary_f1=[0.01, math.nan, 0.0, 0.02, 0.01])
    rows = by_metric(verdicts(data))
    assert rows["boundary_f1"].outcome == NO_EVIDENCE and math.isnan(rows["boundary_f1"].p_holm)
    assert rows["dice"].confidence == 0.975 and rows["dice"].outcome == NO_EVIDENCE
    assert rows["dice"].p_holm == pytest.approx(0.06)


@pytest.mark.parametrize("call, argument", [
    (lambda data: verdicts(data, min_seeds=0), "min_seeds"),
    (lambda data: verdicts(data, min_seeds=2.5), "min_seeds"),
    (lambda data: verdicts(data, alpha=0.0), "alpha"),
    (lambda data: verdicts(data, alpha=1.5), "alpha"),
    (lambda data: verdicts({**data, "primary_metrics": []}), "primary_metrics"),
    (lambda data: verdicts({**data, "primary_metrics": "dice"}), "primary_metrics"),
])
def test_bad_arguments_raise_naming_them(call, argument):
    with pytest.raises(ValueError, match=argument):
        call(from_differences(dice=[0.1, 0.2, 0.3]))


def test_the_experiment_names_its_primary_family():
    arms = (Arm("a"), Arm("b", baseline="a"))
    assert Experiment("x", "d", arms, {}).primary_metrics == PRIMARY_METRICS == ("dice", "boundary_f1")
    assert Experiment("x", "d", arms, {}, primary_metrics=("hd95",)).primary_metrics == ("hd95",)
    for bad in ((), ["dice"], ("dice", 3), ("dice", "dice"), "dice"):
        with pytest.raises(ValueError, match="primary_metrics"):
            Experiment("x", "d", arms, {}, primary_metrics=bad)


def test_metrics_are_those_every_run_holds_dice_and_iou_first():
    data = results({"base": [{"hd95": 1.0, "iou": 0.2, "dice": 0.3, "extra": 1.0}] * 3,
                    "adv": [{"hd95": 1.0, "iou": 0.2, "dice": 0.3}] * 3})
    assert verdict_metrics(data) == ["dice", "iou", "hd95"]
    assert [row.metric for row in verdicts(data)] == ["dice", "iou", "hd95"]
    assert [row.metric for row in verdicts(data, ["hd95"])] == ["hd95"]


# ----------------------------------------------------------------------------- validity of adversarial runs
def validity(healthy, shortcut, kind="discriminator"):
    probe = None if shortcut is None else {"score_hard_predictions": 0.9, "score_soft_truth": 0.2,
                                           "shortcut": shortcut, "images": 16}
    return {"discriminator": kind, "health": {"after_step": 20, "logged_steps": 10, "overpowered_share": 0.1,
                                              "healthy": healthy}, "probe": probe}


def with_validity(checks, dice=(0.05, 0.06, 0.07, 0.05, 0.06)):
    data = from_differences(dice=list(dice))
    for seed, check in enumerate(checks):
        if check is not None:
            data["runs"]["adv"][str(seed)]["validity"] = check
    return data


def test_validity_summarises_the_arm_runs_and_flags_the_sentence():
    shortcut = verdicts(with_validity([validity(True, True), validity(True, True), validity(False, True),
                                       validity(True, False), validity(True, None)]))[0]
    assert shortcut.validity == {"runs": 5, "unhealthy": 1, "health_unknown": 0, "shortcut": 3} and shortcut.shortcut
    assert shortcut.sentence == ("adv better than base -- shortcut run(s) (3 of 5): the discriminator preferred hard "
                                 "predictions to soft truth, so the adversarial term tested softness, not shape")
    overpowered = verdicts(with_validity([validity(False, False)] * 3 + [validity(True, False)] * 2,
                                         dice=(0.01, -0.02, 0.0, 0.01, 0.0)))[0]
    assert overpowered.overpowered and not overpowered.shortcut
    assert overpowered.sentence == "no evidence of a difference -- discriminator overpowered in 3 of 5 runs"
    both = verdicts(with_validity([validity(False, True, "critic")] * 5))[0]
    assert both.sentence.endswith("not shape -- discriminator overpowered in 5 of 5 runs")
    half = verdicts(with_validity([validity(False, True), validity(False, True), validity(True, False),
                                   validity(True, False)], dice=(0.05, 0.06, 0.07, 0.05)))[0]
    assert half.validity == {"runs": 4, "unhealthy": 2, "health_unknown": 0, "shortcut": 2}
    assert half.sentence == "adv better than base"
    critic = verdicts(with_validity([validity(None, False, "critic")] * 5))[0]  # SegAN: no health reading
    assert critic.validity["health_unknown"] == 5 and critic.validity["unhealthy"] == 0 and not critic.overpowered
    assert format_verdicts([critic]).count("D health n/a") == 1
    supervised = verdicts(with_validity([None] * 5))[0]
    assert supervised.validity is None and supervised.to_dict()["validity"] is None


def test_to_dict_has_exactly_the_published_schema():
    data = with_validity([validity(True, False)] * 5)
    row = verdicts(data)[0]
    record = row.to_dict()
    assert list(record) == SCHEMA
    assert record["interval"] == list(row.interval) and record["n"] == 5 and record["family"] == "primary"
    assert record["sd"] == pytest.approx(np.std([0.05, 0.06, 0.07, 0.05, 0.06], ddof=1))
    assert record["min"] == pytest.approx(0.05) and record["max"] == pytest.approx(0.07)
    assert record["verdict"] == row.sentence and record["outcome"] == BETTER and record["confidence"] == 0.95
    assert record["validity"] == {"runs": 5, "unhealthy": 0, "health_unknown": 0, "shortcut": 0}
    assert json.loads(json.dumps(record, allow_nan=False)) == record  # plain JSON, stored as is


# ----------------------------------------------------------------------------- simulations
def simulated(rng, experiments, seeds, dice_shift=0.0, sd=0.03):
    """``experiments`` results dicts of one pair on ``seeds`` paired seeds, no true effect unless ``dice_shift``.

    Each run's score = a shared seed effect (the same initial weights and batches for both arms: sd
    0.05) + its own noise (sd ``sd`` for Dice). Boundary F1's noise is 0.8 Dice's + 0.6 its own (the
    two primaries correlate 0.8); IoU (secondary) follows Dice at 0.9 correlation; HD95 (secondary,
    lower is better) has its own noise in pixels.
    """
    shape = (experiments, 2, seeds)  # arm 0 = baseline, arm 1 = the arm
    seed_effect = rng.normal(0, 0.05, (experiments, 1, seeds))
    dice_noise, own_bf1, own_iou = (rng.normal(0, sd, shape) for _ in range(3))
    dice = 0.7 + seed_effect + dice_noise
    dice[:, 1] += dice_shift
    metrics = {"dice": dice, "boundary_f1": 0.6 + seed_effect + 0.8 * dice_noise + 0.6 * own_bf1,
               "iou": 0.55 + seed_effect + 0.9 * dice_noise + math.sqrt(1 - 0.81) * own_iou,
               "hd95": 6.0 + 20 * seed_effect + rng.normal(0, 0.8, shape)}
    out = []
    for e in range(experiments):
        runs = {arm: {str(s): run(**{m: float(v[e, a, s]) for m, v in metrics.items()}) for s in range(seeds)}
                for a, arm in enumerate(("base", "adv"))}
        out.append({"pairs": [["adv", "base"]], "seeds": list(range(seeds)), "runs": runs})
    return out


def test_null_simulation_holds_the_family_wise_error_rate():
    rng = np.random.default_rng(20240601)
    count = 4000
    rows = [by_metric(verdicts(data)) for data in simulated(rng, count, seeds=5)]
    margin = 3 * math.sqrt(0.05 * 0.95 / count)  # three Monte Carlo standard errors of a rate near 0.05
    family_wise = np.mean([any(r[m].outcome != NO_EVIDENCE for m in PRIMARY_METRICS) for r in rows])
    assert 0.025 - margin <= family_wise <= 0.05 + margin  # Holm keeps it <= 0.05 (and >= 0.025 for two tests)
    for metric in ("iou", "hd95"):  # secondaries: each an uncorrected 5 % test
        rate = np.mean([r[metric].outcome != NO_EVIDENCE for r in rows])
        assert abs(rate - 0.05) <= margin, (metric, rate)
    for r in rows:  # interval and verdict never disagree, and Holm's adjusted p says the same
        for v in r.values():
            side = "below" if v.interval[1] < 0 else "above" if v.interval[0] > 0 else "holds"
            expected = {"holds": NO_EVIDENCE, "above": BETTER if v.higher_is_better else WORSE,
                        "below": WORSE if v.higher_is_better else BETTER}[side]
            assert v.outcome == expected
            if v.family == "primary" and abs(v.p_holm - 0.05) > 1e-9:
                assert (v.p_holm < 0.05) == (v.outcome != NO_EVIDENCE)


def test_a_true_shift_of_three_difference_sds_in_dice_is_found():
    rng = np.random.default_rng(7)
    shift = 3 * 0.03 * math.sqrt(2)  # the sd of a paired difference is sqrt(2) * 0.03
    rows = [by_metric(verdicts(data))["dice"] for data in simulated(rng, 400, seeds=5, dice_shift=shift)]
    found = np.mean([row.outcome == BETTER for row in rows])
    assert found >= 0.9 and not any(row.outcome == WORSE for row in rows)


# ----------------------------------------------------------------------------- printed table and figure
def test_the_table_prints_mean_interval_permutation_p_verdict_and_validity():
    data = with_validity([validity(True, False)] * 4 + [validity(False, True)])
    for s in range(5):
        data["runs"]["adv"][str(s)]["scores"]["mean"]["hd95"] = 2.0 + 0.1 * s
        data["runs"]["base"][str(s)]["scores"]["mean"]["hd95"] = 3.0
    data["pairs"].append(["base", "adv"])
    rows = verdicts(data)
    lines = format_verdicts(rows).splitlines()
    assert lines[0].split()[:4] == ["arm", "baseline", "metric", "family"]
    dice = lines[2]
    assert dice.split()[:5] == ["adv", "base", "dice", "(higher)", "primary"]
    assert "+0.058" in dice and "0.062" in dice and "better" in dice and "D healthy 4/5, shortcut 1/5" in dice
    low, high = rows[0].interval
    assert f"[{low:+.3f}, {high:+.3f}] 95%" in dice
    hd95 = lines[3]
    assert "hd95 (lower)" in hd95 and "secondary" in hd95 and "better" in hd95
    assert "adv better than base" not in lines[4] and "worse" in lines[4] and lines[4].endswith("-")  # reversed pair
    assert all(len(line) < 160 for line in lines)
    assert any("Holm" in line for line in lines[6:])
    assert format_verdicts([]) == "no matched pairs to judge"
    flagged = verdicts(with_validity([validity(False, True)] * 5))
    assert "D healthy 0/5!, shortcut 5/5!" in format_verdicts(flagged)


def test_the_figure_is_a_grid_readable_at_page_width(tmp_path):
    metrics = {m: with_p(0.01) for m in ("dice", "iou", "boundary_f1", "hd95", "topology_error")}
    data = from_differences(**metrics)
    data["pairs"] += [["base", "adv"]]
    rows = verdicts(data)
    fig = plot_paired_differences(rows, "a title")
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 5
    assert [ax.get_title().split(":")[0] for ax in panels] == ["dice", "boundary_f1", "iou", "hd95", "topology_error"]
    assert "primary (Holm)" in panels[0].get_title() and "secondary" in panels[2].get_title()
    assert "lower is better" in panels[3].get_title()
    width, height = fig.get_size_inches() * 110  # the runner's dpi
    assert width <= 1400 and len({round(ax.get_position().x0, 3) for ax in panels}) <= 3  # at most 3 per row
    labels = [t.get_text() for t in panels[0].get_yticklabels()]
    assert labels == ["adv\nvs base", "base\nvs adv"]
    fig.savefig(tmp_path / "paired.png", dpi=110)
    assert (tmp_path / "paired.png").read_bytes()[:4] == b"\x89PNG"
    one = plot_paired_differences(rows, pairs=[("base", "adv")])
    assert [t.get_text() for t in one.axes[0].get_yticklabels()] == ["base\nvs adv"]
    with pytest.raises(ValueError, match="pairs"):
        plot_paired_differences(rows, pairs=[("adv", "nobody")])
    with pytest.raises(ValueError, match="rows"):
        plot_paired_differences([])
