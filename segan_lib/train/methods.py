"""Training methods by name: what ``segan train --method NAME`` builds.

* ``supervised``: :class:`~segan_lib.train.supervised.SupervisedStrategy` (pixel loss only).
* ``segan``: :class:`~segan_lib.train.segan.SeganStrategy`, segmentor + critic with the
  multi-scale L1 loss of Xue et al. (Neuroinformatics, 2018).
* ``hybrid``: :class:`~segan_lib.train.hybrid.HybridStrategy`, pixel loss + adversarial term
  of Luc et al. (arXiv 1611.08408, NeurIPS 2016 workshop).
* ``semi``: :class:`~segan_lib.train.semi.SemiStrategy`, semi-supervised adversarial training
  of Hung et al. (BMVC 2018); needs ``unlabelled`` and ``semi_start_step`` in ``options``.

A new segmentation method is one file with its strategy class (copy ``segan.py``) and one
line in :data:`STRATEGIES`; its constructor takes ``segmentor, *, in_channels, num_classes,
lr, pixel_loss`` and its own options.
"""
from __future__ import annotations

from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.train.hybrid import HybridStrategy
from segan_lib.train.semi import SemiStrategy
from segan_lib.train.segan import SeganStrategy
from segan_lib.train.strategy import Strategy
from segan_lib.train.supervised import SupervisedStrategy

# name -> strategy class; "supervised" has its own constructor (a loss, no critic).
STRATEGIES: dict[str, type[Strategy]] = {
    "supervised": SupervisedStrategy,
    "segan": SeganStrategy,
    "hybrid": HybridStrategy,
    "semi": SemiStrategy,
}
METHODS: tuple[str, ...] = tuple(STRATEGIES)
DEFAULT_SUPERVISED_LR = 1e-3


def build_strategy(method: str, segmentor: nn.Module, *, in_channels: int, num_classes: int,
                   lr: float | None = None, loss: str = "dice_ce", **options: object) -> Strategy:
    """The strategy of ``method`` (one of :data:`METHODS`) around ``segmentor``.

    Args:
        segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, K, H, W)``.
        in_channels: image channels (the adversarial methods size their critic with it).
        num_classes: label classes (2 for a binary sigmoid segmentor).
        lr: learning rate; None takes the method's default (1e-3 for every method today).
        loss: pixel loss name (``segan_lib.losses.PIXEL_LOSSES``), the whole loss for
            ``supervised`` and the pixel term for ``segan`` / ``hybrid`` / ``semi``.
        options: further keyword arguments of the method's strategy class, e.g.
            ``cosine_steps`` of :class:`SupervisedStrategy`, ``n_critic`` or ``critic_lr``
            of the adversarial ones, ``lambda_adv`` of :class:`HybridStrategy`.
    """
    check_choice("method", method, METHODS)
    check_positive("in_channels", in_channels)
    check_positive("num_classes", num_classes)
    if lr is not None:
        check_positive("lr", lr)
    if method == "supervised":
        return SupervisedStrategy(segmentor, loss, lr=DEFAULT_SUPERVISED_LR if lr is None else lr, **options)
    return STRATEGIES[method](segmentor, in_channels=in_channels, num_classes=num_classes, lr=lr, pixel_loss=loss,
                              **options)
