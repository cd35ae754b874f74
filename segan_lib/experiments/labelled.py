"""Arms with a labelled fraction: which images keep their labels, and for how many steps.

Semi-supervised experiments (:mod:`~segan_lib.experiments.semi`) compare arms that see only a
share of the labels. The split is :func:`~segan_lib.data.split_labelled` seeded with the run's
seed, so every arm of a seed trains on the same labelled images, in the same order (the
engine's order depends on the seed and the number of images only), and the ``semi`` arms of a
seed draw the same unlabelled batches (their order is seeded with the same seed).
"""
from __future__ import annotations

from segan_lib.data.split import split_labelled
from segan_lib.experiments.spec import Arm, Preset
from segan_lib.train.batches import steps_in_epoch
from segan_lib.train.semi import semi_warmup_steps


def labelled_training(arm: Arm, preset: Preset, train_data: object, seed: int) -> tuple[object, dict, int]:
    """What ``arm`` trains on for ``seed``: ``(training data, extra strategy options, epochs)``.

    A fully labelled arm: ``(train_data, {}, preset.epochs)``. An arm with a labelled fraction
    ``f``: the labelled part of ``split_labelled(train_data, fraction=f, seed=seed)``, the same for
    every arm of the seed, for as many steps as a fully labelled run, ``T = epochs * (n_train //
    batch_size)`` (rounded to whole passes over the labelled part), so every fraction gets the same
    number of updates, as Hung et al.'s code trains 20,000 steps whatever the fraction. A ``semi``
    arm also gets ``unlabelled`` (the other images), ``semi_start_step`` (a quarter of its steps,
    :func:`~segan_lib.train.semi.semi_warmup_steps`) and ``seed`` (its unlabelled batch order).
    """
    if arm.labelled_fraction is None:
        return train_data, {}, preset.epochs
    labelled, unlabelled = split_labelled(train_data, fraction=arm.labelled_fraction, seed=seed)
    per_epoch = steps_in_epoch(len(labelled), preset.batch_size)
    epochs = max(1, round(preset.epochs * (preset.n_train // preset.batch_size) / per_epoch))
    if arm.method != "semi":
        return labelled, {}, epochs
    options = {"unlabelled": unlabelled, "semi_start_step": semi_warmup_steps(epochs * per_epoch), "seed": seed}
    return labelled, options, epochs
