"""The experiments ``segan experiment NAME`` knows, by name, and :func:`run_experiment` by name.

The runner never looks a name up itself: it imports no experiment definition, so the arrows run
one way (registry -> experiments -> runner).
"""
from __future__ import annotations

from segan_lib.experiments import runner

from segan_lib._checks import check_choice
from segan_lib.experiments.adversarial import ADVERSARIAL
from segan_lib.experiments.losses import LOSSES
from segan_lib.experiments.semi import SEMI
from segan_lib.experiments.spec import Experiment

EXPERIMENTS: dict[str, Experiment] = {experiment.name: experiment for experiment in (ADVERSARIAL, LOSSES, SEMI)}


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name`` (``ValueError`` naming the known ones otherwise)."""
    check_choice("experiment", name, tuple(EXPERIMENTS))
    return EXPERIMENTS[name]


def run_experiment(experiment: str | Experiment, *args: object, **kwargs: object) -> dict:
    """:func:`segan_lib.experiments.runner.run_experiment` of ``experiment``, an :class:`Experiment` or the
    name of a registered one (``"adversarial"``, ``"semi"``, ``"losses"``); same arguments and result."""
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    return runner.run_experiment(experiment, *args, **kwargs)
