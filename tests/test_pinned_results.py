"""Pinned experiment results (``notebooks/results/*/results.json``) keep their schema, and the
command each records still parses with today's ``segan`` parser. The numbers are not re-run."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from segan_lib import cli
from segan_lib.experiments import check_results, get_experiment, read_json, verdicts

PINNED = sorted((Path(__file__).resolve().parents[1] / "notebooks" / "results").glob("*/results.json"))


@pytest.mark.skipif(not PINNED, reason="no pinned results under notebooks/results/ yet")
@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.parent.name)
def test_pinned_results_keep_their_schema_and_a_command_that_parses(path):
    results = read_json(path)
    check_results(results)
    # A reference run takes hours and is committed run by run as it goes: an unfinished one says so
    # (complete: false, and the notebooks label it), and holds only runs of the seeds it lists.
    assert len(results["seeds"]) >= 5, "pinned results come from at least 5 paired seeds"
    assert all(set(runs) <= {str(s) for s in results["seeds"]} for runs in results["runs"].values())
    if results["complete"]:
        assert all(len(runs) == len(results["seeds"]) for runs in results["runs"].values())
    args = cli.build_parser().parse_args(shlex.split(results["command"])[1:])
    assert (args.command, args.name, args.preset) == ("experiment", results["experiment"], results["preset"])
    seeds = list(range(args.seeds)) if isinstance(args.seeds, int) else args.seeds
    assert args.seeds is None or seeds == results["seeds"]
    experiment = get_experiment(results["experiment"])
    assert set(results["arms"]) == {arm.name for arm in experiment.arms}  # the arms of today's experiment
    assert results["verdicts"] == [v.to_dict() for v in verdicts(results)]  # verdicts computed, not edited
    for name in results["figures"]:
        assert (path.parent / name).is_file(), f"{path.parent / name} is listed but missing"
