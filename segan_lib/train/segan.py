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

One ``train_step``: the segmentor's forward pass, ``n_critic`` critic updates (the critic
*maximises* l_mae on the detached prediction, then its weights are clipped to
``[-clip_value, clip_value]`` as in the authors' code, unless it is spectrally normalised),
then one segmentor update (the critic frozen). The segmentor loss is

    l_mae + dice_weight * soft_dice_loss(logits, y) + pixel_loss(logits, y)

where only ``l_mae`` is the paper's: the soft Dice term is what the authors' public code
adds, and ``pixel_loss`` (a name from ``segan_lib.losses.PIXEL_LOSSES``) is a further option;
both are off by default (``dice_weight=0``, ``pixel_loss=None``).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss, soft_dice_loss
from segan_lib.losses.adversarial import label_maps, mask_images, multiscale_l1_loss, segmentation_probs
from segan_lib.models.discriminators import SeganCritic
from segan_lib.train.strategy import Strategy, set_requires_grad, unwrap
from segan_lib.train.supervised import make_adam


def grad_norm(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """Detached 0-d global L2 norm of the gradients, ``sqrt(sum_p ||grad_p||^2)``, no host sync."""
    params = list(parameters)
    grads = [p.grad.detach().float() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else "cpu")
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@torch.no_grad()
def clip_weights_(net: nn.Module, clip_value: float) -> None:
    """Clamp every parameter of ``net`` to ``[-clip_value, clip_value]`` in place (WGAN / SegAN)."""
    for p in net.parameters():
        p.clamp_(-clip_value, clip_value)


def segmentor_out_channels(segmentor: nn.Module, num_classes: int) -> int:
    """K, the segmentor's logit channels: its ``n_classes`` attribute if it has one, else ``num_classes``."""
    return int(getattr(unwrap(segmentor), "n_classes", num_classes))


def frozen_view(net: nn.Module) -> nn.Module:
    """What to call for a forward pass of a *frozen* network (the critic in the segmentor step).

    ``net`` itself (so a ``torch.compile`` wrapper is used) unless a DDP wrapper is involved:
    DDP would then wait for gradients that a frozen network never produces, so the bare
    module is called instead (it is not updated in that step: nothing to synchronise).
    """
    module = net
    while hasattr(module, "_orig_mod"):
        module = module._orig_mod
    return unwrap(net) if isinstance(module, nn.parallel.DistributedDataParallel) else net


def like_images(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``x`` in the images' memory format (channels_last on CUDA under the engine)."""
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x


class SeganStrategy(Strategy):
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
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        check_positive("n_critic", n_critic)
        check_positive("dice_weight", dice_weight, allow_zero=True)
        if pixel_loss is not None:
            check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        if not spectral_norm and clip_value is not None:
            check_positive("clip_value", clip_value)
        self.lr = 1e-3 if lr is None else lr
        self.critic_lr = self.lr if critic_lr is None else critic_lr
        check_positive("lr", self.lr)
        check_positive("critic_lr", self.critic_lr)
        self.in_channels, self.num_classes, self.betas = in_channels, num_classes, betas
        self.map_channels = segmentor_out_channels(segmentor, num_classes)
        self.n_critic, self.dice_weight, self.ignore_index = n_critic, dice_weight, ignore_index
        self.clip_value = None if spectral_norm else clip_value
        self.pixel_loss_name = pixel_loss
        self.pixel_loss = None if pixel_loss is None else get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.nets["segmentor"] = segmentor
        self.nets["critic"] = SeganCritic(
            in_channels * self.map_channels,
            base_channels=critic_base_channels,
            depth=critic_depth,
            spectral_norm=spectral_norm,
            batch_norm=not spectral_norm,
        )

    def configure_optimizers(self) -> None:
        """Two Adam optimisers (fused on CUDA), one per player."""
        for name, lr in (("segmentor", self.lr), ("critic", self.critic_lr)):
            params = list(self.unwrapped(name).parameters())
            self.optimizers[name] = make_adam(params, self.device, lr=lr, betas=self.betas)

    def _features(self, critic: nn.Module, masked_true: torch.Tensor, masked_pred: torch.Tensor):
        """Critic features of both inputs in one forward pass: two lists of ``(B, C_i, H_i, W_i)``."""
        with self.autocast():
            both = critic(torch.cat([masked_true, masked_pred]))  # each (2B, C_i, H_i, W_i)
        batch = masked_true.shape[0]
        return [f[:batch] for f in both], [f[batch:] for f in both]

    def critic_step(self, masked_true: torch.Tensor, masked_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update: maximise l_mae (minimise -l_mae), then clip. ``masked_pred`` is detached here."""
        set_requires_grad(self.unwrapped("critic"), True)
        opt = self.optimizers["critic"]
        opt.zero_grad(set_to_none=True)
        real_f, fake_f = self._features(self.nets["critic"], masked_true, masked_pred.detach())
        loss_critic = -multiscale_l1_loss(real_f, fake_f)
        loss_critic.backward()
        norm = grad_norm(self.unwrapped("critic").parameters())
        opt.step()
        if self.clip_value is not None:
            clip_weights_(self.unwrapped("critic"), self.clip_value)
        return {"loss_critic": loss_critic.detach(), "grad_norm_critic": norm}

    def segmentor_step(
        self, logits: torch.Tensor, masks: torch.Tensor, masked_true: torch.Tensor, masked_pred: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One segmentor update: minimise l_mae (+ optional Dice / pixel terms); the critic is frozen.

        The frozen critic is called through :func:`frozen_view` (never through DDP).
        """
        critic = self.unwrapped("critic")
        set_requires_grad(critic, False)
        try:
            opt = self.optimizers["segmentor"]
            opt.zero_grad(set_to_none=True)
            real_f, fake_f = self._features(frozen_view(self.nets["critic"]), masked_true, masked_pred)
            l_mae = multiscale_l1_loss(real_f, fake_f)
            logs = {"l_mae": l_mae.detach()}
            loss = l_mae
            if self.dice_weight > 0:
                dice = soft_dice_loss(logits.float(), masks, ignore_index=self.ignore_index)
                loss = loss + self.dice_weight * dice
                logs["loss_dice"] = dice.detach()
            if self.pixel_loss is not None:
                pixel = self.pixel_loss(logits.float(), masks)
                loss = loss + pixel
                logs["loss_pixel"] = pixel.detach()
            loss.backward()
            logs["grad_norm_segmentor"] = grad_norm(self.unwrapped("segmentor").parameters())
            opt.step()
        finally:
            set_requires_grad(critic, True)
        logs["loss_segmentor"] = loss.detach()
        return logs

    def forward_pass(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segmentor logits ``(B, K, H, W)`` and the critic inputs ``x o y``, ``x o S(x)`` ``(B, K*C, H, W)``."""
        true_maps, valid = label_maps(masks, self.map_channels, ignore_index=self.ignore_index)  # (B, K, H, W)
        with self.autocast():
            logits = self.nets["segmentor"](images)  # (B, K, H, W)
        if logits.shape[1] != self.map_channels:
            raise ValueError(
                f"the segmentor returned {logits.shape[1]} channels, the critic was built for {self.map_channels}"
            )
        probs = segmentation_probs(logits) * valid  # (B, K, H, W), ignored pixels zeroed
        masked_true = like_images(mask_images(images.float(), true_maps), images)  # (B, K*C, H, W)
        masked_pred = like_images(mask_images(images.float(), probs), images)
        return logits, masked_true, masked_pred

    def train_step(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Segmentor forward, ``n_critic`` critic updates, one segmentor update."""
        logits, masked_true, masked_pred = self.forward_pass(images, masks)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.n_critic):
            logs.update(self.critic_step(masked_true, masked_pred))
        logs.update(self.segmentor_step(logits, masks, masked_true, masked_pred))
        logs["loss"] = logs["loss_segmentor"]
        return logs
