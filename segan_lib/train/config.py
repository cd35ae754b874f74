"""``TrainConfig``: every setting of the training engine, with its default and meaning.

The config holds plain values only (numbers, strings, booleans, None), so it can be
printed, compared with the one stored in a checkpoint and written next to the results.
Bad values raise ``ValueError`` naming the field when the config is built.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from segan_lib._checks import check_choice
from segan_lib._files import check_writable_dir

AMP_CHOICES = ("auto", "bf16", "off")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass
class TrainConfig:
    """Settings of one training run (see :class:`segan_lib.train.Trainer`).

    Batches: one *step* consumes one global batch of ``batch_size`` samples. Under
    ``torchrun`` with ``W`` processes each process takes ``batch_size // W`` of them
    (``batch_size`` must be divisible by ``W``), so the data order, the learning-rate
    meaning and a checkpoint are the same whatever the number of processes.
    """

    epochs: int = 10  # passes over the training data
    batch_size: int = 16  # samples per optimisation step, summed over all processes
    steps_per_epoch: int | None = None  # None: len(train_data) // batch_size (last partial batch dropped)
    seed: int = 0  # seeds torch/numpy/random at the start and the per-epoch data order
    device: str = "auto"  # "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N", "mps"
    # "auto": bf16 autocast on CUDA and on CPUs with native bf16 (AMX / AVX-512 BF16), fp32
    # elsewhere; "bf16" forces it; "off": the plain fp32 path (and NCHW on the CPU)
    amp: str = "auto"
    channels_last: bool | None = None  # None: on for CUDA, and on the CPU unless amp="off" (model and 4-D inputs)
    # torch.compile every network: None: on for CUDA, off elsewhere (on a CPU, a course-sized
    # run rarely wins back the minute of compiling); True/False force it. A failed compile
    # falls back to eager mode with a warning.
    compile: bool | None = None
    log_every: int = 10  # steps between reading the losses back (and NaN checks, callbacks)
    eval_every: int = 1  # epochs between validations; 0: only after the last epoch
    checkpoint_dir: str | None = None  # where last.pt / best.pt go (must be writable); None: no checkpoints
    checkpoint_every: int = 0  # steps between checkpoints; 0: at the end of each epoch
    progress: bool = True  # a tqdm bar (on rank 0 only)
    num_workers: int = 0  # DataLoader workers for datasets without get_batch
    tensorboard_dir: str | None = None  # TensorBoard event files (rank 0; needs tensorboard); None: none

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        if self.steps_per_epoch is not None:
            _check_int("steps_per_epoch", self.steps_per_epoch, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        check_choice("amp", self.amp, AMP_CHOICES)
        check_choice("channels_last", self.channels_last, (None, True, False))
        check_choice("compile", self.compile, (None, True, False))
        _check_int("log_every", self.log_every, minimum=1)
        _check_int("eval_every", self.eval_every, minimum=0)
        _check_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_choice("progress", self.progress, (True, False))
        _check_int("num_workers", self.num_workers, minimum=0)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = str(self.checkpoint_dir)  # accept a pathlib.Path
            check_writable_dir(self.checkpoint_dir, "checkpoint_dir")  # fail now, not after training
        if self.tensorboard_dir is not None and not isinstance(self.tensorboard_dir, str):
            self.tensorboard_dir = str(self.tensorboard_dir)

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (what a checkpoint stores)."""
        return dataclasses.asdict(self)


# Fields whose change would make a resumed run differ from the run it continues.
RESUME_FIELDS = ("batch_size", "seed")


def check_resumable(stored: dict[str, object], config: TrainConfig, steps_per_epoch: int, where: str) -> None:
    """Raise ``ValueError`` if ``config`` cannot continue the run recorded in ``stored``.

    ``stored`` is ``checkpoint["train"]``; ``where`` names the checkpoint file. More
    ``epochs`` is fine (that is how a run is extended); a different batch size, seed or
    number of steps per epoch would change the data order, so it is an error.
    """
    for name in RESUME_FIELDS:
        if stored.get(name) != getattr(config, name):
            raise ValueError(
                f"checkpoint {where} was written with {name}={stored.get(name)!r}, this run has "
                f"{name}={getattr(config, name)!r}; resume with the same {name}"
            )
    if stored.get("steps_per_epoch") != steps_per_epoch:
        raise ValueError(
            f"checkpoint {where} was written with {stored.get('steps_per_epoch')!r} steps per epoch, this run "
            f"has {steps_per_epoch}; resume with the same dataset size, batch_size and steps_per_epoch"
        )
