"""Paired-seed experiments: arms, matched baselines, presets, computed verdicts, results and figures.

One machinery for every comparison of the course::

    from segan_lib.experiments import run_experiment, verdicts, format_verdicts
    results = run_experiment("adversarial", "quick", seeds=3, out="runs/adv")   # or: segan experiment ...
    print(format_verdicts(verdicts(results)))

Modules: :mod:`~segan_lib.experiments.spec` (arms, presets, experiments),
:mod:`~segan_lib.experiments.regimes` (clean or noisy and occluded data),
:mod:`~segan_lib.experiments.labelled` (arms that keep only a fraction of the labels),
:mod:`~segan_lib.experiments.runner` (paired seeds, resume, results.json),
:mod:`~segan_lib.experiments.results` (the results.json layout and its checks),
:mod:`~segan_lib.experiments.verdicts` (the verdict rule: paired t intervals, Holm over the primary
metrics), :mod:`~segan_lib.experiments.statistics` (t distribution, sign flips, Holm),
:mod:`~segan_lib.experiments.figures`,
the experiments :mod:`~segan_lib.experiments.adversarial`, :mod:`~segan_lib.experiments.losses` and
:mod:`~segan_lib.experiments.semi`
(:mod:`~segan_lib.experiments.registry` lists them) and :mod:`~segan_lib.experiments.command`
(``segan experiment``).
"""
from segan_lib.experiments.regimes import CorruptedImages, Regime
from segan_lib.experiments.registry import EXPERIMENTS, get_experiment, run_experiment
from segan_lib.experiments.results import check_results, read_json
from segan_lib.experiments.runner import prepare_run
from segan_lib.experiments.spec import PRESET_NAMES, Arm, Experiment, Preset
from segan_lib.experiments.verdicts import Verdict, format_verdicts, higher_is_better, verdicts

__all__ = [
    "EXPERIMENTS", "PRESET_NAMES", "Arm", "CorruptedImages", "Experiment", "Preset", "Regime", "Verdict",
    "check_results", "format_verdicts", "get_experiment", "higher_is_better", "prepare_run", "read_json",
    "run_experiment", "verdicts",
]
