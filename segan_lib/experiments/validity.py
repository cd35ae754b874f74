"""Validity checks of an adversarial run: was its discriminator healthy, and did it judge shape?

A verdict on an adversarial term means something only if the term did what it is meant to:
a discriminator that tells true label maps from predicted ones *by their shape*. Two checks,
run after every adversarial run of an experiment and stored in its record:

**Health** (:func:`discriminator_health`). After a warm-up (the first tenth of the steps),
the share of logged steps at which the discriminator was *overpowered*: its accuracy on true
and predicted inputs (the mean of ``d_acc_real`` and ``d_acc_fake``) above 0.95, or its loss
below 0.05. A healthy game keeps the discriminator's BCE around 0.2-0.5 (the maintainer of
Hung et al.'s code, hfslyc/AdvSemiSeg issue 39); near 0 it has won, and its gradient tells the
segmentor little about what to change. A run is *unhealthy* when more than half of its logged
steps after warm-up are overpowered. SegAN's critic is not a classifier (it maximises a feature
distance, with clipped weights), so it has no accuracy; its health is recorded as unknown
(``None``) and the probe below is its check.

**Shortcut probe** (:func:`shortcut_probe`). A discriminator can win without looking at shape:
true label maps are one-hot (every pixel exactly 0 or 1) and predictions are soft, so "how
soft is this map?" separates them perfectly. The probe shows the trained discriminator two
kinds of map on held-out images, neither of which it saw in training:

* the segmentor's *hard* predictions (one-hot of the argmax): the segmentor's shapes, with
  the values of the truth;
* the *soft truth*: the true shapes, softened to 0.9 on the true class (0.1 shared evenly by
  the others), so its values look like a confident prediction.

A discriminator that judges shape prefers the soft truth (right shapes); one that judges
softness prefers the hard predictions (one-hot values). The run is a **shortcut run** when the
mean score of the hard predictions exceeds that of the soft truth: its adversarial term tested
softness, not shape. Scores: the discriminator's probability of "real" (sigmoid of its logit,
averaged over its outputs and images); for SegAN's critic, minus its multi-scale L1 distance
(``l_mae``) from the one-hot truth, so that higher means "closer to real" there too.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from segan_lib.losses.adversarial import encode_pair, label_maps, mask_images, multiscale_l1_loss

WARMUP_FRACTION = 0.1  # the first tenth of the steps: a discriminator learning from scratch wins easily then
OVERPOWERED_ACCURACY = 0.95  # mean of d_acc_real and d_acc_fake above this ...
OVERPOWERED_LOSS = 0.05  # ... or its loss below this: the discriminator has won that logging interval
UNHEALTHY_SHARE = 0.5  # more than half the logged steps after warm-up overpowered: an unhealthy run
SOFT_TRUTH = 0.9  # the true class's value in the softened truth (Luc et al.'s tau)
PROBE_IMAGES = 64  # held-out images the probe scores (at most)
ADVERSARIAL_METHODS = ("hybrid", "segan", "semi")


def discriminator_health(history: Mapping[str, Sequence[float]], total_steps: int) -> dict[str, object]:
    """The health record of a run from its logged ``history`` (see the module docstring).

    ``history``: ``step`` and, for a classifier discriminator, ``d_acc_real``, ``d_acc_fake`` and
    ``loss_discriminator`` (one entry per logging interval). ``total_steps``: the run's length.
    Returns ``{"after_step", "logged_steps", "overpowered_share", "healthy"}``; share and
    ``healthy`` are None for a critic without accuracy (SegAN) or when nothing was logged after warm-up.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    after = int(WARMUP_FRACTION * total_steps)
    health: dict[str, object] = {"after_step": after, "logged_steps": 0, "overpowered_share": None, "healthy": None}
    keys = ("step", "d_acc_real", "d_acc_fake", "loss_discriminator")
    if not all(key in history for key in keys):
        return health
    rows = [(acc_real, acc_fake, loss) for step, acc_real, acc_fake, loss in zip(*(history[k] for k in keys))
            if step > after]
    if not rows:
        return health
    overpowered = [0.5 * (acc_real + acc_fake) > OVERPOWERED_ACCURACY or loss < OVERPOWERED_LOSS
                   for acc_real, acc_fake, loss in rows]
    share = sum(overpowered) / len(rows)
    health.update(logged_steps=len(rows), overpowered_share=share, healthy=share <= UNHEALTHY_SHARE)
    return health


def probe_maps(logits: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's two inputs: hard predictions and soft truth, ``(B, K, H, W)`` each.

    ``logits (B, K, H, W)`` (K = 1: binary, sigmoid); ``masks (B, H, W)`` int64 without ignored
    pixels. Hard: one-hot of the argmax (K = 1: ``sigmoid > 0.5``). Soft truth: ``0.9`` on the true
    class and ``0.1 / (K - 1)`` on each other class (K = 1: 0.9 on foreground, 0.1 on background).
    """
    channels = logits.shape[1]
    truth, _ = label_maps(masks, channels, ignore_index=None)  # (B, K, H, W) one-hot
    if channels == 1:
        hard = (logits > 0).float()
        soft = truth * SOFT_TRUTH + (1 - truth) * (1 - SOFT_TRUTH)
    else:
        hard = F.one_hot(logits.argmax(1), channels).permute(0, 3, 1, 2).float()
        soft = truth * SOFT_TRUTH + (1 - truth) * (1 - SOFT_TRUTH) / (channels - 1)
    return hard, soft


@torch.no_grad()
def realness(strategy: torch.nn.Module, images: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(B,)``: how real the trained discriminator of ``strategy`` finds ``maps`` for ``images``
    (probability of "real"; SegAN: minus ``l_mae`` from the one-hot truth), in eval mode, float32."""
    name = strategy.name
    if name == "hybrid":
        scores = strategy.unwrapped("discriminator")(encode_pair(images, maps, strategy.encoding))
        return torch.sigmoid(scores.float()).flatten(1).mean(1)
    if name == "semi":
        scores = strategy.unwrapped("discriminator")(maps)  # (B, 1, H', W') confidence logits
        return torch.sigmoid(scores.float()).flatten(1).mean(1)
    if name == "segan":
        critic = strategy.unwrapped("critic")
        truth, _ = label_maps(masks, maps.shape[1], ignore_index=None)
        real, probed = critic(mask_images(images, truth)), critic(mask_images(images, maps))
        return -multiscale_l1_loss(real, probed, reduction="none").float()
    raise ValueError(f"strategy must be one of {ADVERSARIAL_METHODS}, got {name!r}")


def shortcut_probe(strategy: torch.nn.Module, held_out: object, *, n_images: int = PROBE_IMAGES,
                   batch_size: int = 32) -> dict[str, object]:
    """Score hard predictions against soft truth on the first ``n_images`` of ``held_out``
    (a dataset with ``get_batch``); see the module docstring. Leaves the nets in eval mode.

    Returns ``{"score_hard_predictions", "score_soft_truth", "shortcut", "images"}``.
    """
    if not hasattr(held_out, "get_batch"):
        raise ValueError(f"held_out must be a dataset with get_batch, got {type(held_out).__name__}")
    strategy.train(False)
    device = next(strategy.nets["segmentor"].parameters()).device
    n = min(int(n_images), len(held_out))
    hard_scores, soft_scores = [], []
    for start in range(0, n, batch_size):
        images, masks = held_out.get_batch(torch.arange(start, min(start + batch_size, n)))
        images, masks = images.to(device).float(), masks.to(device)
        with torch.no_grad():
            logits = strategy.predict_logits(images)
        hard, soft = probe_maps(logits, masks)
        hard_scores.append(realness(strategy, images, hard, masks))
        soft_scores.append(realness(strategy, images, soft, masks))
    hard_score, soft_score = torch.cat(hard_scores).mean().item(), torch.cat(soft_scores).mean().item()
    return {"score_hard_predictions": hard_score, "score_soft_truth": soft_score,
            "shortcut": hard_score > soft_score, "images": n}


def run_validity(strategy: torch.nn.Module, history: Mapping[str, Sequence[float]], total_steps: int,
                 held_out: object) -> dict[str, object] | None:
    """The validity record of one run (None for a method without a discriminator, e.g. self-training)::

        {"discriminator": "discriminator" | "critic", "health": discriminator_health(...),
         "probe": shortcut_probe(...)}
    """
    if strategy.name not in ADVERSARIAL_METHODS or not ({"discriminator", "critic"} & set(strategy.nets)):
        return None
    return {"discriminator": "critic" if strategy.name == "segan" else "discriminator",
            "health": discriminator_health(history, total_steps),
            "probe": shortcut_probe(strategy, held_out)}
