"""Plain supervised segmentation: one network, one pixel loss, Adam. One step, read top to bottom.

The simplest method on the engine, and the baseline every adversarial method is compared
with: :meth:`SupervisedStrategy.train_step` sets the step's learning rate, zeroes the
gradients, runs the segmentor, takes the pixel loss, backward, Adam step. The two-player
methods (``segan.py``, ``hybrid.py``, ``gan.py``) follow the same pattern with a critic update
before the segmentor's.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from segan_lib._checks import check_positive
from segan_lib.losses import get_pixel_loss
from segan_lib.train.hardware import make_adam
from segan_lib.train.schedule import check_cosine_steps, cosine_rate, set_rate
from segan_lib.train.strategy import Strategy

PixelLossFn = Callable[[Tensor, Tensor], Tensor]


def resolve_pixel_loss(loss: str | PixelLossFn) -> PixelLossFn:
    """A pixel loss by name (``segan_lib.losses.PIXEL_LOSSES``: "ce", "dice", "focal",
    "dice_ce") or a callable ``loss(logits (B, K, H, W), masks (B, H, W)) -> 0-d tensor``."""
    if callable(loss):
        return loss
    if not isinstance(loss, str):
        raise ValueError(f"loss must be a loss name or a callable loss(logits, masks), got {type(loss).__name__}")
    return get_pixel_loss(loss)


class SupervisedStrategy(Strategy):
    """Minimise a pixel loss of the segmentor's logits against the true masks.

    One step on images ``x (B, C, H, W)`` and masks ``y (B, H, W)``::

        logits = S(x)                      # (B, K, H, W), under bf16 autocast when enabled
        loss   = pixel_loss(logits.float(), y)
        Adam step on the gradient of loss, at learning rate lr_t

    Args:
        segmentor: images ``(B, C, H, W)`` -> logits ``(B, K, H, W)``.
        loss: a name from ``segan_lib.losses.PIXEL_LOSSES`` or a callable ``loss(logits, masks)``.
        lr: Adam learning rate (> 0). weight_decay: L2 penalty added by Adam (>= 0).
        cosine_steps: None keeps ``lr_t = lr``; ``T`` anneals it over ``T`` steps,
            ``lr_t = lr * (1 + cos(pi * min(t, T) / T)) / 2`` (Loshchilov & Hutter, SGDR,
            ICLR 2017, without restarts; :mod:`~segan_lib.train.schedule`). A function of the
            step only, so a resumed run follows the same schedule.

    Logs ``{"loss": 0-d tensor}`` per step.
    """

    name = "supervised"

    def __init__(self, segmentor: nn.Module, loss: str | PixelLossFn = "dice_ce", *,
                 lr: float = 1e-3, weight_decay: float = 0.0, cosine_steps: int | None = None) -> None:
        super().__init__()
        if not isinstance(segmentor, nn.Module):
            raise ValueError(f"segmentor must be an nn.Module, got {type(segmentor).__name__}")
        check_positive("lr", lr)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_cosine_steps(cosine_steps)
        self.nets["segmentor"] = segmentor
        self.loss_fn = resolve_pixel_loss(loss)
        self.lr = lr
        self.weight_decay = weight_decay
        self.cosine_steps = cosine_steps

    def learning_rate(self, step: int) -> float:
        """``lr_t`` of step ``t`` (see the class docstring)."""
        return cosine_rate(self.lr, step, self.cosine_steps)

    def configure_optimizers(self) -> None:
        params = [p for p in self.unwrapped("segmentor").parameters() if p.requires_grad]
        self.optimizers = {"segmentor": make_adam(params, self.device, lr=self.lr, weight_decay=self.weight_decay)}

    def train_step(self, images: Tensor, masks: Tensor, step: int) -> dict[str, Tensor]:
        """One Adam step on the pixel loss (see the class docstring); logs ``loss``."""
        optimizer = self.optimizers["segmentor"]
        set_rate(optimizer, self.learning_rate(step))
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.nets["segmentor"](images)  # (B, K, H, W)
        loss = self.loss_fn(logits.float(), masks)  # the loss in float32, outside autocast
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}
