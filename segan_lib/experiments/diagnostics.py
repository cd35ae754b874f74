"""Curves to read before any verdict: what the adversarial game did to the segmentor, step by step.

A verdict says *whether* an adversarial term changed the held-out scores; these say *why*:

* :func:`gradient_ratio`: on one batch, the size of the adversarial term's gradient on the
  segmentor's logits against the pixel loss's, ``||d(lambda * L_adv)/d logits|| /
  ||d L_pixel/d logits||``. Above 1 the discriminator, not the labels, steers the segmentor.
* :func:`class_shares`: the share of pixels the segmentor gives each class on fixed images
  (the truth's shares beside them show a class being squeezed out).
* :class:`GameRecorder`: an engine callback that logs both, with the discriminator's accuracy,
  every ``every`` steps, for a plot of the whole run.

Only the hybrid method (Luc et al.) is handled by :func:`gradient_ratio`; its step is in
``segan_lib/train/hybrid.py``, whose ``forward_pass`` this reuses so the pairs are encoded the
same way as in training.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch


def gradient_ratio(strategy: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> float:
    """``||grad of lambda_adv * L_adv|| / ||grad of L_pixel||``, both on the logits ``(B, K, H, W)`` of
    ``images``, with the discriminator as it is now (eval mode for neither net: as in a training step).
    No parameter or optimiser changes. ``strategy``: a :class:`~segan_lib.train.hybrid.HybridStrategy`."""
    if getattr(strategy, "name", None) != "hybrid":
        raise ValueError(f"strategy must be a HybridStrategy, got {type(strategy).__name__}")
    saved = {name: [b.clone() for b in net.buffers()] for name, net in strategy.nets.items()}  # batch-norm stats
    logits, _, fake_pairs = strategy.forward_pass(images, masks)
    with strategy.autocast():
        scores = strategy.nets["discriminator"](fake_pairs)
    pixel = strategy.pixel_loss(logits.float(), masks)
    adversarial = strategy.lambda_adv * strategy.gan_loss.generator(scores)
    pixel_grad, = torch.autograd.grad(pixel, logits, retain_graph=True)
    adversarial_grad, = torch.autograd.grad(adversarial, logits)
    with torch.no_grad():  # the forward passes above must not move the running statistics
        for name, net in strategy.nets.items():
            for buffer, value in zip(net.buffers(), saved[name]):
                buffer.copy_(value)
    return float(adversarial_grad.norm() / pixel_grad.norm().clamp_min(1e-12))


@torch.no_grad()
def class_shares(strategy: torch.nn.Module, images: torch.Tensor) -> list[float]:
    """Share of the pixels of ``images`` that the segmentor assigns to each class (argmax; a binary
    segmentor, K = 1: sigmoid > 0.5), ``max(K, 2)`` floats summing to 1; eval mode and back."""
    segmentor = strategy.nets["segmentor"]
    was_training = segmentor.training
    segmentor.train(False)
    try:
        logits = strategy.predict_logits(images)  # (B, K, H, W); K = 1: binary, sigmoid
    finally:
        segmentor.train(was_training)
    channels = logits.shape[1]
    labels = (logits[:, 0] > 0).long() if channels == 1 else logits.argmax(1)
    counts = torch.bincount(labels.flatten(), minlength=max(channels, 2))
    return (counts.float() / labels.numel()).tolist()


def truth_shares(masks: torch.Tensor, num_classes: int) -> list[float]:
    """Share of the pixels of ``masks (B, H, W)`` in each of ``num_classes`` classes."""
    counts = torch.bincount(masks.flatten(), minlength=num_classes)[:num_classes]
    return (counts.float() / masks.numel()).tolist()


class GameRecorder:
    """Engine callback: every ``every`` steps, on the fixed batch ``(images, masks)``, record the step,
    the discriminator's accuracy (mean of ``d_acc_real`` and ``d_acc_fake`` as logged), its loss, the
    gradient ratio (hybrid only) and the class shares. ``rows``: one dict per record."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.images, self.masks, self.every = images, masks, every
        self.rows: list[dict[str, object]] = []

    def __call__(self, trainer: object, step: int, logs: Mapping[str, float]) -> None:
        if step % self.every or (self.rows and self.rows[-1]["step"] == step):
            return
        strategy = trainer.strategy
        images, masks = self.images.to(trainer.device), self.masks.to(trainer.device)
        row: dict[str, object] = {"step": step, "shares": class_shares(strategy, images)}
        if "d_acc_real" in logs:
            row["d_accuracy"] = 0.5 * (logs["d_acc_real"] + logs["d_acc_fake"])
            row["loss_discriminator"] = logs["loss_discriminator"]
        if strategy.name == "hybrid":
            row["gradient_ratio"] = gradient_ratio(strategy, images, masks)
        self.rows.append(row)

    def series(self, key: str) -> tuple[list[int], list[object]]:
        """``(steps, values)`` of ``key`` over the records that have it."""
        rows = [row for row in self.rows if key in row]
        return [row["step"] for row in rows], [row[key] for row in rows]
