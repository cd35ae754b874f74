"""Experiment ``semi``: arms and matched baselines per labelled fraction, the same split, weights and
batches for every arm of a seed, and one tiny run of ``segan experiment semi``.

The run uses a preset far smaller than ``quick`` (16x16 images, a 4-channel U-Net, 32 steps per
arm, 2 seeds), run once per module.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import shlex

import pytest
import torch

from segan_lib import cli
from segan_lib.data.split import split_labelled
from segan_lib.experiments import (
    Arm, Experiment, Preset, check_results, get_experiment, prepare_run, read_json, verdicts,
)
from segan_lib.experiments.semi import CRITIC_LR, FRACTIONS, SEMI, SOFTMAX_THRESHOLD

TINY = Preset(size=16, num_classes=2, n_train=64, n_eval=4, epochs=1, batch_size=2, base_channels=4, depth=1,
              lr=1e-2, critic_base_channels=4, critic_depth=1, batch_norm=False, log_every=4, n_show=2)
KINDS = ("labelled-only", "adv", "adv+semi", "self-training")


def by_kind(fraction) -> dict[str, Arm]:
    prefix = f"{fraction.numerator}_{fraction.denominator}/"
    return {arm.name.removeprefix(prefix): arm for arm in SEMI.arms if arm.name.startswith(prefix)}


# ----------------------------------------------------------------------------- arms and pairs
def test_each_fraction_has_the_four_arms_against_its_own_labelled_only_baseline():
    assert get_experiment("semi") is SEMI
    assert len(SEMI.arms) == len(KINDS) * len(FRACTIONS) + 1  # + all labels, the ceiling
    assert [float(f) for f in FRACTIONS] == [1 / 32, 1 / 8, 1 / 4, 1 / 2]
    ceiling = SEMI.arm("full/labelled-only")
    assert (ceiling.method, ceiling.labelled_fraction, ceiling.baseline) == ("supervised", None, None)
    assert SEMI.presets["reference"].seeds >= 5 and SEMI.presets["reference"].curve_every > 0
    for fraction in FRACTIONS:
        arms = by_kind(fraction)
        assert tuple(arms) == KINDS
        assert {arm.labelled_fraction for arm in arms.values()} == {float(fraction)}
        base = arms["labelled-only"]
        assert (base.method, base.loss, dict(base.options), base.baseline) == ("supervised", "ce", {}, None)
        for kind in KINDS[1:]:
            assert arms[kind].baseline == base.name and arms[kind].method == "semi" and arms[kind].loss == "ce"
        # adv: no L_semi; adv+semi: the paper's weights; self-training: no discriminator, its own threshold
        assert dict(arms["adv"].options) == {"lambda_semi": 0.0, "critic_lr": CRITIC_LR}
        assert dict(arms["adv+semi"].options) == {"critic_lr": CRITIC_LR}
        assert dict(arms["self-training"].options) == {"confidence": "softmax", "t_semi": SOFTMAX_THRESHOLD}
    by_name = {arm.name: arm for arm in SEMI.arms}
    assert len(SEMI.pairs) == 3 * len(FRACTIONS)
    for arm, baseline in SEMI.pairs:
        assert by_name[arm].labelled_fraction == by_name[baseline].labelled_fraction
        assert by_name[baseline].method == "supervised"


def test_arms_with_a_labelled_fraction_are_checked():
    with pytest.raises(ValueError, match="labelled_fraction of arm 'a' must be None or a number in \\(0, 1\\)"):
        Arm("a", labelled_fraction=1.0)
    with pytest.raises(ValueError, match="of method 'semi' needs a labelled_fraction"):
        Arm("a", "semi")
    with pytest.raises(ValueError, match=r"must not set \['unlabelled'\]"):
        Arm("a", "semi", options={"unlabelled": None}, labelled_fraction=0.5)
    base = Arm("base", labelled_fraction=0.25)
    with pytest.raises(ValueError, match="baseline of arm 'semi' must have its labelled_fraction 0.5, got 'base'"):
        Experiment("x", "x", (base, Arm("semi", "semi", baseline="base", labelled_fraction=0.5)), {"quick": TINY})
    with pytest.raises(ValueError, match="preset 'quick': labelled_fraction 0.0625 of n_train=64 gives 4 labelled"):
        Experiment("x", "x", (Arm("a", labelled_fraction=0.0625),), {"quick": dataclasses.replace(TINY, batch_size=8)})
    assert "labelled_fraction" not in Arm("full").to_dict()  # fully labelled arms keep their old fingerprint
    assert Arm("part", labelled_fraction=0.25).to_dict()["labelled_fraction"] == 0.25


# ----------------------------------------------------------------------------- paired seeds
@pytest.mark.parametrize("seed", [0, 4])
def test_every_arm_of_a_seed_has_the_same_split_weights_labelled_batches_and_unlabelled_batches(seed):
    preset = SEMI.preset("quick")
    for fraction in FRACTIONS:
        runs = [prepare_run(SEMI, preset, arm, seed) for arm in by_kind(fraction).values()]
        expected_labelled, expected_unlabelled = split_labelled(runs[0].trainer.train_data.dataset,
                                                                fraction=float(fraction), seed=seed)
        first = runs[0].trainer
        weights = first.strategy.unwrapped("segmentor").state_dict()
        steps = first.steps_per_epoch * first.config.epochs
        assert steps == preset.epochs * (preset.n_train // preset.batch_size)  # every fraction: the same updates
        unlabelled_orders = []
        for run in runs:
            trainer, strategy = run.trainer, run.trainer.strategy
            assert torch.equal(trainer.train_data.indices, expected_labelled.indices), run.arm.name
            assert trainer.steps_per_epoch * trainer.config.epochs == steps
            assert strategy.cosine_steps == (steps if preset.cosine else None)  # the same schedule in every arm
            for epoch in (0, trainer.config.epochs - 1):
                assert torch.equal(trainer.batches.index_batches(epoch, trainer.steps_per_epoch),
                                   first.batches.index_batches(epoch, first.steps_per_epoch))
            other = strategy.unwrapped("segmentor").state_dict()
            assert all(torch.equal(other[key], weights[key]) for key in weights), run.arm.name
            if run.arm.method == "semi":
                assert torch.equal(strategy.unlabelled.indices, expected_unlabelled.indices)
                assert strategy.semi_start_step == steps // 4  # L_semi from a quarter of training
                images = torch.zeros(preset.batch_size, 3, preset.size, preset.size)
                unlabelled_orders.append(torch.stack([strategy.unlabelled_images(t, images) for t in (0, steps - 1)]))
        assert len(unlabelled_orders) == 3
        assert all(torch.equal(order, unlabelled_orders[0]) for order in unlabelled_orders)
    other_seed = prepare_run(SEMI, preset, runs[0].arm, seed + 1).trainer  # another seed, another split
    assert not torch.equal(other_seed.train_data.indices, first.train_data.indices)


# ----------------------------------------------------------------------------- a tiny run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``segan experiment semi --preset quick --seeds 2`` with the quick preset shrunk to ``TINY``."""
    out = tmp_path_factory.mktemp("semi") / "out"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setitem(SEMI.presets, "quick", TINY)
        status = cli.main(["experiment", "semi", "--preset", "quick", "--seeds", "2", "--out", str(out),
                           "--device", "cpu", "--no-progress"])
    return out, status, printed.getvalue()


@pytest.mark.slow
def test_tiny_run_writes_results_with_a_verdict_for_every_pair(tiny_run):
    out, status, printed = tiny_run
    assert status == 0
    results = read_json(out / "results.json")
    check_results(results)
    assert results["experiment"] == "semi" and results["complete"] and results["seeds"] == [0, 1]
    assert results["settings"] == TINY.to_dict()
    assert set(results["runs"]) == {arm.name for arm in SEMI.arms}
    assert results["arms"]["1_32/adv+semi"]["labelled_fraction"] == 0.03125
    curve = results["label_curve"]  # the labelled-only curve, up to the full-label ceiling
    assert curve["fractions"] == [1 / 32, 1 / 8, 1 / 4, 1 / 2, 1.0] and curve["arms"][-1] == "full/labelled-only"
    assert len(curve["steps"]) == 4 and "label_curve.png" in results["figures"]
    steps = {run["steps"] for runs in results["runs"].values() for run in runs.values()}
    assert steps == {TINY.epochs * TINY.n_train // TINY.batch_size}  # the same number of updates everywhere
    assert results["verdicts"] == [v.to_dict() for v in verdicts(results)]
    assert {(v["arm"], v["baseline"]) for v in results["verdicts"]} == set(SEMI.pairs)
    assert {v["metric"] for v in results["verdicts"]} >= {"dice", "iou"}
    assert all(v["seeds"] == [0, 1] and len(v["differences"]) == 2 for v in results["verdicts"])
    for name in results["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    histories = {arm: read_json(out / "runs" / arm / "seed0.json")["history"] for arm in results["runs"]}
    assert "semi_pass_fraction" in histories["1_4/adv+semi"] and "loss_discriminator" in histories["1_4/adv"]
    assert "loss_discriminator" not in histories["1_4/self-training"]
    rows = [line.split() for line in printed.splitlines()]
    for arm, baseline in SEMI.pairs:  # the printed table has a verdict row for each pair and metric
        assert {row[2] for row in rows if row[:2] == [arm, baseline]} >= {"dice", "iou"}


def test_the_pinned_results_command_parses():
    command = "segan experiment semi --preset reference --seeds 5 --out notebooks/results/semi"
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    assert (args.name, args.preset, args.seeds, args.out) == ("semi", "reference", 5, "notebooks/results/semi")
