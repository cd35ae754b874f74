"""The experiments ``segan experiment NAME`` knows, by name."""
from __future__ import annotations

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
