"""One training engine and the methods that run on it.

``Trainer`` + ``TrainConfig`` run any :class:`Strategy`; ``SupervisedStrategy`` is plain
pixel-loss training; ``build_strategy(method, ...)`` picks supervised, SegAN or hybrid by
name. Checkpoints are plain data (``save_checkpoint`` / ``load_checkpoint``).
"""
from segan_lib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from segan_lib.train.config import TrainConfig
from segan_lib.train.engine import Trainer
from segan_lib.train.history import History, TrainingDiverged
from segan_lib.train.methods import METHODS, build_strategy
from segan_lib.train.strategy import Strategy, set_requires_grad, unwrap
from segan_lib.train.supervised import SupervisedStrategy

__all__ = [
    "METHODS",
    "CheckpointError",
    "History",
    "Strategy",
    "SupervisedStrategy",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "build_strategy",
    "load_checkpoint",
    "save_checkpoint",
    "set_requires_grad",
    "unwrap",
]
