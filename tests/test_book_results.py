"""Result pages of the course website, from a small results.json of each schema written here.

The first schema (the pinned files in ``notebooks/results/``) has verdicts with ``mean``,
``min``, ``max``, ``outcome`` and ``verdict``; the later one adds ``family``, ``interval``,
``confidence``, the p-values and ``validity``, a top-level ``primary_metrics`` and per-run
``validity``. Both must give the same short page: the question, the description as Markdown,
one settings table, the verdict table (``-`` where a schema has no value), one per-seed table,
the figures with captions, the command and the raw file; top-level entries the page does not
know stay out of it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from segan_lib.book.result_tables import docstring_markdown, format_value, signed
from segan_lib.book.results import Experiment, experiment_page, find_experiments

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = """Experiment ``toy``: does an adversarial term help, against matched baselines?

Matched pairs: each arm is compared with the supervised arm that has **the same
pixel loss** (:class:`~segan_lib.train.segan.SeganStrategy`).

* ``ce`` vs ``ce+adv``: cross-entropy alone vs cross-entropy + ``lambda_adv`` x the
  adversarial term, ``lambda_adv = 0.1``.
* ``dice`` vs ``dice+segan``: soft Dice alone, costs $5.

The verdicts are computed (:mod:`segan_lib.experiments.verdicts`)."""


def _run(dice: float, validity: dict | None = None) -> dict:
    run = {"scores": {"mean": {"dice": dice, "iou": dice - 0.1, "hd95": 3.0}, "overall": {"pixel_accuracy": 0.9}},
           "train_seconds": 12.5}
    if validity is not None:
        run["validity"] = validity
    return run


def results_json(schema: int) -> dict:
    """A results.json of the first (1) or the later (2) schema: two arms, two seeds, two verdicts."""
    verdict = {"arm": "ce+adv", "baseline": "ce", "metric": "dice", "higher_is_better": True, "seeds": [0, 1],
               "differences": [0.01, 0.0146], "mean": 0.0123, "min": 0.01, "max": 0.0146, "outcome": "better",
               "verdict": "ce+adv beats ce"}
    secondary = dict(verdict, metric="hd95", higher_is_better=False, mean=-0.25, min=-0.5, max=0.0,
                     outcome="no clear difference", verdict="no clear difference")
    data = {"schema": schema, "experiment": "toy", "description": DESCRIPTION, "preset": "reference",
            "settings": {"size": 32, "epochs": 4, "lr": 0.001, "seeds": 2}, "seeds": [0, 1], "held_out_seed": 999,
            "command": "segan experiment toy --preset reference --seeds 2 --out notebooks/results/toy",
            "environment": {"date": "2026-12-01T02:31:05+00:00", "torch": "2.13.0+cpu", "python": "3.11.7",
                            "platform": "Linux-x86_64", "cpu_count": 2, "torch_threads": 1, "device": "cpu"},
            "arms": {"ce": {"method": "supervised", "loss": "ce", "options": {}, "baseline": None},
                     "ce+adv": {"method": "hybrid", "loss": "ce", "options": {"lambda_adv": 0.1}, "baseline": "ce"}},
            "runs": {"ce": {"0": _run(0.8), "1": _run(0.81)}, "ce+adv": {"0": _run(0.81), "1": _run(0.8246)}},
            "complete": True, "verdicts": [secondary, verdict], "figures": ["paired_differences.png"],
            "plateau": {"secret_unknown_entry": 1}}
    if schema == 2:
        shared = {"n": 2, "sd": 0.003, "confidence": 0.975, "t_p_value": 0.04, "p_holm": 0.08}
        verdict.update(shared, family="primary", interval=[0.002, 0.0226], permutation_p=0.031,
                       permutation_p_holm=0.062, outcome="better", verdict="ce+adv is better than ce on dice",
                       validity={"runs": 2, "unhealthy": 1, "shortcut": 0})
        secondary.update(shared, family="secondary", interval=[-0.9, 0.4], permutation_p=0.5, permutation_p_holm=1.0,
                         outcome="no evidence of a difference", verdict="no evidence of a difference", validity=None)
        data["primary_metrics"] = ["dice"]
        data["runs"]["ce+adv"]["0"]["validity"] = {"healthy": False, "shortcut": False, "d_acc_real": 0.99}
        data["runs"]["ce+adv"]["1"]["validity"] = {"healthy": True, "shortcut": False, "d_acc_real": 0.7}
    return data


def page_of(tmp_path: Path, data: dict) -> str:
    folder = tmp_path / "results" / "toy"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    (folder / "paired_differences.png").write_bytes(b"\x89PNG")  # copied, never read
    (folder / "extra_plot.png").write_bytes(b"\x89PNG")
    [experiment] = find_experiments(tmp_path / "results")
    return experiment_page(experiment, tmp_path / "site-src")


@pytest.mark.parametrize("schema", [1, 2])
def test_page_reads_in_order_and_leaves_unknown_entries_out(tmp_path, schema):
    text = page_of(tmp_path, results_json(schema))
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == ["# Reference results: toy", "## What was compared and why", "## Settings", "## Verdicts",
                        "## Runs", "## Figures", "## How these results were made"]
    assert "**Does an adversarial term help, against matched baselines?**" in text
    assert "{download}`results.json <toy/results.json>`" in text
    assert (tmp_path / "site-src" / "toy" / "results.json").read_text() == json.dumps(results_json(schema))
    assert "plateau" not in text and "secret_unknown_entry" not in text and "schema" not in text
    assert "\n\n* `ce` vs `ce+adv`: cross-entropy alone" in text and "\n* `dice` vs `dice+segan`" in text
    assert "``" not in text.split("## Settings")[0].replace("```", "") and "(`SeganStrategy`)" in text
    assert "costs \\$5" in text  # not MyST math
    for row in ("| `epochs` | 4 |", "| `lr` | 0.001 |", "| seeds | 0, 1 |", "| PyTorch | 2.13.0+cpu |",
                "| date | 2026-12-01T02:31:05+00:00 |", "| machine | Linux-x86_64, cpu, 2 CPU cores |",
                "| every run finished | yes |"):
        assert row in text, row
    assert "| `ce+adv` | hybrid | ce | lambda_adv=0.1 | ce |" in text  # the arms, empty columns left out
    figure = "```{figure} toy/paired_differences.png\n:alt: Paired differences"
    assert figure in text and "```{figure} toy/extra_plot.png\n:alt: Extra plot.\n\nExtra plot.\n```" in text
    assert text.index("paired_differences.png") < text.index("extra_plot.png")  # results.json's order first
    assert "```bash\nsegan experiment toy --preset reference --seeds 2 --out notebooks/results/toy\n```" in text


def test_first_schema_shows_the_range_and_dashes(tmp_path):
    text = page_of(tmp_path, results_json(1))
    assert ("| arm | baseline | metric | family | mean difference (range over the seeds) | permutation p | verdict "
            "| validity |") in text
    assert "| `ce+adv` | `ce` | dice ↑ | - | +0.0123 (+0.01 .. +0.0146) | - | ce+adv beats ce | - |" in text
    assert "| `ce+adv` | `ce` | hd95 ↓ | - | -0.25 (-0.5 .. +0) | - | no clear difference | - |" in text
    assert "| `ce+adv` | dice | 0.81 | 0.8246 | 0.8173 |" in text and "| `ce` | iou | 0.7 | 0.71 | 0.705 |" in text
    assert "Validity checks" not in text


def test_later_schema_shows_intervals_p_values_families_and_validity(tmp_path):
    text = page_of(tmp_path, results_json(2))
    assert "| mean difference [97.5% interval] | permutation p |" in text
    primary = ("| `ce+adv` | `ce` | dice ↑ | primary | +0.0123 [+0.002, +0.0226] | 0.031 (Holm 0.062) | "
               "ce+adv is better than ce on dice | ⚠ 2 runs: 1 unhealthy, 0 shortcut |")
    secondary = ("| `ce+adv` | `ce` | hd95 ↓ | secondary | -0.25 [-0.9, +0.4] | 0.5 (Holm 1) | "
                 "no evidence of a difference | - |")
    assert primary in text and secondary in text
    assert text.index(primary) < text.index(secondary), "the primary family first"
    assert "| `ce+adv` | dice | 0.81 | 0.8246 | 0.8173 |" in text and "| iou |" not in text  # primary_metrics only
    assert "| arm | seed | healthy | shortcut | d acc real |" in text and "| `ce+adv` | 0 | no | no | 0.99 |" in text


def test_pinned_results_make_pages(tmp_path):
    for experiment in find_experiments(REPO / "notebooks" / "results"):
        text = experiment_page(experiment, tmp_path)
        assert text.count("\n| `") > 20 and "## Verdicts" in text and "schema" not in text
        assert "\n* `" in text, f"{experiment.name}: the description's bullets are a list"
    with pytest.raises(ValueError, match="expected valid JSON"):
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "results.json").write_text("{")
        experiment_page(Experiment("broken", broken, ()), tmp_path)


def test_values_and_descriptions():
    assert [format_value(v) for v in (0.812345, None, True, [0, 1], {"a": 1}, "x|y")] == [
        "0.8123", "-", "yes", "0, 1", "a=1", "x\\|y"]
    assert signed(0.0123) == "+0.0123" and signed(-0.37013) == "-0.37" and signed(None) == "-"
    assert docstring_markdown("Uses :func:`segan_lib.a.b` and :class:`~x.Y`, ``z``.\n* one\n* two") == (
        "Uses `segan_lib.a.b` and `Y`, `z`.\n\n* one\n* two")
    assert docstring_markdown("a <b> and ``<c>``") == "a \\<b> and `<c>`"


def test_the_evidence_figures_have_written_captions():
    from pathlib import Path

    from segan_lib.book.results import CAPTIONS, caption

    for stem in ("plateau", "dose_response", "label_curve"):
        assert caption(Path(f"{stem}.png")) == CAPTIONS[stem] and len(CAPTIONS[stem]) > 40
    assert caption(Path("other_thing.png")) == "Other thing."
