"""The verdict rule on hand-made results: every seed must agree, direction by metric, spread shown."""
import math

import pytest

from segan_lib.experiments.verdicts import (
    BETTER, NO_CLEAR_DIFFERENCE, WORSE, format_verdicts, higher_is_better, judge, verdict_metrics, verdicts,
)


def run(**mean):
    """A run record whose foreground means are ``mean`` (None for NaN)."""
    return {"scores": {"per_class": {}, "mean": mean, "overall": {}}}


def results(runs, pairs=(("adv", "base"),), seeds=(0, 1, 2)):
    """Hand-made ``results.json`` data: ``runs`` maps arm -> list of per-seed mean dicts."""
    return {"pairs": [list(p) for p in pairs], "seeds": list(seeds),
            "runs": {arm: {str(s): run(**m) for s, m in zip(seeds, per_seed)} for arm, per_seed in runs.items()}}


def by_metric(rows):
    return {row.metric: row for row in rows}


def test_an_arm_beats_its_baseline_only_when_every_seed_agrees():
    data = results({
        "base": [{"dice": 0.50, "iou": 0.40}, {"dice": 0.60, "iou": 0.45}, {"dice": 0.70, "iou": 0.50}],
        "adv": [{"dice": 0.52, "iou": 0.41}, {"dice": 0.61, "iou": 0.44}, {"dice": 0.75, "iou": 0.52}],
    })
    rows = by_metric(verdicts(data))
    dice, iou = rows["dice"], rows["iou"]
    assert dice.outcome == BETTER and dice.sentence == "adv beats base"
    assert dice.differences == pytest.approx((0.02, 0.01, 0.05))
    assert dice.mean == pytest.approx(0.08 / 3) and dice.low == pytest.approx(0.01) and dice.high == pytest.approx(0.05)
    # IoU: +0.01, -0.01, +0.02 -> seed 1 favours the baseline: no verdict, whatever the mean says
    assert iou.mean > 0 and iou.outcome == NO_CLEAR_DIFFERENCE and iou.sentence == "no clear difference"


def test_the_baseline_wins_when_it_is_better_on_every_seed():
    data = results({"base": [{"dice": 0.5}, {"dice": 0.6}, {"dice": 0.7}],
                    "adv": [{"dice": 0.4}, {"dice": 0.55}, {"dice": 0.69}]})
    (row,) = verdicts(data)
    assert row.outcome == WORSE and row.sentence == "base beats adv"
    assert row.differences == pytest.approx((-0.1, -0.05, -0.01))


def test_lower_is_better_for_distances_and_error_counts():
    assert not higher_is_better("hd95") and not higher_is_better("topology_error")
    assert higher_is_better("dice") and higher_is_better("iou") and higher_is_better("boundary_f1")
    data = results({"base": [{"hd95": 5.0, "topology_error": 1.0, "boundary_f1": 0.5}] * 3,
                    "adv": [{"hd95": 4.0, "topology_error": 1.5, "boundary_f1": 0.5}] * 3})
    rows = by_metric(verdicts(data))
    assert rows["hd95"].outcome == BETTER  # 1 pixel closer on every seed
    assert rows["topology_error"].outcome == WORSE  # half a component more on every seed
    assert rows["boundary_f1"].outcome == NO_CLEAR_DIFFERENCE  # a tie is no win


def test_too_few_seeds_nan_or_missing_runs_give_no_verdict():
    one_seed = results({"base": [{"dice": 0.5}], "adv": [{"dice": 0.9}]}, seeds=(0,))
    assert verdicts(one_seed)[0].outcome == NO_CLEAR_DIFFERENCE
    assert verdicts(one_seed, min_seeds=1)[0].outcome == BETTER
    with_nan = results({"base": [{"dice": 0.5}, {"dice": None}], "adv": [{"dice": 0.9}, {"dice": 0.9}]}, seeds=(0, 1))
    row = verdicts(with_nan)[0]
    assert row.outcome == NO_CLEAR_DIFFERENCE and math.isnan(row.mean) and math.isnan(row.differences[1])
    partial = results({"base": [{"dice": 0.5}, {"dice": 0.5}], "adv": [{"dice": 0.6}]}, seeds=(0, 1))
    row = verdicts(partial)[0]  # seed 1 of adv not run yet: only seed 0 is paired
    assert row.seeds == (0,) and row.outcome == NO_CLEAR_DIFFERENCE
    assert judge([], "dice") == NO_CLEAR_DIFFERENCE
    with pytest.raises(ValueError, match="min_seeds"):
        verdicts(one_seed, min_seeds=0)


def test_metrics_are_those_every_run_holds_dice_and_iou_first():
    data = results({"base": [{"hd95": 1.0, "iou": 0.2, "dice": 0.3, "extra": 1.0}] * 3,
                    "adv": [{"hd95": 1.0, "iou": 0.2, "dice": 0.3}] * 3})
    assert verdict_metrics(data) == ["dice", "iou", "hd95"]
    assert [row.metric for row in verdicts(data)] == ["dice", "iou", "hd95"]
    assert [row.metric for row in verdicts(data, ["hd95"])] == ["hd95"]


def test_the_table_prints_mean_spread_each_seed_and_the_verdict():
    data = results({"base": [{"dice": 0.50}, {"dice": 0.60}, {"dice": 0.70}],
                    "adv": [{"dice": 0.52}, {"dice": 0.61}, {"dice": 0.75}]},
                   pairs=(("adv", "base"), ("base", "adv")))
    rows = verdicts(data)
    table = format_verdicts(rows).splitlines()
    assert table[0].split()[:3] == ["arm", "baseline", "metric"]
    assert "adv beats base" in table[2] and "+0.027" in table[2] and "+0.010 .. +0.050" in table[2]
    assert "+0.020 +0.010 +0.050" in table[2] and "dice (higher better)" in table[2]
    assert "adv beats base" in table[3] and "-0.050 .. -0.010" in table[3]  # the same pair the other way round
    assert format_verdicts([]) == "no matched pairs to judge"
    assert rows[0].to_dict()["outcome"] == BETTER and rows[0].to_dict()["differences"] == pytest.approx([0.02, 0.01, 0.05])
