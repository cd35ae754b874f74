"""Held-out curves: the plateau check of the reference arms and the labelled-only curve."""
from __future__ import annotations

import pytest

from segan_lib.experiments.curves import curve_callback, label_curve_summary, plateau_summary


def results_with(curves: dict[str, list[list[float]]], steps=(100, 200, 300, 400), pairs=(("adv", "base"),)):
    runs = {arm: {str(seed): {"curve": {"step": list(steps), "dice": dice}, "scores": {"mean": {"dice": dice[-1]}}}
                  for seed, dice in enumerate(per_seed)} for arm, per_seed in curves.items()}
    return {"pairs": [list(p) for p in pairs], "runs": runs,
            "arms": {arm: {"method": "supervised" if arm == "base" else "hybrid"} for arm in curves}}


def test_a_baseline_still_rising_in_its_last_quarter_has_not_plateaued():
    # last quarter: from step 300 (nearest 3/4 of 400) to 400; seed means 0.70 -> 0.72 and 0.80 -> 0.805
    rising = results_with({"base": [[0.5, 0.6, 0.69, 0.71], [0.5, 0.6, 0.71, 0.73]], "adv": [[0.1] * 4] * 2})
    summary = plateau_summary(rising)
    assert list(summary) == ["base"]  # the contestant is not a reference arm
    assert summary["base"]["from_step"] == 300 and summary["base"]["to_step"] == 400
    assert summary["base"]["change"] == pytest.approx(0.02) and summary["base"]["plateaued"] is False
    flat = plateau_summary(results_with({"base": [[0.5, 0.7, 0.80, 0.805]] * 2, "adv": [[0.1] * 4] * 2}))
    assert flat["base"]["change"] == pytest.approx(0.005) and flat["base"]["plateaued"] is True
    assert flat["base"]["mean_dice"] == pytest.approx([0.5, 0.7, 0.80, 0.805]) and flat["base"]["seeds"] == 2
    assert plateau_summary({"pairs": [], "runs": {"base": {"0": {"scores": {}}}}}) is None


def test_the_curve_callback_scores_every_n_steps_once():
    class Trainer:
        calls = 0

        def evaluate(self, data):
            Trainer.calls += 1
            return {"mean_dice": 0.5}
    record, curve = curve_callback("held-out", every=10)
    for step in (5, 10, 10, 15, 20):  # step 10 logged twice (an epoch end): scored once
        record(Trainer(), step, {})
    assert curve == {"step": [10, 20], "dice": [0.5, 0.5]} and Trainer.calls == 2


def test_the_label_curve_pairs_seeds_and_says_which_steps_are_clear():
    def run(dice):
        return {"scores": {"mean": {"dice": dice}}}
    dice = {"1_8/lo": [0.50, 0.52, 0.48], "1_2/lo": [0.60, 0.63, 0.58], "full/lo": [0.605, 0.62, 0.59]}
    results = {"pairs": [["1_8/adv", "1_8/lo"]],
               "arms": {"1_8/lo": {"method": "supervised", "labelled_fraction": 0.125},
                        "1_8/adv": {"method": "semi", "labelled_fraction": 0.125},
                        "1_2/lo": {"method": "supervised", "labelled_fraction": 0.5},
                        "full/lo": {"method": "supervised"}},
               "runs": {arm: {str(s): run(v) for s, v in enumerate(values)} for arm, values in dice.items()}}
    results["runs"]["1_8/adv"] = {"0": run(0.9)}
    curve = label_curve_summary(results)
    assert curve["arms"] == ["1_8/lo", "1_2/lo", "full/lo"] and curve["fractions"] == [0.125, 0.5, 1.0]
    assert curve["mean"] == pytest.approx([0.50, 0.6033333, 0.605])
    first, second = curve["steps"]
    assert first["mean"] == pytest.approx(0.1033333) and first["clear"] is True  # +0.10, +0.11, +0.10
    assert second["clear"] is False  # +0.005, -0.01, +0.01: the interval holds zero
    assert curve["rise"] == pytest.approx(0.105)
    assert label_curve_summary({"pairs": [], "arms": {"a": {"method": "supervised"}}, "runs": {"a": {}}}) is None
