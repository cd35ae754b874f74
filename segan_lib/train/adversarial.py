"""What SegAN and the hybrid loss share: a segmentor and a critic taking turns on the engine.

Both methods judge label maps with a second network, the *critic* (SegAN's name; Luc et al.
say *discriminator*). The critic sees the image combined with a label map: the ground truth
``y`` (one-hot ``(B, K, H, W)``, zero at ignored pixels) or the segmentor's class
probabilities ``S(x)`` (sigmoid for K = 1, softmax over K >= 2, zero at ignored pixels).
:class:`AdversarialStrategy` holds everything but the losses and that combination:

* Xue, Xu, Zhang, Long and Huang, "SegAN: Adversarial Network with Multi-scale L1 Loss for
  Medical Image Segmentation", Neuroinformatics 16 (2018) 383-392
  (:class:`~segan_lib.train.segan.SeganStrategy`);
* Luc, Couprie, Chintala and Verbeek, "Semantic Segmentation using Adversarial Networks",
  NeurIPS 2016 Workshop on Adversarial Training, arXiv 1611.08408
  (:class:`~segan_lib.train.hybrid.HybridStrategy`).

One ``train_step`` on images ``x (B, C, H, W)`` and masks ``y (B, H, W)``, in the order of
Goodfellow et al.'s alternating updates (NeurIPS 2014)::

    logits = S(x)                                      # (B, K, H, W), one forward pass
    real_in, fake_in = encode(x, y), encode(x, S(x))   # (B, C_in, H, W) each
    n_critic times: critic update on (real_in, fake_in.detach())   -> critic_loss
    once, the critic frozen: segmentor update                       -> segmentor_loss

Each player has its own Adam optimiser (fused on CUDA), betas (0.5, 0.999) by default as in
DCGAN (Radford et al., ICLR 2016). Logs are detached 0-d tensors (no host sync), per player
``loss_<player>``, the method's terms, ``grad_norm_<player>``, and ``loss`` (the
segmentor's). Checkpoints hold nets and optimisers ``"segmentor"`` and ``critic_name``.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from segan_lib._checks import check_positive
from segan_lib.losses.adversarial import label_maps, segmentation_probs
from segan_lib.train.strategy import Strategy, frozen_view, set_requires_grad, unwrap
from segan_lib.train.hardware import make_adam

DEFAULT_LR = 1e-3
CriticOutput = torch.Tensor | list[torch.Tensor]  # scores, or a list of feature maps (SegAN)


def grad_norm(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """Detached 0-d global L2 norm of the gradients, ``sqrt(sum_p ||grad_p||^2)``, no host sync."""
    params = list(parameters)
    grads = [p.grad.detach().float() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else "cpu")
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def segmentor_out_channels(segmentor: nn.Module, num_classes: int) -> int:
    """K, the segmentor's logit channels: its ``n_classes`` attribute if it has one, else ``num_classes``."""
    return int(getattr(unwrap(segmentor), "n_classes", num_classes))


def like_images(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``x`` in the images' memory format (channels_last on CUDA under the engine)."""
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x


class AdversarialStrategy(Strategy):
    """A segmentor and a critic playing the game of the module docstring.

    A method subclasses it, builds its critic into ``self.nets[self.critic_name]`` after
    ``super().__init__`` and defines:

    * ``encode(images, maps)``: the critic's input ``(B, C_in, H, W)`` from images
      ``(B, C, H, W)`` and label maps ``(B, K, H, W)``;
    * ``critic_loss(real_out, fake_out) -> (loss, terms)``: the critic's objective;
    * ``segmentor_loss(critic, logits, masks, real_in, fake_in) -> (loss, terms)``: the
      segmentor's, with ``critic`` the frozen network to call;
    * optionally ``after_critic_step()`` (SegAN clips the critic's weights there).

    ``terms`` are extra detached 0-d logs.

    Args:
        segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, K, H, W)``; K is read
            from its ``n_classes`` attribute (else ``num_classes``); K = 1 means sigmoid.
        in_channels, num_classes: image channels; label classes (2 for binary).
        lr: the segmentor's Adam rate (None: 1e-3); critic_lr: the critic's (None: ``lr``),
            named ``critic_lr_arg`` in the subclass's signature and in errors.
        n_critic: critic updates per segmentor update, all on the same batch.
        betas: Adam betas of both players.
        ignore_index: mask value of pixels that count nowhere (zero in every label map).
    """

    critic_name = "critic"  # key of the second player in nets, optimizers and logs
    critic_lr_arg = "critic_lr"  # the subclass's argument name for the critic's learning rate

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        in_channels: int,
        num_classes: int,
        lr: float | None,
        critic_lr: float | None,
        n_critic: int,
        betas: tuple[float, float],
        ignore_index: int,
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
        check_positive(self.critic_lr_arg, self.critic_lr)
        self.in_channels, self.num_classes, self.betas = in_channels, num_classes, betas
        self.map_channels = segmentor_out_channels(segmentor, num_classes)
        self.n_critic, self.ignore_index = n_critic, ignore_index
        self.nets["segmentor"] = segmentor

    # ------------------------------------------------------------ what a method defines
    def encode(self, images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The critic's input ``(B, C_in, H, W)`` from images ``(B, C, H, W)`` and maps ``(B, K, H, W)``."""
        raise NotImplementedError

    def critic_loss(self, real_out: CriticOutput, fake_out: CriticOutput) -> tuple[torch.Tensor, dict]:
        """The critic's 0-d loss on its outputs for true and (detached) predicted inputs, and log terms."""
        raise NotImplementedError

    def segmentor_loss(
        self, critic: nn.Module, logits: torch.Tensor, masks: torch.Tensor,
        real_in: torch.Tensor | None, fake_in: torch.Tensor,
    ) -> tuple[torch.Tensor, dict]:
        """The segmentor's 0-d loss (``critic`` frozen, to be called for forward passes), and log terms."""
        raise NotImplementedError

    def after_critic_step(self) -> None:
        """Called after each critic update (nothing by default)."""

    # ------------------------------------------------------------ the shared game
    def configure_optimizers(self) -> None:
        """Two Adam optimisers (fused on CUDA), one per player."""
        for name, lr in (("segmentor", self.lr), (self.critic_name, self.critic_lr)):
            params = list(self.unwrapped(name).parameters())
            self.optimizers[name] = make_adam(params, self.device, lr=lr, betas=self.betas)

    def judge(
        self, critic: nn.Module, real_in: torch.Tensor, fake_in: torch.Tensor
    ) -> tuple[CriticOutput, CriticOutput]:
        """``critic`` on true and predicted inputs ``(B, C_in, H, W)`` as one batch of ``2B``.

        One forward pass (one DDP call), and batch norm sees both halves. Returns the outputs
        of each half: tensors ``(B, ...)``, or lists of feature maps ``(B, C_i, H_i, W_i)``.
        """
        with self.autocast():
            both = critic(torch.cat([real_in, fake_in]))  # (2B, ...) or a list of (2B, C_i, H_i, W_i)
        batch = real_in.shape[0]
        if isinstance(both, torch.Tensor):
            return both[:batch], both[batch:]
        return [f[:batch] for f in both], [f[batch:] for f in both]

    def forward_pass(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segmentor logits ``(B, K, H, W)`` and the critic inputs ``encode(x, y)``, ``encode(x, S(x))``."""
        true_maps, valid = label_maps(masks, self.map_channels, ignore_index=self.ignore_index)  # (B, K, H, W)
        with self.autocast():
            logits = self.nets["segmentor"](images)  # (B, K, H, W)
        if logits.shape[1] != self.map_channels:
            raise ValueError(
                f"the segmentor returned {logits.shape[1]} channels, "
                f"the {self.critic_name} was built for {self.map_channels}"
            )
        probs = segmentation_probs(logits) * valid  # (B, K, H, W), ignored pixels zeroed
        real_in = like_images(self.encode(images.float(), true_maps), images)  # (B, C_in, H, W)
        fake_in = like_images(self.encode(images.float(), probs), images)
        return logits, real_in, fake_in

    def critic_update(self, real_in: torch.Tensor, fake_in: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update on true and predicted inputs; ``fake_in`` is detached here."""
        name = self.critic_name
        set_requires_grad(self.unwrapped(name), True)
        self.optimizers[name].zero_grad(set_to_none=True)
        real_out, fake_out = self.judge(self.nets[name], real_in, fake_in.detach())
        loss, terms = self.critic_loss(real_out, fake_out)
        norm = self._backward_and_step(name, loss)
        self.after_critic_step()
        return {f"loss_{name}": loss.detach(), **terms, f"grad_norm_{name}": norm}

    def segmentor_update(
        self, logits: torch.Tensor, masks: torch.Tensor, real_in: torch.Tensor | None, fake_in: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One segmentor update, the critic frozen (no gradient, no change) and unfrozen after.

        The frozen critic is called through :func:`frozen_view` (never through DDP).
        """
        critic = self.unwrapped(self.critic_name)
        set_requires_grad(critic, False)
        try:
            self.optimizers["segmentor"].zero_grad(set_to_none=True)
            frozen = frozen_view(self.nets[self.critic_name])
            loss, terms = self.segmentor_loss(frozen, logits, masks, real_in, fake_in)
            norm = self._backward_and_step("segmentor", loss)
        finally:
            set_requires_grad(critic, True)
        return {"loss_segmentor": loss.detach(), **terms, "grad_norm_segmentor": norm}

    def _backward_and_step(self, player: str, loss: torch.Tensor) -> torch.Tensor:
        """Backward, the player's gradient norm (logged), its optimiser step; returns the norm."""
        loss.backward()
        norm = grad_norm(self.unwrapped(player).parameters())
        self.optimizers[player].step()
        return norm

    def train_step(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Segmentor forward, ``n_critic`` critic updates, one segmentor update."""
        logits, real_in, fake_in = self.forward_pass(images, masks)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.n_critic):
            logs.update(self.critic_update(real_in, fake_in))
        logs.update(self.segmentor_update(logits, masks, real_in, fake_in))
        logs["loss"] = logs["loss_segmentor"]
        return logs
