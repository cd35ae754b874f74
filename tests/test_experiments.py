"""The experiment runner: paired seeds, regimes, results.json, resume, and ``segan experiment``.

One test trains: ``segan experiment adversarial --preset quick --seeds 2`` (the CI promise),
run once and shared through a module fixture; the resume tests work on copies of its folder.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shlex
import shutil
import stat

import pytest
import torch

from segan_lib import cli
from segan_lib.data.synthetic import SynthShapes
from segan_lib.experiments import (
    Arm, CorruptedImages, Experiment, Preset, Regime, check_results, get_experiment, prepare_run, read_json,
    run_experiment, verdicts,
)
from segan_lib.experiments import runner
from segan_lib.experiments.command import parse_seeds
from segan_lib.experiments.results import scores_from_metrics
from segan_lib.train.evaluation import evaluate_segmentation

QUICK_ARGS = ["--preset", "quick", "--seeds", "2", "--device", "cpu", "--no-progress"]
TINY = Preset(size=16, num_classes=3, n_train=8, n_eval=4, epochs=1, batch_size=4, base_channels=4, depth=1,
              lr=1e-2, critic_base_channels=4, critic_depth=1)


# ----------------------------------------------------------------------------- paired seeds
@pytest.mark.parametrize("seed", [0, 3])
def test_every_arm_of_a_seed_starts_from_the_same_weights_and_sees_the_same_batches(seed):
    experiment = get_experiment("adversarial")
    preset = experiment.preset("quick")
    runs = [prepare_run(experiment, preset, arm, seed) for arm in experiment.arms]
    first = runs[0].trainer
    weights = first.strategy.unwrapped("segmentor").state_dict()
    first_batches = {run.arm.regime: next(run.trainer.batches.epoch(0, 1)) for run in runs}
    # every arm anneals its rates over the same steps (the preset's cosine), or none does
    steps = preset.epochs * first.steps_per_epoch
    assert {run.trainer.strategy.cosine_steps for run in runs} == {steps if preset.cosine else None}
    for run in runs[1:]:
        trainer = run.trainer
        other = trainer.strategy.unwrapped("segmentor").state_dict()
        assert other.keys() == weights.keys()
        assert all(torch.equal(other[key], weights[key]) for key in weights), run.arm.name
        for epoch in range(preset.epochs):  # the same samples in the same order, every epoch
            assert torch.equal(trainer.batches.index_batches(epoch, trainer.steps_per_epoch),
                               first.batches.index_batches(epoch, first.steps_per_epoch))
        images, masks = next(trainer.batches.epoch(0, 1))
        assert torch.equal(images, first_batches[run.arm.regime][0])  # same regime: same images
        assert torch.equal(masks, first_batches["clean"][1])  # occlusion never changes a mask
    assert not torch.equal(first_batches["clean"][0], first_batches["occluded"][0])
    other_seed = prepare_run(experiment, preset, experiment.arms[0], seed + 1).trainer
    other = other_seed.strategy.unwrapped("segmentor").state_dict()
    assert not all(torch.equal(other[key], weights[key]) for key in weights)  # another seed, other weights


# ----------------------------------------------------------------------------- regimes
def test_noise_is_standard_normal_times_noise_std_and_masks_are_untouched():
    clean = SynthShapes(16, size=32, num_classes=3, seed=5)
    noisy = CorruptedImages(clean, noise_std=0.7, occluders=0)
    indices = torch.arange(16)
    (x, y), (x_noisy, y_noisy) = clean.get_batch(indices), noisy.get_batch(indices)
    assert torch.equal(y, y_noisy)
    z = ((x_noisy - x) / 0.7).flatten().double()  # 16 * 3 * 32 * 32 = 49,152 draws
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    points = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)  # Box-Muller gives N(0, 1): the empirical
    empirical = (z[:, None] <= points).double().mean(0)  # CDF matches torch's normal CDF (std. error ~0.002)
    assert torch.allclose(empirical, torch.distributions.Normal(0.0, 1.0).cdf(points), atol=0.01)


def test_occluders_are_solid_squares_and_samples_do_not_depend_on_the_batch():
    clean = SynthShapes(8, size=32, num_classes=3, seed=5)
    occluded = CorruptedImages(clean, noise_std=0.0, occluders=2)
    x, _ = clean.get_batch(torch.arange(8))
    x_occ, _ = occluded.get_batch(torch.arange(8))
    changed = (x_occ != x).any(1)  # (B, H, W)
    assert changed.any(dim=(1, 2)).all()  # every image has an occluder
    for image, where in zip(x_occ, changed):
        colours = image[:, where].T.unique(dim=0)  # the distinct colours painted
        assert 1 <= len(colours) <= 2 and colours.abs().max() <= 2.0
        filled = []  # the top square is a solid, axis-aligned box of at most 35 % of the side
        for colour in colours:
            region = (image == colour[:, None, None]).all(0)  # (H, W)
            rows, cols = region.any(1).nonzero().flatten(), region.any(0).nonzero().flatten()
            box = region[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            filled.append(bool(box.all()) and max(box.shape) <= 0.35 * 32 + 1)
        assert any(filled)
    image, mask = occluded[5]
    assert torch.equal(image, x_occ[5]) and torch.equal(mask, clean[5][1])
    assert torch.equal(occluded.get_batch(torch.tensor([6, 5]))[0][1], x_occ[5])  # same in any batch
    with pytest.raises(ValueError, match="index must be"):
        occluded[8]


# ----------------------------------------------------------------------------- definitions and scores
def test_bad_definitions_raise_naming_the_problem():
    with pytest.raises(ValueError, match="arm name"):
        Arm("ce adv")
    with pytest.raises(ValueError, match="loss_options are for method 'supervised'"):
        Arm("x", "hybrid", "focal", loss_options={"gamma": 2.0})
    with pytest.raises(ValueError, match="must not set lr"):
        Arm("x", "hybrid", options={"lr": 1.0})
    with pytest.raises(ValueError, match="baseline of arm 'b'"):
        Experiment("e", "", (Arm("a", regime="clean"), Arm("b", regime="noisy", baseline="a")), {},
                   regimes={"clean": Regime("c"), "noisy": Regime("n", noise_std=1.0)})
    with pytest.raises(ValueError, match="arm names must be distinct"):
        Experiment("e", "", (Arm("a"), Arm("a")), {})
    with pytest.raises(ValueError, match="size must be a multiple"):
        Preset(size=20, num_classes=3, n_train=8, n_eval=4, epochs=1, batch_size=4, base_channels=4, depth=1, lr=1e-2)
    experiment = Experiment("e", "", (Arm("a"),), {"quick": TINY})
    with pytest.raises(ValueError, match="seeds must not include 999"):
        run_experiment(experiment, "quick", seeds=[0, 999])
    with pytest.raises(ValueError, match="preset must be one of"):
        run_experiment(experiment, "full")
    with pytest.raises(ValueError, match="experiment must be one of"):
        run_experiment("gans")


def test_losses_experiment_pairs_every_loss_with_cross_entropy():
    losses = get_experiment("losses")
    assert [arm.name for arm in losses.arms] == ["CE", "Dice", "Dice+CE", "focal_g=2", "focal_g=4"]
    assert losses.pairs == [(name, "CE") for name in ("Dice", "Dice+CE", "focal_g=2", "focal_g=4")]
    adversarial = get_experiment("adversarial")  # the pre-registered dose-response design
    hybrid = [(f"ce+hybrid-{e}-{lam}", "ce") for e in ("basic", "product") for lam in ("0.0001", "0.001", "0.01", "0.1")]
    segan = [(f"dice+segan-{w}", "dice") for w in ("0.1", "1")]
    assert adversarial.pairs == [(f"{r}/{a}", f"{r}/{b}") for r in ("clean", "occluded") for a, b in hybrid + segan]
    assert adversarial.primary_metrics == ("dice", "boundary_f1")
    assert adversarial.presets["reference"].seeds >= 5 and adversarial.presets["reference"].curve_every > 0


def test_scores_are_generic_over_the_metrics_the_evaluation_returns():
    nan = float("nan")
    metrics = {"dice": torch.tensor([0.9, 0.5, nan], dtype=torch.float64), "iou": [0.8, 0.25, nan], "mean_dice": 0.5, "mean_iou": 0.25,
               "hd95": torch.tensor([1.0, 2.0, 4.0]), "boundary_f1": torch.tensor([1.0, 0.5, 0.0]),
               "mean_boundary_f1": 0.3, "pixel_accuracy": 0.95}
    scores = scores_from_metrics(metrics, ["background", "disc", "ring"])
    assert scores["per_class"]["dice"] == {"background": 0.9, "disc": 0.5, "ring": None}  # NaN -> null
    assert scores["mean"] == {"dice": 0.5, "iou": 0.25, "hd95": 3.0, "boundary_f1": 0.3}  # hd95: (2 + 4) / 2
    assert scores["overall"] == {"pixel_accuracy": 0.95}
    with pytest.raises(ValueError, match="one value per class"):
        scores_from_metrics({"dice": [0.1, 0.2]}, ["background", "disc", "ring"])


# ----------------------------------------------------------------------------- the CLI run (trains)
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``segan experiment adversarial --preset quick --seeds 2``: (out folder, exit status, stdout).

    Run under the usual umask 022, so its files must come out readable by all (0o644)."""
    out = tmp_path_factory.mktemp("experiment") / "adversarial"
    printed = io.StringIO()
    umask = os.umask(0o022)
    try:
        with contextlib.redirect_stdout(printed):
            status = cli.main(["experiment", "adversarial", *QUICK_ARGS, "--out", str(out)])
    finally:
        os.umask(umask)
    return out, status, printed.getvalue()


@pytest.mark.slow
def test_quick_cli_run_writes_results_figures_and_prints_verdicts(quick_run):
    out, status, printed = quick_run
    assert status == 0
    results = read_json(out / "results.json")
    check_results(results)
    experiment = get_experiment("adversarial")
    assert results["complete"] and results["seeds"] == [0, 1] and results["preset"] == "quick"
    assert set(results["runs"]) == {arm.name for arm in experiment.arms}
    assert all(set(runs) == {"0", "1"} for runs in results["runs"].values())
    assert results["settings"] == experiment.preset("quick").to_dict()
    assert results["environment"]["device"] == "cpu" and results["environment"]["torch"] == torch.__version__
    # per class: exactly the per-class metrics the evaluation returns (Dice, IoU, structure metrics)
    probe = evaluate_segmentation(lambda x: torch.zeros(x.shape[0], 4, *x.shape[2:]), SynthShapes(2, size=16),
                                  num_classes=4)
    per_class_keys = {k for k, v in probe.items() if isinstance(v, torch.Tensor) and v.dim() == 1}
    for runs in results["runs"].values():
        for run in runs.values():
            assert set(run["scores"]["per_class"]) == per_class_keys
            quick = experiment.preset("quick")
            steps = quick.epochs * (quick.n_train // quick.batch_size)
            assert run["steps"] == steps and run["images_seen"] == steps * quick.batch_size
            assert isinstance(run["train_seconds"], float)  # recorded (its value is not a test: speed is the bench's)
    assert results["verdicts"] == [v.to_dict() for v in verdicts(results)]  # computed from the numbers
    assert {(v["arm"], v["baseline"]) for v in results["verdicts"]} == set(experiment.pairs)
    assert results["primary_metrics"] == ["dice", "boundary_f1"] == list(experiment.primary_metrics)
    assert {v["family"] for v in results["verdicts"] if v["metric"] in ("dice", "boundary_f1")} == {"primary"}
    assert {v["family"] for v in results["verdicts"] if v["metric"] == "iou"} == {"secondary"}
    assert results["figures"] == ["paired_differences.png", "curves.png", "dose_response.png", "predictions_clean.png",
                                  "predictions_occluded.png"]
    adversarial_runs = [run for arm in experiment.arms if arm.method != "supervised"
                        for run in results["runs"][arm.name].values()]
    assert all({"health", "probe"} <= set(run["validity"]) for run in adversarial_runs)
    assert all("validity" not in run for arm in experiment.arms if arm.method == "supervised"
               for run in results["runs"][arm.name].values())
    assert "shortcut" in printed and "interval" in printed  # the validity checks beside the intervals
    for name in results["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob("*.tmp"))  # every file written through a rename
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*") if p.is_file()} == {"0o644"}  # umask 022
    for arm, baseline in experiment.pairs:
        assert any(line.startswith(arm) and baseline in line for line in printed.splitlines())
    assert "paired differences" in printed and "verdict" in printed


@pytest.mark.slow
def test_recorded_command_reproduces_the_run(quick_run):
    out, _, _ = quick_run
    command = read_json(out / "results.json")["command"]
    words = shlex.split(command)
    assert words[0] == "segan"
    args = cli.build_parser().parse_args(words[1:])
    assert (args.command, args.name, args.preset, args.seeds, args.out, args.device) == (
        "experiment", "adversarial", "quick", 2, str(out), "cpu")


def copy_of(quick_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(quick_run[0], out)
    return out


@pytest.mark.slow
def test_a_second_invocation_trains_nothing(quick_run, tmp_path, monkeypatch):
    out = copy_of(quick_run, tmp_path)
    before = {path: path.stat().st_mtime_ns for path in (out / "runs").rglob("*")}
    old = read_json(out / "results.json")

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished (arm, seed) was trained again")
    monkeypatch.setattr(runner, "execute_run", must_not_train)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["experiment", "adversarial", *QUICK_ARGS, "--out", str(out)]) == 0
    assert {path: path.stat().st_mtime_ns for path in (out / "runs").rglob("*")} == before
    new = read_json(out / "results.json")
    assert new["runs"] == old["runs"] and new["verdicts"] == old["verdicts"]


@pytest.mark.slow
def test_resume_trains_only_the_missing_run_and_matches_the_unbroken_one(quick_run, tmp_path, monkeypatch):
    out = copy_of(quick_run, tmp_path)
    missing = out / "runs" / "occluded" / "ce+hybrid-basic-0.1" / "seed1.json"
    unbroken = read_json(missing)
    missing.unlink()
    trained, real = [], runner.execute_run

    def counting(run, n_show):
        trained.append((run.arm.name, run.seed))
        return real(run, n_show)
    monkeypatch.setattr(runner, "execute_run", counting)
    results = run_experiment("adversarial", "quick", seeds=2, out=out, device="cpu", progress=False)
    assert trained == [("occluded/ce+hybrid-basic-0.1", 1)]
    resumed = read_json(missing)
    assert resumed["scores"] == unbroken["scores"] and resumed["history"] == unbroken["history"]
    assert results["runs"]["occluded/ce+hybrid-basic-0.1"]["1"]["scores"] == unbroken["scores"]


@pytest.mark.slow
def test_jobs_trains_the_missing_runs_in_other_processes_with_the_same_results(quick_run, tmp_path, monkeypatch):
    out = copy_of(quick_run, tmp_path)

    def not_here(*args, **kwargs):
        raise AssertionError("with --jobs 2 a run was trained in the calling process")
    monkeypatch.setattr(runner, "execute_run", not_here)  # spawned workers import the real one
    old = read_json(out / "results.json")
    missing = [("clean/ce", 1), ("occluded/ce+hybrid-product-0.01", 0), ("occluded/dice+segan-1", 1)]
    for arm, seed in missing:
        (out / "runs" / arm / f"seed{seed}.json").unlink()
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["experiment", "adversarial", *QUICK_ARGS, "--jobs", "2", "--out", str(out)]) == 0
    new = read_json(out / "results.json")
    assert new["complete"] and set(new["runs"]) == set(old["runs"])
    same = ("scores", "history", "validity", "curve", "steps", "fingerprint")  # all but the seconds it took
    for arm, runs in old["runs"].items():
        for seed, run in runs.items():
            retrained = new["runs"][arm][seed]
            assert {k: retrained.get(k) for k in same} == {k: run.get(k) for k in same}, (arm, seed)
    for arm, seed in missing:  # written again by the worker process, as one at a time writes it
        assert read_json(out / "runs" / arm / f"seed{seed}.json")["scores"] == old["runs"][arm][str(seed)]["scores"]
    assert new["verdicts"] == old["verdicts"]
    assert not list(out.rglob("*.tmp"))


def test_bad_jobs_are_refused_naming_the_argument(capsys):
    for jobs in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="jobs must be an int >= 1"):
            run_experiment("adversarial", "quick", seeds=1, device="cpu", progress=False, jobs=jobs)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "adversarial", "--jobs", "0"])
    assert exit_info.value.code == 2 and "--jobs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_stored_run_of_another_setup_is_an_error_not_a_result(quick_run, tmp_path):
    out = copy_of(quick_run, tmp_path)
    path = out / "runs" / "clean" / "ce" / "seed0.json"
    record = read_json(path)
    record["fingerprint"]["preset"]["size"] = 64
    path.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ValueError, match=r"preset\.size: stored 64, now 32"):
        run_experiment("adversarial", "quick", seeds=2, out=out, device="cpu", progress=False)


@pytest.mark.slow
def test_check_results_names_what_is_missing(quick_run):
    results = read_json(quick_run[0] / "results.json")
    broken = copy.deepcopy(results)
    del broken["environment"]["torch"]
    with pytest.raises(ValueError, match=r"environment lacks \['torch'\]"):
        check_results(broken)
    broken = copy.deepcopy(results)
    del broken["primary_metrics"]
    with pytest.raises(ValueError, match=r"missing keys \['primary_metrics'\]"):
        check_results(broken)
    broken = copy.deepcopy(results)
    del broken["runs"]["clean/ce"]["1"]
    with pytest.raises(ValueError, match="lack runs of arm 'clean/ce'"):
        check_results(broken)
    broken = copy.deepcopy(results)
    broken["runs"]["clean/ce"]["0"]["scores"]["per_class"]["dice"].pop("disc")
    with pytest.raises(ValueError, match="must score dice for the classes"):
        check_results(broken)


def test_seeds_option_takes_a_count_or_a_list():
    assert parse_seeds("3") == 3 and parse_seeds("0,2,3") == [0, 2, 3]
    for bad in ("0", "-1", "1,1", "a"):
        with pytest.raises(Exception, match="must be a count"):
            parse_seeds(bad)
    assert runner.experiment_command("losses", "full", [0, 2, 3], None, "cuda") == \
        "segan experiment losses --preset full --seeds 0,2,3 --device cuda"


def test_experiment_help_and_argument_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "--help"])
    printed = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--preset" in printed and "::" not in printed and "``" not in printed
    examples = printed.rstrip().split("\nexamples:\n")[1].splitlines()  # the help ends with runnable commands
    assert len(examples) == 3 and all(line.strip().startswith("segan experiment ") for line in examples)
    for args, named in ((["adversarial", "--preset", "huge"], "--preset"), (["adversarial", "--seeds", "0"], "--seeds"),
                        (["gans"], "name"), (["adversarial", "--device", "gpu"], "--device")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["experiment", *args])
        assert exit_info.value.code == 2 and named in capsys.readouterr().err
