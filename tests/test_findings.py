"""The README's "what the pinned runs found" is computed from results.json, never typed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from segan_lib.experiments import read_json, verdicts
from segan_lib.experiments.findings import findings_markdown, plateau_lines, readme_block, update_readme, validity_line

ROOT = Path(__file__).resolve().parents[1]
PINNED = sorted((ROOT / "notebooks" / "results").glob("*/results.json"))
SETTINGS = {"size": 32, "num_classes": 4, "n_train": 160, "n_eval": 64, "epochs": 10, "batch_size": 16, "cosine": True}


def hand_results(complete=True):
    """Arm ``adv`` against ``base`` on 5 seeds: Dice +0.05 on every seed give or take 0.002 (a clear
    gain), boundary F1 differences that straddle zero, HD95 (lower is better) 1 px lower, clearly."""
    dice = [0.05, 0.052, 0.048, 0.051, 0.049]
    boundary = [0.02, -0.03, 0.01, -0.02, 0.015]
    hd95 = [-1.0, -1.1, -0.9, -1.05, -0.95]
    runs = {"base": {}, "adv": {}}
    for seed in range(5):
        runs["base"][str(seed)] = {"scores": {"mean": {"dice": 0.6, "boundary_f1": 0.5, "hd95": 4.0}}}
        runs["adv"][str(seed)] = {"scores": {"mean": {"dice": 0.6 + dice[seed], "boundary_f1": 0.5 + boundary[seed],
                                                      "hd95": 4.0 + hd95[seed]}},
                                  "validity": {"health": {"healthy": True}, "probe": {"shortcut": seed < 2}}}
    return {"experiment": "toy", "preset": "reference", "settings": SETTINGS, "seeds": list(range(5)),
            "complete": complete, "command": "segan experiment toy --preset reference --seeds 5 --out x",
            "environment": {"date": "2026-12-07T00:00:00+00:00", "torch": "2.13.0+cpu"},
            "arms": {"base": {"method": "supervised"}, "adv": {"method": "hybrid", "baseline": "base"}},
            "pairs": [["adv", "base"]], "primary_metrics": ["dice", "boundary_f1"], "runs": runs}


def test_every_verdict_that_excludes_zero_is_listed_with_its_interval_and_the_rest_counted():
    results = hand_results()
    text = findings_markdown(results)
    rows = {v.metric: v for v in verdicts(results)}
    assert rows["dice"].outcome == "better" and rows["hd95"].outcome == "better"
    assert rows["boundary_f1"].outcome == "no evidence of a difference"
    dice, hd95 = rows["dice"], rows["hd95"]
    assert (f"`adv` vs `base`, dice (primary, higher is better): +0.050 {100 * dice.confidence:.4g} % "
            f"[{dice.interval[0]:+.3f}, {dice.interval[1]:+.3f}] over 5 seeds: **better**") in text
    assert f"hd95 (secondary, lower is better): -1.000 95 % [{hd95.interval[0]:+.3f}, {hd95.interval[1]:+.3f}]" in text
    assert "boundary_f1 (" not in text  # no evidence: counted, not listed
    assert "no evidence of a difference in 1 of the 3 arm-metric pairs judged (1 of the 2 primary ones)" in text
    assert "shortcut in 2 of 5 runs" in text and "shortcut probe positive (it preferred hard predictions" in text
    assert "32x32 images, 4 classes, 160 training images, 100 steps of 16 a run, rates annealed by a cosine" in text
    assert "unfinished" not in text and "(complete)" in text
    assert "**unfinished: 10 of 10 runs**" in findings_markdown(hand_results(complete=False))


def test_validity_counts_a_run_without_a_health_measure_as_unmeasured_not_overpowered():
    results = hand_results()
    runs = results["runs"]["adv"]
    runs["0"]["validity"]["health"]["healthy"] = False          # overpowered
    runs["1"]["validity"]["health"]["healthy"] = None           # a critic without accuracy (SegAN)
    runs["2"]["validity"]["health"] = {"healthy": None}
    line = validity_line(results)
    assert line.startswith("adversarial runs: 5; discriminator overpowered in 1 (health not measured in 2:")
    assert line.endswith("in 2")                                  # shortcut: seeds 0 and 1
    for run in runs.values():
        run["validity"]["health"] = {"healthy": True}
    assert "not measured" not in validity_line(results) and "overpowered in 0;" in validity_line(results)


def test_update_readme_rewrites_only_the_marked_blocks(tmp_path):
    (tmp_path / "results" / "toy").mkdir(parents=True)
    (tmp_path / "results" / "toy" / "results.json").write_text(json.dumps(hand_results()))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- findings:toy -->\nold text\n<!-- /findings:toy -->\nafter\n")
    assert update_readme(readme, tmp_path / "results") == ["toy"]
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old text" not in text
    assert readme_block(text, "toy") == findings_markdown(hand_results())
    readme.write_text("<!-- findings:absent -->\nx\n<!-- /findings:absent -->\n")
    with pytest.raises(ValueError, match="findings:absent names"):
        update_readme(readme, tmp_path / "results")


@pytest.mark.skipif(not PINNED, reason="no pinned results under notebooks/results/ yet")
@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.parent.name)
def test_the_readme_says_what_the_pinned_results_say(path):
    block = readme_block((ROOT / "README.md").read_text(), path.parent.name)
    assert block is not None, f"README.md has no findings block for {path.parent.name}"
    assert block == findings_markdown(read_json(path)), (
        "README findings differ from results.json: run python -m segan_lib.experiments.findings README.md "
        "notebooks/results")


def test_a_baseline_off_its_plateau_says_which_way_it_moved():
    def summary(change):
        return {"change": change, "plateaued": abs(change) < 0.01, "from_step": 75, "to_step": 100, "seeds": 5}

    results = {"plateau": {"up": summary(0.02), "down": summary(-0.0104), "flat": summary(-0.004)}}
    assert plateau_lines(results) == [
        "baseline `up`: held-out Dice moved +0.020 from step 75 to 100 (5 seeds): **still moving** (rising)",
        "baseline `down`: held-out Dice moved -0.010 from step 75 to 100 (5 seeds): **still moving** (falling)",
        "baseline `flat`: held-out Dice moved -0.004 from step 75 to 100 (5 seeds): on its plateau"]
