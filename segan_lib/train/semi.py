"""Semi-supervised adversarial segmentation (Hung et al., BMVC 2018) on the one training engine.

Hung, Tsai, Liou, Lin and Yang, "Adversarial Learning for Semi-Supervised Semantic
Segmentation", BMVC 2018 (arXiv 1802.07934); code hfslyc/AdvSemiSeg. A fully-convolutional
discriminator ``D`` (:class:`~segan_lib.models.ConfidenceMapDiscriminator`) looks at label maps
alone and says, per pixel, whether they come from the ground truth. Its confidence map then
picks the pixels of *unlabelled* images whose predicted label is trusted enough to train on.

One ``train_step`` on labelled images ``x (B, C, H, W)`` with masks ``y (B, H, W)`` and the
unlabelled images ``u (B_u, C, H, W)`` of this step (the strategy draws them itself), with
``S`` the segmentor's class probabilities and ``L(d, t)`` the spatial BCE of
:func:`~segan_lib.losses.spatial_bce_loss`::

    forward:        z = S_logits([x; u])                      one pass over both streams
    discriminator:  0.5 [ L(D(onehot(y)), 1) + L(D([S(x); S(u)].detach()), 0) ]
    segmentor:      CE(z_x, y) + lambda_adv L(D(S(x)), 1)
                      + lambda_adv_unlabelled L(D(S(u)), 1)
                      + lambda_semi L_semi(z_u; sigmoid(D(S(u))) > T_semi)   (from semi_start_step on)

Ignored pixels of ``y`` count in no term; they are zero in the true and in the predicted
maps of the labelled images (as in the hybrid method), and the unlabelled maps are whole.
``D`` sees the predictions of both streams as fakes, as the authors' code does (its
``--D-remain`` option, on by default); the 1/2 is their code's (Adam hardly notices a constant
factor). The update order is the library's: ``D`` first, then the segmentor against the updated
``D`` (frozen). The authors' code instead computes the segmentor's gradients with ``D``'s
weights from before this step's update and steps both at the end; it also draws the ground truth
for ``D`` from a second, independent pass over the labelled set, where this step reuses ``y``.

:meth:`SemiStrategy.train_step` is the whole step, in the order of the methods below it:

1. :meth:`~SemiStrategy.forward_pass`: this step's unlabelled images, the segmentor's logits of
   both streams and the label maps the discriminator judges;
2. ``n_critic`` times :meth:`~SemiStrategy.critic_step`: unfreeze the discriminator, zero its
   gradients, its loss on the truth and the *detached* predictions, backward, Adam step;
3. :meth:`~SemiStrategy.segmentor_step`: freeze the discriminator, zero the segmentor's
   gradients, :meth:`~SemiStrategy.segmentor_loss`, backward, Adam step, unfreeze.

``confidence="softmax"`` is plain self-training: the same ``L_semi`` with the segmentor's own
max class probability as the confidence; no discriminator is built or trained, so there is no
adversarial term (``lambda_adv`` and ``lambda_adv_unlabelled`` are not used). With
``lambda_adv = lambda_adv_unlabelled = lambda_semi = 0`` no discriminator is built and no
unlabelled image is drawn: plain supervised training on the labelled images, the baseline.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.data.split import UnlabelledImages
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss
from segan_lib.losses.adversarial import label_maps, segmentation_probs
from segan_lib.losses.semi import self_training_loss, softmax_confidence, spatial_bce_loss
from segan_lib.models.discriminators import ConfidenceMapDiscriminator
from segan_lib.train import distributed
from segan_lib.train.adversarial import (
    DEFAULT_LR, check_segmentor_channels, frozen_view, grad_norm, like_images, logit_channels, set_requires_grad,
)
from segan_lib.train.batches import epoch_permutation
from segan_lib.train.hardware import make_adam
from segan_lib.train.schedule import check_cosine_steps, cosine_rate, set_rate
from segan_lib.train.strategy import Strategy

CONFIDENCES = ("discriminator", "softmax")


def semi_warmup_steps(total_steps: int) -> int:
    """``semi_start_step`` for a run of ``total_steps``: a quarter, as Hung et al.'s 5,000 of 20,000."""
    check_positive("total_steps", total_steps)
    return total_steps // 4


def unlabelled_positions(num_samples: int, batch_size: int, *, seed: int, step: int, rank: int = 0,
                         world_size: int = 1) -> Tensor:
    """Positions (into the unlabelled set) of process ``rank``'s share of the unlabelled batch of ``step``.

    The unlabelled set is visited epoch by epoch like the labelled one
    (:mod:`segan_lib.train.batches`): with ``n = num_samples // batch_size`` batches per
    unlabelled epoch, step ``t`` takes global batch ``t mod n`` of
    ``epoch_permutation(num_samples, seed, t // n)``, and rank ``r`` of ``W`` its columns
    ``r*b .. (r+1)*b - 1``, ``b = batch_size // W``. A function of its arguments only: a resumed
    run draws the same batches with no state saved. Returns int64 ``(b,)`` on the CPU.
    """
    per_epoch = num_samples // batch_size
    if per_epoch < 1:
        raise ValueError(f"the unlabelled set has {num_samples} images, fewer than one unlabelled batch of "
                         f"{batch_size}; use more unlabelled images or a smaller unlabelled_batch_size")
    if batch_size % world_size:
        raise ValueError(f"unlabelled_batch_size={batch_size} must be divisible by the number of processes "
                         f"({world_size})")
    epoch, k = divmod(step, per_epoch)
    global_batch = epoch_permutation(num_samples, seed, epoch)[k * batch_size:(k + 1) * batch_size]
    local = batch_size // world_size
    return global_batch[rank * local:(rank + 1) * local]


def discriminator_accuracy(scores: Tensor, *, real: bool, valid: Tensor) -> Tensor:
    """Detached fraction of valid pixels ``(B, 1, H, W)`` the discriminator labels right (logit > 0: truth)."""
    right = (scores.detach() > 0) if real else (scores.detach() <= 0)
    weight = valid.float()
    return (right.float() * weight).sum() / weight.sum().clamp_min(1.0)


class SemiStrategy(Strategy):
    """Hung et al.'s method (see the module docstring): nets and optimisers ``"segmentor"`` and,
    unless ``confidence="softmax"`` or every weight is 0, ``"discriminator"``.

    Defaults are the authors' for PASCAL VOC (their README's command, "Table 5" of the paper,
    and ``train.py``): ``lambda_adv=0.01`` (labelled images), ``lambda_adv_unlabelled=0.001``
    (``LAMBDA_SEMI_ADV``), ``lambda_semi=0.1``, ``t_semi=0.2`` (``--mask-T``) and ``L_semi``
    from step 5,000 of 20,000 (pass :func:`semi_warmup_steps` of the run's length as
    ``semi_start_step``); the discriminator's Adam at ``critic_lr=1e-4``, betas (0.9, 0.99).
    The authors train DeepLab-v2 (pretrained ResNet-101) with SGD at 2.5e-4, momentum 0.9 and
    polynomial decay, and decay ``D``'s rate too; the course trains a small U-Net from scratch,
    which Adam (default 1e-3, betas (0.9, 0.999)) trains in far fewer steps, and every arm and
    method of the course uses that same optimiser, so comparisons stay fair. ``cosine_steps``
    anneals both rates to 0 with a cosine (:mod:`~segan_lib.train.schedule`), as the paper's
    polynomial decay anneals both; None keeps them constant.

    Args:
        segmentor: images ``(B, C, H, W)`` -> logits ``(B, K, H, W)``; K from its ``num_classes``
            attribute (else ``num_classes``); K = 1 means sigmoid.
        in_channels: image channels (accepted for ``build_strategy``; ``D`` sees label maps only).
        num_classes: label classes (2 for binary).
        unlabelled: the unlabelled images (:func:`segan_lib.data.split_labelled`); None only for
            the supervised baseline (all three weights 0).
        semi_start_step: first step with ``L_semi`` in the segmentor's loss.
        lr: the segmentor's Adam rate; pixel_loss: the labelled term (Hung et al.: "ce").
        lambda_adv, lambda_adv_unlabelled, lambda_semi, t_semi: the weights and threshold above.
        confidence: "discriminator" (Hung et al.) or "softmax" (self-training without ``D``).
        n_critic: discriminator updates per step (1 as the authors); critic_lr: its Adam rate.
        cosine_steps: None keeps both rates; ``T`` anneals both to 0 over ``T`` steps.
        critic_base_channels, critic_depth: ``D``'s width and strided layers (64, 4: the paper's;
            images must be at least ``2**(critic_depth+1)`` pixels on a side).
        unlabelled_batch_size: global unlabelled batch (None: the labelled global batch, as the
            authors). seed: seeds the order of the unlabelled batches.
        ignore_index: mask value of pixels that count nowhere.

    Logs per step (detached 0-d tensors): ``loss`` (= ``loss_segmentor``), ``loss_pixel``,
    ``loss_semi`` (also before ``semi_start_step``, when it is not yet trained on) and
    ``semi_pass_fraction`` (the share of unlabelled pixels whose confidence exceeds ``t_semi``)
    when unlabelled images are used; with a discriminator also ``loss_adv``,
    ``loss_adv_unlabelled``, ``loss_discriminator``, ``d_acc_real``, ``d_acc_fake``,
    ``grad_norm_discriminator``; and ``grad_norm_segmentor``.
    """

    name = "semi"

    def __init__(
        self, segmentor: nn.Module, *, in_channels: int, num_classes: int, unlabelled: UnlabelledImages | None,
        semi_start_step: int, lr: float | None = None, pixel_loss: str = "ce", lambda_adv: float = 0.01,
        lambda_adv_unlabelled: float = 0.001, lambda_semi: float = 0.1, t_semi: float = 0.2,
        confidence: str = "discriminator", n_critic: int = 1, critic_lr: float = 1e-4,
        critic_base_channels: int = 64, critic_depth: int = 4, unlabelled_batch_size: int | None = None,
        seed: int = 0, ignore_index: int = 255, cosine_steps: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(segmentor, nn.Module):
            raise ValueError(f"segmentor must be an nn.Module, got {type(segmentor).__name__}")
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        self.lr = DEFAULT_LR if lr is None else lr
        check_positive("lr", self.lr)
        check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        for name, value in (("lambda_adv", lambda_adv), ("lambda_adv_unlabelled", lambda_adv_unlabelled),
                            ("lambda_semi", lambda_semi), ("semi_start_step", semi_start_step), ("seed", seed)):
            check_positive(name, value, allow_zero=True)
        check_positive("t_semi", t_semi, allow_zero=True)
        check_choice("confidence", confidence, CONFIDENCES)
        check_positive("n_critic", n_critic)
        check_positive("critic_lr", critic_lr)
        check_cosine_steps(cosine_steps)
        self.cosine_steps = cosine_steps
        if unlabelled_batch_size is not None:
            check_positive("unlabelled_batch_size", unlabelled_batch_size)
        if confidence == "softmax":  # no discriminator: nothing to be adversarial against
            lambda_adv = lambda_adv_unlabelled = 0.0
        self.lambda_adv, self.lambda_adv_unlabelled, self.lambda_semi = lambda_adv, lambda_adv_unlabelled, lambda_semi
        self.t_semi, self.semi_start_step, self.confidence = float(t_semi), int(semi_start_step), confidence
        self.n_critic, self.critic_lr, self.ignore_index = n_critic, critic_lr, ignore_index
        self.unlabelled_batch_size, self.seed = unlabelled_batch_size, seed
        self.pixel_loss = get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.map_channels = logit_channels(segmentor, num_classes)  # K
        self.nets["segmentor"] = segmentor
        if confidence == "discriminator" and (lambda_adv > 0 or lambda_adv_unlabelled > 0 or lambda_semi > 0):
            self.nets["discriminator"] = ConfidenceMapDiscriminator(
                self.map_channels, base_channels=critic_base_channels, depth=critic_depth)
        self.uses_unlabelled = lambda_adv_unlabelled > 0 or lambda_semi > 0 or "discriminator" in self.nets
        if self.uses_unlabelled and not isinstance(unlabelled, UnlabelledImages):
            raise ValueError("unlabelled must be the UnlabelledImages of segan_lib.data.split_labelled when a term "
                             f"uses unlabelled images, got {type(unlabelled).__name__}")
        self.unlabelled = unlabelled if self.uses_unlabelled else None

    def configure_optimizers(self) -> None:
        """Adam (fused on CUDA) for the segmentor, and the authors' Adam for the discriminator."""
        self.optimizers["segmentor"] = make_adam(list(self.unwrapped("segmentor").parameters()), self.device, lr=self.lr)
        if "discriminator" in self.nets:
            self.optimizers["discriminator"] = make_adam(list(self.unwrapped("discriminator").parameters()),
                                                         self.device, lr=self.critic_lr, betas=(0.9, 0.99))

    def unlabelled_images(self, step: int, images: Tensor) -> Tensor:
        """This process's unlabelled images ``(B_u / W, C, H, W)`` of ``step``, on ``images``' device and layout."""
        context = distributed.current_context()
        batch_size = self.unlabelled_batch_size or images.shape[0] * context.world_size
        positions = unlabelled_positions(len(self.unlabelled), batch_size, seed=self.seed, step=step,
                                         rank=context.rank, world_size=context.world_size)
        batch = self.unlabelled.images(positions).to(images.device, dtype=images.dtype, non_blocking=True)
        return like_images(batch, images)

    def check_batch(self, images: Tensor, masks: Tensor) -> None:
        """The segmentor's input check; the unlabelled images' shape against the labelled ones';
        the segmentor's output channels and the discriminator's input size."""
        super().check_batch(images, masks)
        if self.unlabelled is not None:
            first = self.unlabelled.images(torch.zeros(1, dtype=torch.long))  # (1, C, H, W)
            if first.shape[1:] != images.shape[1:]:
                raise ValueError(f"unlabelled images must have the labelled images' shape (C, H, W) = "
                                 f"{tuple(images.shape[1:])}, got {tuple(first.shape[1:])}")
        if "discriminator" in self.nets:
            check_segmentor_channels(self.segmentor, images, self.map_channels, "discriminator")
            b, _, h, w = images.shape
            self.unwrapped("discriminator").check_input(torch.empty(b, self.map_channels, h, w, device="meta"))

    # ------------------------------------------------------------------ one step
    def train_step(self, images: Tensor, masks: Tensor, step: int) -> dict[str, Tensor]:
        """Forward, ``n_critic`` discriminator updates, one segmentor update (see the module docstring)."""
        # this step's rates: the base rates, or their cosine anneal over cosine_steps (schedule.py)
        set_rate(self.optimizers["segmentor"], cosine_rate(self.lr, step, self.cosine_steps))
        if "discriminator" in self.nets:
            set_rate(self.optimizers["discriminator"], cosine_rate(self.critic_lr, step, self.cosine_steps))
        logits, logits_u, true_maps, maps, valid = self.forward_pass(images, masks, step)
        logs: dict[str, Tensor] = {}
        if "discriminator" in self.nets:
            for _ in range(self.n_critic):
                logs.update(self.critic_step(true_maps, maps, valid))
        logs.update(self.segmentor_step(logits, logits_u, masks, maps, valid, step))
        logs["loss"] = logs["loss_segmentor"]
        return logs

    def forward_pass(self, images: Tensor, masks: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The segmentor on the labelled images and this step's unlabelled ones, in one pass (one DDP call).

        Returns logits ``(B, K, H, W)`` and ``(B_u, K, H, W)`` (``B_u = 0`` when no term uses
        unlabelled images), the true maps ``(B, K, H, W)``, the predicted maps of both streams
        ``(B + B_u, K, H, W)`` (labelled ones zero at ignored pixels) and their valid pixels
        ``(B + B_u, 1, H, W)`` (the first ``B`` also those of the true maps).
        """
        batch = images.shape[0]
        unlabelled = self.unlabelled_images(step, images) if self.uses_unlabelled else images[:0]  # (B_u, C, H, W)
        with self.autocast():
            all_logits = self.nets["segmentor"](torch.cat([images, unlabelled]))  # (B + B_u, K, H, W)
        logits, logits_u = all_logits.float().split([batch, unlabelled.shape[0]])
        true_maps, valid = label_maps(masks, self.map_channels, ignore_index=self.ignore_index)  # (B, K / 1, H, W)
        maps = torch.cat([segmentation_probs(logits) * valid, segmentation_probs(logits_u)])  # (B + B_u, K, H, W)
        valid = torch.cat([valid, torch.ones_like(maps[batch:, :1])])  # (B + B_u, 1, H, W): all unlabelled count
        return logits, logits_u, true_maps, maps, valid

    def critic_step(self, true_maps: Tensor, maps: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """One discriminator update: one-hot truth -> 1, both streams' *detached* predictions -> 0."""
        discriminator, optimizer = self.unwrapped("discriminator"), self.optimizers["discriminator"]
        set_requires_grad(discriminator, True)
        optimizer.zero_grad(set_to_none=True)
        batch = true_maps.shape[0]
        with self.autocast():  # truth and predictions as one batch: one forward pass, one DDP call
            scores = self.nets["discriminator"](torch.cat([true_maps, maps.detach()])).float()  # (2B + B_u, 1, H, W)
        real_scores, fake_scores = scores.split([batch, maps.shape[0]])
        loss = 0.5 * (spatial_bce_loss(real_scores, 1.0, valid=valid[:batch])
                      + spatial_bce_loss(fake_scores, 0.0, valid=valid))
        loss.backward()  # no gradient reaches the segmentor: its predictions are detached
        norm = grad_norm(discriminator.parameters())
        optimizer.step()
        return {"loss_discriminator": loss.detach(),
                "d_acc_real": discriminator_accuracy(real_scores, real=True, valid=valid[:batch]),
                "d_acc_fake": discriminator_accuracy(fake_scores, real=False, valid=valid),
                "grad_norm_discriminator": norm}

    def segmentor_step(self, logits: Tensor, logits_u: Tensor, masks: Tensor, maps: Tensor, valid: Tensor,
                       step: int) -> dict[str, Tensor]:
        """One segmentor update on :meth:`segmentor_loss`, the discriminator (if any) frozen meanwhile."""
        optimizer = self.optimizers["segmentor"]
        discriminator = self.unwrapped("discriminator") if "discriminator" in self.nets else None
        if discriminator is not None:
            set_requires_grad(discriminator, False)  # gradients flow through it to the maps, not into it
        try:
            optimizer.zero_grad(set_to_none=True)
            loss, logs = self.segmentor_loss(logits, logits_u, masks, maps, valid, step)
            loss.backward()
            norm = grad_norm(self.unwrapped("segmentor").parameters())
            optimizer.step()
        finally:
            if discriminator is not None:
                set_requires_grad(discriminator, True)
        return {"loss_segmentor": loss.detach(), **logs, "grad_norm_segmentor": norm}

    def segmentor_loss(self, logits: Tensor, logits_u: Tensor, masks: Tensor, maps: Tensor, valid: Tensor,
                       step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``pixel_loss(z_x, y) + lambda_adv L(D(S(x)), 1) + lambda_adv_unlabelled L(D(S(u)), 1)
        [+ lambda_semi L_semi(z_u)]`` and its detached terms; ``L_semi`` joins from ``semi_start_step``."""
        loss_pixel = self.pixel_loss(logits, masks)
        loss, logs = loss_pixel, {"loss_pixel": loss_pixel.detach()}
        if "discriminator" in self.nets:
            batch = logits.shape[0]
            with self.autocast():
                scores = frozen_view(self.nets["discriminator"])(maps).float()  # (B + B_u, 1, H, W)
            loss_adv = spatial_bce_loss(scores[:batch], 1.0, valid=valid[:batch])
            loss_adv_u = spatial_bce_loss(scores[batch:], 1.0)
            loss = loss + self.lambda_adv * loss_adv + self.lambda_adv_unlabelled * loss_adv_u
            logs.update(loss_adv=loss_adv.detach(), loss_adv_unlabelled=loss_adv_u.detach())
            confidence = torch.sigmoid(scores[batch:].detach())[:, 0]  # (B_u, H, W)
        elif self.uses_unlabelled:
            confidence = softmax_confidence(logits_u)  # (B_u, H, W)
        if self.uses_unlabelled:
            loss_semi = self_training_loss(logits_u, confidence, self.t_semi)
            if step >= self.semi_start_step and self.lambda_semi > 0:
                loss = loss + self.lambda_semi * loss_semi
            logs.update(loss_semi=loss_semi.detach(), semi_pass_fraction=(confidence > self.t_semi).float().mean())
        return loss, logs

    # The split travels with the checkpoint: a run resumed on other unlabelled images is refused.
    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.unlabelled is not None:
            state["split"] = {"unlabelled_indices": self.unlabelled.indices.clone(),
                              "num_samples": len(self.unlabelled.dataset)}
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.unlabelled is not None:
            stored = state.get("split")
            if stored is None or stored["num_samples"] != len(self.unlabelled.dataset) or not torch.equal(
                    stored["unlabelled_indices"], self.unlabelled.indices):
                described = "no split" if stored is None else (
                    f"{len(stored['unlabelled_indices'])} unlabelled of {stored['num_samples']} samples")
                raise ValueError(
                    f"the checkpoint was written with another labelled/unlabelled split ({described}; this run has "
                    f"{len(self.unlabelled)} unlabelled of {len(self.unlabelled.dataset)}); resume with the same "
                    "dataset, labelled fraction or count, and seed")
        super().load_state_dict(state)
