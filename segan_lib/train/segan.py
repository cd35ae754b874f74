"""SegAN on the one training engine: a segmentor and a multi-scale critic play min-max.

Xue, Xu, Zhang, Long and Huang, "SegAN: Adversarial Network with Multi-scale L1 Loss for
Medical Image Segmentation", Neuroinformatics 16 (2018) 383-392:

    min_S max_C  l_mae = (1/L) sum_i mean | f_C^i(x o y) - f_C^i(x o S(x)) |

``x o m`` multiplies every image channel by the mask ``m`` (``mask_images``). Binary
(segmentor with K = 1 output): ``S(x) = sigmoid(logits)``, ``x o S(x)`` has C channels.
Multi-class (K >= 2): ``S(x) = softmax(logits)`` over the K classes and ``y`` is one-hot;
``x o S(x)`` stacks the C image channels masked by each class map, ``(B, K*C, H, W)``
(class-major), so the critic sees one masked image per class. Ignored pixels are zero in
both inputs.

One ``train_step`` (the game of :mod:`segan_lib.train.adversarial`): the segmentor's forward
pass, ``n_critic`` critic updates (the critic *maximises* l_mae on the detached prediction,
then its weights are clipped to ``[-clip_value, clip_value]`` as in the authors' code, unless
it is spectrally normalised), then one segmentor update (the critic frozen). The segmentor
loss is

    l_mae + dice_weight * soft_dice_loss(logits, y) + pixel_loss(logits, y)

where only ``l_mae`` is the paper's: the soft Dice term is what the authors' public code
adds, and ``pixel_loss`` (a name from ``segan_lib.losses.PIXEL_LOSSES``) is a further option;
both are off by default (``dice_weight=0``, ``pixel_loss=None``).
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss, soft_dice_loss
from segan_lib.losses.adversarial import mask_images, multiscale_l1_loss
from segan_lib.models.discriminators import SeganCritic
from segan_lib.train.adversarial import AdversarialStrategy


@torch.no_grad()
def clip_weights_(net: nn.Module, clip_value: float) -> None:
    """Clamp every parameter of ``net`` to ``[-clip_value, clip_value]`` in place (WGAN / SegAN)."""
    for p in net.parameters():
        p.clamp_(-clip_value, clip_value)


class SeganStrategy(AdversarialStrategy):
    """SegAN: nets ``"segmentor"`` and ``"critic"``, optimisers of the same names.

    Args:
        segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, K, H, W)``; K is read
            from its ``n_classes`` attribute (else ``num_classes``); K = 1 means sigmoid.
        in_channels, num_classes: image channels; label classes (2 for binary).
        lr: the segmentor's Adam rate (default 1e-3); ``critic_lr`` the critic's (default ``lr``).
        pixel_loss, dice_weight: additions to the paper's loss (off by default), see the module.
        n_critic: critic updates per segmentor update, all on the same batch.
        clip_value: critic weights clipped to ``[-clip_value, clip_value]`` after each of its
            updates (None: no clipping). spectral_norm: spectral normalisation instead of
            clipping and of the critic's batch norm (``clip_value`` is then ignored).
        critic_base_channels, critic_depth: width and number of strided layers of the critic
            (it gets ``in_channels * K`` input channels; H, W divisible by ``2**critic_depth``).
        betas: Adam betas of both players, (0.5, 0.999) as in DCGAN.

    The true and predicted masked images go through the critic as one batch of ``2B``: one
    forward pass per update (one DDP call), and batch norm sees both. Logged each step
    (detached 0-d tensors): ``loss`` (= ``loss_segmentor``, the segmentor's total),
    ``loss_critic`` (= -l_mae in the critic step), ``l_mae`` (in the segmentor step),
    ``loss_dice`` / ``loss_pixel`` when used, ``grad_norm_segmentor``, ``grad_norm_critic``.
    SegAN's critic is not a classifier, so there is no real/fake accuracy to log.
    """

    name = "segan"
    critic_name = "critic"
    critic_lr_arg = "critic_lr"

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        in_channels: int,
        num_classes: int,
        lr: float | None = None,
        pixel_loss: str | None = None,
        dice_weight: float = 0.0,
        n_critic: int = 1,
        clip_value: float | None = 0.05,
        spectral_norm: bool = False,
        critic_lr: float | None = None,
        critic_base_channels: int = 32,
        critic_depth: int = 3,
        betas: tuple[float, float] = (0.5, 0.999),
        ignore_index: int = 255,
    ) -> None:
        super().__init__(segmentor, in_channels=in_channels, num_classes=num_classes, lr=lr, critic_lr=critic_lr,
                         n_critic=n_critic, betas=betas, ignore_index=ignore_index)
        check_positive("dice_weight", dice_weight, allow_zero=True)
        if pixel_loss is not None:
            check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        if not spectral_norm and clip_value is not None:
            check_positive("clip_value", clip_value)
        self.dice_weight = dice_weight
        self.clip_value = None if spectral_norm else clip_value
        self.pixel_loss_name = pixel_loss
        self.pixel_loss = None if pixel_loss is None else get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.nets["critic"] = SeganCritic(
            in_channels * self.map_channels,
            base_channels=critic_base_channels,
            depth=critic_depth,
            spectral_norm=spectral_norm,
            batch_norm=not spectral_norm,
        )

    def encode(self, images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The masked images ``x o m`` ``(B, K*C, H, W)`` of images ``(B, C, H, W)`` and maps ``(B, K, H, W)``."""
        return mask_images(images, maps)

    def critic_loss(self, real_out: list[torch.Tensor], fake_out: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """``-l_mae`` between the critic's features of ``x o y`` and ``x o S(x)``: the critic maximises l_mae."""
        return -multiscale_l1_loss(real_out, fake_out), {}

    def after_critic_step(self) -> None:
        """Clip the critic's weights to ``[-clip_value, clip_value]`` (unless ``clip_value`` is None)."""
        if self.clip_value is not None:
            clip_weights_(self.unwrapped("critic"), self.clip_value)

    def segmentor_loss(
        self, critic: nn.Module, logits: torch.Tensor, masks: torch.Tensor,
        real_in: torch.Tensor | None, fake_in: torch.Tensor,
    ) -> tuple[torch.Tensor, dict]:
        """``l_mae`` (+ ``dice_weight`` * soft Dice, + the pixel loss when set); logs each term."""
        real_f, fake_f = self.judge(critic, real_in, fake_in)
        l_mae = multiscale_l1_loss(real_f, fake_f)
        terms = {"l_mae": l_mae.detach()}
        loss = l_mae
        if self.dice_weight > 0:
            dice = soft_dice_loss(logits.float(), masks, ignore_index=self.ignore_index)
            loss = loss + self.dice_weight * dice
            terms["loss_dice"] = dice.detach()
        if self.pixel_loss is not None:
            pixel = self.pixel_loss(logits.float(), masks)
            loss = loss + pixel
            terms["loss_pixel"] = pixel.detach()
        return loss, terms

    def critic_step(self, masked_true: torch.Tensor, masked_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update: maximise l_mae (minimise -l_mae), then clip. ``masked_pred`` is detached here."""
        return self.critic_update(masked_true, masked_pred)

    def segmentor_step(
        self, logits: torch.Tensor, masks: torch.Tensor, masked_true: torch.Tensor, masked_pred: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One segmentor update: minimise l_mae (+ optional Dice / pixel terms); the critic is frozen."""
        return self.segmentor_update(logits, masks, masked_true, masked_pred)
