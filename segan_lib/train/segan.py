"""SegAN: a segmentor and a multi-scale critic play min-max. One step, read top to bottom.

Xue, Xu, Zhang, Long and Huang, "SegAN: Adversarial Network with Multi-scale L1 Loss for
Medical Image Segmentation", Neuroinformatics 16 (2018) 383-392:

    min_S max_C  l_mae = (1/L) sum_i mean | f_C^i(x o y) - f_C^i(x o S(x)) |

``x o m`` multiplies every image channel by the mask ``m`` (``mask_images``). Binary
(segmentor with K = 1 output): ``S(x) = sigmoid(logits)``, ``x o S(x)`` has C channels.
Multi-class (K >= 2): ``S(x) = softmax(logits)`` over the K classes and ``y`` is one-hot;
``x o S(x)`` stacks the C image channels masked by each class map, ``(B, K*C, H, W)``
(class-major), so the critic sees one masked image per class. Ignored pixels are zero in
both inputs.

:meth:`SeganStrategy.train_step` is the whole step, in the order of the methods below it:

1. :meth:`~SeganStrategy.forward_pass`: the segmentor's logits and both masked images;
2. ``n_critic`` times :meth:`~SeganStrategy.critic_step`: unfreeze the critic, zero its
   gradients, ``loss = -l_mae`` on the *detached* prediction (the critic maximises l_mae),
   backward, Adam step, clip its weights to ``[-clip_value, clip_value]`` (unless it is
   spectrally normalised). The clip, and its value 0.05, come from the authors' public code
   (github.com/YuanXue1993/SegAN, ``train.py``: ``p.data.clamp_(-0.05, 0.05)``), as in WGAN
   (Arjovsky et al., ICML 2017); we did not find them in the paper's text. With the critic's
   batch norm the clip does not bound its Lipschitz constant: batch norm divides each
   channel by its batch standard deviation, so the scale of the weights before it cancels,
   and the clip bounds only the first layer and batch norm's own scale and shift;
3. :meth:`~SeganStrategy.segmentor_step`: freeze the critic, ``loss = mae_weight * l_mae +
   dice_weight * soft_dice_loss(logits, y) + pixel_loss(logits, y)``, backward, Adam step,
   unfreeze.

Only ``l_mae`` is the paper's: the soft Dice term is what the authors' public code adds, and
``pixel_loss`` (a name from ``segan_lib.losses.PIXEL_LOSSES``) is a further option; both are
off by default (``dice_weight=0``, ``pixel_loss=None``). The engine (``engine.py``) runs the
loop, devices, autocast, compile, DDP, checkpoints and logging around it.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss, soft_dice_loss
from segan_lib.losses.adversarial import label_maps, mask_images, multiscale_l1_loss, segmentation_probs
from segan_lib.models.discriminators import SeganCritic
from segan_lib.train.adversarial import (
    DEFAULT_LR, check_segmentor_channels, frozen, grad_norm, judge, like_images, logit_channels,
    set_requires_grad,
)
from segan_lib.train.hardware import make_adam
from segan_lib.train.schedule import check_cosine_steps, cosine_rate, set_rate
from segan_lib.train.strategy import Strategy


@torch.no_grad()
def clip_weights_(net: nn.Module, clip_value: float) -> None:
    """Clamp every parameter of ``net`` to ``[-clip_value, clip_value]`` in place (WGAN; SegAN's public code)."""
    for p in net.parameters():
        p.clamp_(-clip_value, clip_value)


class SeganStrategy(Strategy):
    """SegAN: nets ``"segmentor"`` and ``"critic"``, optimisers of the same names.

    Args:
        segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, K, H, W)``; K is read
            from its ``num_classes`` attribute (else ``num_classes``); K = 1 means sigmoid.
        in_channels, num_classes: image channels; label classes (2 for binary).
        lr: the segmentor's Adam rate (default 1e-3); ``critic_lr`` the critic's (default ``lr``).
            cosine_steps: None keeps both rates; ``T`` anneals both to 0 over ``T`` steps with a
            cosine (:mod:`~segan_lib.train.schedule`).
        pixel_loss, dice_weight: additions to the paper's loss (off by default), see the module.
        mae_weight: the weight of ``l_mae`` in the segmentor's loss (1, the paper's loss; an
            experiment that adds l_mae to a pixel loss at several weights sets it).
        n_critic: critic updates per segmentor update, all on the same batch.
        clip_value: critic weights clipped to ``[-clip_value, clip_value]`` after each of its
            updates, 0.05 as in the authors' public code (None: no clipping). It caps the size
            of the weights, not the critic's Lipschitz constant: batch norm cancels the scale
            of the convolutions before it (see the module docstring). spectral_norm: spectral
            normalisation instead of clipping and of the critic's batch norm (``clip_value`` is
            then ignored).
        critic_base_channels, critic_depth: width and number of strided layers of the critic
            (it gets ``in_channels * K`` input channels; H, W divisible by ``2**critic_depth``).
        betas: Adam betas of both players, (0.5, 0.999) as in DCGAN (Radford et al., ICLR 2016);
            ``critic_betas`` the critic's if they differ (default ``betas``).
        ignore_index: mask value of pixels that count nowhere (zero in both masked images).

    Logged each step (detached 0-d tensors): ``loss`` (= ``loss_segmentor``, the segmentor's
    total), ``loss_critic`` (= -l_mae in the critic step), ``l_mae`` (in the segmentor step),
    ``loss_dice`` / ``loss_pixel`` when used, ``grad_norm_segmentor``, ``grad_norm_critic``.
    SegAN's critic is not a classifier, so there is no real/fake accuracy to log.
    """

    name = "segan"

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        in_channels: int,
        num_classes: int,
        lr: float | None = None,
        pixel_loss: str | None = None,
        dice_weight: float = 0.0,
        mae_weight: float = 1.0,
        n_critic: int = 1,
        clip_value: float | None = 0.05,
        spectral_norm: bool = False,
        critic_lr: float | None = None,
        cosine_steps: int | None = None,
        critic_base_channels: int = 32,
        critic_depth: int = 3,
        betas: tuple[float, float] = (0.5, 0.999),
        critic_betas: tuple[float, float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if not isinstance(segmentor, nn.Module):
            raise ValueError(f"segmentor must be an nn.Module, got {type(segmentor).__name__}")
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        check_positive("n_critic", n_critic)
        self.lr = DEFAULT_LR if lr is None else lr
        self.critic_lr = self.lr if critic_lr is None else critic_lr
        check_positive("lr", self.lr)
        check_positive("critic_lr", self.critic_lr)
        check_cosine_steps(cosine_steps)
        self.cosine_steps = cosine_steps
        check_positive("dice_weight", dice_weight, allow_zero=True)
        check_positive("mae_weight", mae_weight)
        if pixel_loss is not None:
            check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        if not spectral_norm and clip_value is not None:
            check_positive("clip_value", clip_value)
        self.in_channels, self.num_classes, self.betas = in_channels, num_classes, betas
        self.critic_betas, self.mae_weight = betas if critic_betas is None else critic_betas, mae_weight
        self.n_critic, self.ignore_index, self.dice_weight = n_critic, ignore_index, dice_weight
        self.clip_value = None if spectral_norm else clip_value
        self.pixel_loss = None if pixel_loss is None else get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.map_channels = logit_channels(segmentor, num_classes)  # K
        self.nets["segmentor"] = segmentor
        self.nets["critic"] = SeganCritic(
            in_channels * self.map_channels,
            base_channels=critic_base_channels,
            depth=critic_depth,
            spectral_norm=spectral_norm,
            batch_norm=not spectral_norm,
        )

    def configure_optimizers(self) -> None:
        """One Adam per player (fused on CUDA)."""
        for name, lr, betas in (("segmentor", self.lr, self.betas), ("critic", self.critic_lr, self.critic_betas)):
            self.optimizers[name] = make_adam(list(self.unwrapped(name).parameters()), self.device, lr=lr,
                                              betas=betas)

    def check_batch(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        """The segmentor's input check and output channels, and the critic's on the shape of a masked image batch."""
        super().check_batch(images, masks)
        check_segmentor_channels(self.segmentor, images, self.map_channels, "critic")
        b, c, h, w = images.shape
        self.unwrapped("critic").check_input(torch.empty(b, c * self.map_channels, h, w, device="meta"))

    # ------------------------------------------------------------------ one step
    def train_step(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Forward, ``n_critic`` critic updates, one segmentor update (see the module docstring)."""
        # this step's rates: the base rates, or their cosine anneal over cosine_steps (schedule.py)
        set_rate(self.optimizers["segmentor"], cosine_rate(self.lr, step, self.cosine_steps))
        set_rate(self.optimizers["critic"], cosine_rate(self.critic_lr, step, self.cosine_steps))
        logits, masked_true, masked_pred = self.forward_pass(images, masks)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.n_critic):
            logs.update(self.critic_step(masked_true, masked_pred))
        logs.update(self.segmentor_step(logits, masks, masked_true, masked_pred))
        logs["loss"] = logs["loss_segmentor"]
        return logs

    def forward_pass(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)`` and the masked images ``x o y`` and ``x o S(x)``, ``(B, K*C, H, W)``."""
        true_maps, valid = label_maps(masks, self.map_channels, ignore_index=self.ignore_index)  # (B, K, H, W)
        with self.autocast():
            logits = self.nets["segmentor"](images)  # (B, K, H, W)
        probs = segmentation_probs(logits) * valid  # (B, K, H, W), ignored pixels zeroed
        masked_true = like_images(mask_images(images.float(), true_maps), images)  # (B, K*C, H, W)
        masked_pred = like_images(mask_images(images.float(), probs), images)
        return logits, masked_true, masked_pred

    def critic_step(self, masked_true: torch.Tensor, masked_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update: maximise l_mae (minimise -l_mae) on the detached prediction, then clip."""
        critic, optimizer = self.unwrapped("critic"), self.optimizers["critic"]
        set_requires_grad(critic, True)
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            real_features, fake_features = judge(self.nets["critic"], masked_true, masked_pred.detach())
        loss = -multiscale_l1_loss(real_features, fake_features)
        loss.backward()  # no gradient reaches the segmentor: its prediction is detached
        norm = grad_norm(critic.parameters())
        optimizer.step()
        if self.clip_value is not None:  # keep the critic Lipschitz-bounded
            clip_weights_(critic, self.clip_value)
        return {"loss_critic": loss.detach(), "grad_norm_critic": norm}

    def segmentor_step(
        self, logits: torch.Tensor, masks: torch.Tensor, masked_true: torch.Tensor, masked_pred: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One segmentor update: minimise l_mae (+ the Dice / pixel terms when on), the critic frozen."""
        optimizer = self.optimizers["segmentor"]
        with frozen(self.nets["critic"]) as critic:  # gradients flow through it, not into it
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                real_features, fake_features = judge(critic, masked_true, masked_pred)
            l_mae = multiscale_l1_loss(real_features, fake_features)
            loss, terms = self.mae_weight * l_mae, {"l_mae": l_mae.detach()}
            if self.dice_weight > 0:
                dice = soft_dice_loss(logits.float(), masks, ignore_index=self.ignore_index)
                loss = loss + self.dice_weight * dice
                terms["loss_dice"] = dice.detach()
            if self.pixel_loss is not None:
                pixel = self.pixel_loss(logits.float(), masks)
                loss = loss + pixel
                terms["loss_pixel"] = pixel.detach()
            loss.backward()
            norm = grad_norm(self.unwrapped("segmentor").parameters())
            optimizer.step()
        return {"loss_segmentor": loss.detach(), **terms, "grad_norm_segmentor": norm}
