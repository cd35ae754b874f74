"""What an experiment is: named arms, their matched baselines, regimes and presets.

An *arm* is one way of training the segmentor: a method of
:func:`~segan_lib.train.build_strategy` (``"supervised"``, ``"segan"``, ``"hybrid"``, ``"semi"``), a
pixel loss and the method's options, and optionally a *labelled fraction* (only that share of
the training images keeps its labels; semi-supervised arms learn from the rest as unlabelled
images). An arm may name its *matched baseline*, another arm of the same regime and labelled
fraction that differs from it in one thing only (e.g. cross-entropy alone vs cross-entropy + an
adversarial term); verdicts compare each arm with its baseline.

A *regime* says which data the arms of it train and are scored on (clean SynthShapes, or
noisy and occluded images, see :mod:`segan_lib.experiments.regimes`). A *preset* says how
big the run is: ``quick`` (a CPU, a couple of minutes: shows the pipeline, proves nothing),
``reference`` (every arm, at least 5 paired seeds, baselines trained to a plateau, about 3 hours
of one CPU thread in the background, resumable run by run) and ``full`` (a GPU).

Everything here is plain data, so a run can record it and a resumed run can check that it
continues the same experiment.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from segan_lib._checks import check_choice, check_positive
from segan_lib.experiments.regimes import Regime
from segan_lib.losses import PIXEL_LOSSES
from segan_lib.train.methods import METHODS

PRESET_NAMES: tuple[str, ...] = ("quick", "reference", "full")
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")  # a safe file name: arm names become folders


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _plain(value: object) -> object:
    """``value`` as JSON-ready data: mappings become dicts, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Arm:
    """One contestant of an experiment.

    ``name``: table label and folder of its runs: one or two parts joined by ``/``
    (e.g. ``"ce+hybrid"`` or ``"occluded/ce+hybrid"``), each made of letters, digits and
    ``_.+=-``. ``method``: one of ``METHODS``. ``loss``: a ``PIXEL_LOSSES`` name (the
    whole loss of ``supervised``, the pixel term of ``segan`` / ``hybrid``);
    ``loss_options``: its keyword options (supervised only, e.g. ``{"gamma": 2.0}``).
    ``options``: keyword arguments of the method's strategy (e.g. ``lambda_adv``).
    ``regime``: the data it trains on. ``baseline``: the name of its matched baseline, or None.
    ``labelled_fraction``: None (every training image labelled), or the share in (0, 1) of the
    training images that keep their labels (a split seeded by the run's seed, the same for every
    arm of that seed; the ``semi`` method also gets the rest as unlabelled images; see
    :func:`~segan_lib.experiments.runner.prepare_run`). An arm and its baseline share it.
    """

    name: str
    method: str = "supervised"
    loss: str = "ce"
    loss_options: Mapping[str, object] = field(default_factory=dict)
    options: Mapping[str, object] = field(default_factory=dict)
    regime: str = "standard"
    baseline: str | None = None
    labelled_fraction: float | None = None

    def __post_init__(self) -> None:
        parts = self.name.split("/") if isinstance(self.name, str) else []
        if not 1 <= len(parts) <= 2 or not all(_NAME_PART.match(part) for part in parts):
            raise ValueError("arm name must be one or two parts joined by '/', each of letters, digits and _.+=- "
                             f"(it names a folder), got {self.name!r}")
        check_choice("method", self.method, METHODS)
        check_choice("loss", self.loss, tuple(PIXEL_LOSSES))
        if self.loss_options and self.method != "supervised":
            raise ValueError(f"loss_options are for method 'supervised' only (the {self.method} strategy takes a loss "
                             f"name), got {dict(self.loss_options)!r} for arm {self.name!r}")
        if "lr" in self.options or "loss" in self.options or "pixel_loss" in self.options:
            raise ValueError(f"options of arm {self.name!r} must not set lr or the loss (the preset and `loss` do), "
                             f"got {sorted(self.options)}")
        runner_set = sorted({"unlabelled", "semi_start_step"} & set(self.options))
        if runner_set:
            raise ValueError(f"options of arm {self.name!r} must not set {runner_set} (the runner sets them from "
                             "labelled_fraction and the run's length)")
        fraction = self.labelled_fraction
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                     or not 0 < fraction < 1):
            raise ValueError(f"labelled_fraction of arm {self.name!r} must be None or a number in (0, 1), "
                             f"got {fraction!r}")
        if self.method == "semi" and fraction is None:
            raise ValueError(f"arm {self.name!r} of method 'semi' needs a labelled_fraction (its unlabelled images "
                             "are the rest of the training set), got None")

    def to_dict(self) -> dict[str, object]:
        """Plain data; ``labelled_fraction`` only when set (so fully labelled arms keep their old records)."""
        data = _plain(dataclasses.asdict(self))
        if self.labelled_fraction is None:
            del data["labelled_fraction"]
        return data


@dataclass(frozen=True)
class Preset:
    """The size of a run: data, U-Net, critic and training budget (one per preset name).

    Every arm of a seed trains ``UNet(3, num_classes, base_channels, depth, batch_norm)`` for
    ``epochs`` passes over ``n_train`` SynthShapes images of ``size`` pixels in batches of
    ``batch_size`` with Adam at ``lr``; an adversarial arm's critic has ``critic_base_channels``
    channels and ``critic_depth`` strided layers. Each arm is scored on ``n_eval`` held-out
    images; ``n_show`` of them appear in the predictions figure. ``threads``: PyTorch CPU
    threads (None: PyTorch's choice); ``compile`` and ``amp`` as in ``TrainConfig`` (None /
    "auto": on for CUDA). ``seeds``: how many paired seeds a run uses unless told otherwise.
    ``curve_every``: every that many steps each run scores its segmentor on the first held-out
    images, for the plateau check (:mod:`~segan_lib.experiments.curves`); 0: no curve.
    ``cosine``: every optimiser of every arm anneals its rate to 0 over the arm's steps with a
    cosine (:mod:`~segan_lib.train.schedule`); False keeps the rates constant.
    """

    size: int
    num_classes: int
    n_train: int
    n_eval: int
    epochs: int
    batch_size: int
    base_channels: int
    depth: int
    lr: float
    critic_base_channels: int = 8
    critic_depth: int = 2
    batch_norm: bool = True
    log_every: int = 10
    seeds: int = 3
    n_show: int = 4
    threads: int | None = None
    compile: bool | None = None
    amp: str = "auto"
    curve_every: int = 0
    cosine: bool = False

    def __post_init__(self) -> None:
        for name in ("size", "n_train", "n_eval", "epochs", "batch_size", "base_channels", "depth",
                     "critic_base_channels", "critic_depth", "log_every", "seeds", "n_show"):
            _check_int(name, getattr(self, name), 1)
        _check_int("num_classes", self.num_classes, 2)
        check_positive("lr", self.lr)
        if self.size % 8 or self.size % 2**self.depth or self.size % 2**self.critic_depth:
            raise ValueError(f"size must be a multiple of 8, of 2**depth = {2**self.depth} and of 2**critic_depth = "
                             f"{2**self.critic_depth}, got {self.size}")
        if self.n_train < self.batch_size:
            raise ValueError(f"n_train must hold at least one batch of {self.batch_size}, got {self.n_train}")
        if self.threads is not None:
            _check_int("threads", self.threads, 1)
        check_choice("compile", self.compile, (None, True, False))
        check_choice("amp", self.amp, ("auto", "bf16", "off"))
        _check_int("curve_every", self.curve_every, 0)
        if self.curve_every % self.log_every:
            raise ValueError(f"curve_every must be a multiple of log_every = {self.log_every} (curve points are taken "
                             f"when the engine logs), got {self.curve_every}")
        check_choice("batch_norm", self.batch_norm, (True, False))
        check_choice("cosine", self.cosine, (True, False))

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def check_split_fits(preset: Preset, fraction: float, where: str = "preset") -> None:
    """``ValueError`` unless ``floor(fraction * n_train)`` labelled images and the rest (unlabelled)
    each hold at least one batch of ``preset.batch_size``."""
    labelled = math.floor(fraction * preset.n_train)
    if min(labelled, preset.n_train - labelled) < preset.batch_size:
        raise ValueError(f"{where}: labelled_fraction {fraction!r} of n_train={preset.n_train} gives {labelled} "
                         f"labelled and {preset.n_train - labelled} unlabelled images; each part needs at least "
                         f"one batch of {preset.batch_size}")


@dataclass(frozen=True)
class Experiment:
    """Arms, regimes and presets of one comparison; ``description`` says why (quoted by notebooks).

    ``held_out_seed``: the SynthShapes seed of the held-out images (the training images of
    seed ``s`` use seed ``s``, so no seed may equal it). Checks: arm names distinct, each
    arm's regime known, each baseline an arm of the same regime and labelled fraction and not
    itself, and every labelled fraction leaves each preset a batch of labelled and of unlabelled
    images. ``primary_metrics``: the pre-registered primary family of every pair's verdicts
    (Holm-corrected together; the other metrics are secondary, see
    :mod:`segan_lib.experiments.verdicts`), a non-empty tuple of metric names.
    """

    name: str
    description: str
    arms: tuple[Arm, ...]
    presets: Mapping[str, Preset]
    regimes: Mapping[str, Regime] = field(default_factory=lambda: {"standard": Regime("clean SynthShapes")})
    held_out_seed: int = 999
    primary_metrics: tuple[str, ...] = ("dice", "boundary_f1")

    def __post_init__(self) -> None:
        if not _NAME_PART.match(str(self.name)):
            raise ValueError(f"experiment name must be letters, digits and _.+=-, got {self.name!r}")
        if not self.arms or not all(isinstance(arm, Arm) for arm in self.arms):
            raise ValueError(f"arms must be a non-empty tuple of Arm, got {self.arms!r}"[:200])
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be distinct, got {names}")
        by_name = {arm.name: arm for arm in self.arms}
        for arm in self.arms:
            if arm.regime not in self.regimes:
                raise ValueError(f"arm {arm.name!r} has regime {arm.regime!r}; regimes are {sorted(self.regimes)}")
            if arm.baseline is None:
                continue
            base = by_name.get(arm.baseline)
            if base is None or base is arm or base.regime != arm.regime:
                raise ValueError(f"baseline of arm {arm.name!r} must be another arm of regime {arm.regime!r}, "
                                 f"got {arm.baseline!r}")
            if base.labelled_fraction != arm.labelled_fraction:
                raise ValueError(f"baseline of arm {arm.name!r} must have its labelled_fraction "
                                 f"{arm.labelled_fraction!r}, got {base.name!r} with {base.labelled_fraction!r}")
        for name, preset in self.presets.items():
            check_choice("preset name", name, PRESET_NAMES)
            if not isinstance(preset, Preset):
                raise ValueError(f"presets[{name!r}] must be a Preset, got {type(preset).__name__}")
            for fraction in sorted({a.labelled_fraction for a in self.arms if a.labelled_fraction is not None}):
                check_split_fits(preset, fraction, f"preset {name!r}")
        _check_int("held_out_seed", self.held_out_seed, 0)
        primary = self.primary_metrics
        if not isinstance(primary, tuple) or not primary or not all(isinstance(m, str) and m for m in primary) \
                or len(set(primary)) != len(primary):
            raise ValueError(f"primary_metrics must be a non-empty tuple of distinct metric names, got {primary!r}")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """``(arm, its baseline)`` for every arm that has one, in the arms' order."""
        return [(arm.name, arm.baseline) for arm in self.arms if arm.baseline is not None]

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (``ValueError`` naming the arms otherwise)."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(f"arm must be one of {[a.name for a in self.arms]}, got {name!r}")

    def preset(self, name: str) -> Preset:
        """The preset called ``name`` (``ValueError`` naming the presets otherwise)."""
        check_choice("preset", name, tuple(self.presets))
        return self.presets[name]
