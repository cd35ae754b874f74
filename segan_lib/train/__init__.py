"""One training engine and the methods that run on it, one file per method.

``Trainer`` + ``TrainConfig`` (``engine.py``, ``config.py``) run any :class:`Strategy`
(``strategy.py``: the contract). Each method's ``train_step`` reads top to bottom in the file
named after it: ``supervised.py``, ``segan.py``, ``hybrid.py``, ``gan.py``; what the
two-player steps share are the small functions of ``adversarial.py`` (``frozen``, ``judge``,
``grad_norm``, ...). ``build_strategy(method, ...)`` picks a segmentation method by name
(``methods.py``). Checkpoints are plain data (``save_checkpoint`` / ``load_checkpoint``).
"""
from segan_lib.train.adversarial import set_requires_grad
from segan_lib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from segan_lib.train.config import TrainConfig
from segan_lib.train.engine import Trainer
from segan_lib.train.evaluation import evaluate_segmentation
from segan_lib.train.history import History, TrainingDiverged
from segan_lib.train.methods import METHODS, build_strategy
from segan_lib.train.strategy import Strategy, unwrap
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
    "evaluate_segmentation",
    "load_checkpoint",
    "save_checkpoint",
    "set_requires_grad",
    "unwrap",
]
