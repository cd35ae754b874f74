"""Moved: the pixel-loss comparison now runs on the experiment runner, in
:mod:`segan_lib.experiments.losses`. This module keeps the old import path working."""
from segan_lib.experiments.losses import (  # noqa: F401
    DEFAULT_LOSSES, LossSpec, as_loss_spec, best_loss, compare_pixel_losses, format_comparison_table,
    mean_over_seeds, per_seed,
)
