"""The hybrid loss of Luc et al.: pixel loss + lambda * adversarial. One step, read top to bottom.

Luc, Couprie, Chintala and Verbeek, "Semantic Segmentation using Adversarial Networks",
NeurIPS 2016 Workshop on Adversarial Training (arXiv 1611.08408). A discriminator ``a``
judges (image, label map) pairs: ground truth ``y`` (one-hot) or the segmentor's class
probabilities ``s(x)``:

    discriminator:  min_a  BCE(a(x, y), 1) + BCE(a(x, s(x)), 0)
    segmentor:      min_s  CE(s(x), y) + lambda_adv * BCE(a(x, s(x)), 1)   (non-saturating)

Any objective of :class:`~segan_lib.losses.adversarial.GANLoss` can replace the BCE pair
(``gan_mode``). The pair is encoded ``"basic"`` (image and maps stacked, C + K channels),
``"product"`` (each class map times the image, K*C channels) or ``"scaling"`` (as basic, but
the truth's one-hot map is softened towards the prediction, ``scaled_label_maps``, so that
values alone no longer tell truth from prediction; the prediction stays as it is); see
``encode_pair``. The
discriminator is image-level (``"luc"``) or pix2pix's PatchGAN (``"patchgan"``, Isola et al.,
CVPR 2017). Binary segmentors (K = 1) use the sigmoid map; ignored pixels are zero in both.

:meth:`HybridStrategy.train_step` is the whole step, in the order of the methods below it:

1. :meth:`~HybridStrategy.forward_pass`: the segmentor's logits and both encoded pairs;
2. ``n_critic`` times :meth:`~HybridStrategy.critic_step` (the discriminator is this
   method's critic): unfreeze, zero its gradients, its GAN loss on the real pairs and the
   *detached* predicted ones, backward, Adam step;
3. :meth:`~HybridStrategy.segmentor_step`: freeze the discriminator, ``loss = pixel_loss +
   lambda_adv * generator term``, backward, Adam step, unfreeze.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss
from segan_lib.losses.adversarial import (
    GAN_MODES, PAIR_ENCODINGS, GANLoss, encode_pair, encoded_channels, label_maps, scaled_label_maps,
    segmentation_probs,
)
from segan_lib.models.discriminators import LucDiscriminator, PatchGANDiscriminator
from segan_lib.train.adversarial import (
    DEFAULT_LR, check_segmentor_channels, frozen, grad_norm, judge, like_images, logit_channels,
    set_requires_grad,
)
from segan_lib.train.hardware import make_adam
from segan_lib.train.schedule import check_cosine_steps, cosine_rate, set_rate
from segan_lib.train.strategy import Strategy

DISCRIMINATORS = ("luc", "patchgan")


class HybridStrategy(Strategy):
    """Pixel loss + adversarial term: nets and optimisers ``"segmentor"`` and ``"discriminator"``.

    Args:
        segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, K, H, W)``; K is read
            from its ``num_classes`` attribute (else ``num_classes``); K = 1 means sigmoid.
        in_channels, num_classes: image channels; label classes (2 for binary).
        lr: the segmentor's Adam rate (default 1e-3); ``critic_lr`` the discriminator's
            (default ``lr``). cosine_steps: None keeps both rates; ``T`` anneals both to 0 over
            ``T`` steps with a cosine (:mod:`~segan_lib.train.schedule`).
        pixel_loss: a name from ``segan_lib.losses.PIXEL_LOSSES``; "ce" as in the paper.
        lambda_adv: weight of the adversarial term (default 0.01, the weight Hung et al.,
            BMVC 2018, give theirs).
        encoding: "basic", "product" or "scaling" (``encode_pair``; "scaling" encodes the
            truth with ``scaled_label_maps`` of the detached prediction, tau = 0.9).
            discriminator: "luc" (one score per image) or "patchgan" (one per patch; batch
            norm, or none with spectral norm).
        gan_mode: the ``GANLoss`` objective; "nonsaturating" is the paper's.
        n_critic: discriminator updates per segmentor update, all on the same batch.
        spectral_norm: spectral normalisation in every discriminator layer.
        critic_base_channels, critic_depth: width and number of strided layers of either
            discriminator (PatchGAN's ``n_layers``; 3 gives its 70x70 patches).
        betas: Adam betas of both players, (0.5, 0.999) as in DCGAN (Radford et al., ICLR 2016);
            ``critic_betas`` the discriminator's if they differ (default ``betas``; Hung et al.,
            BMVC 2018, train theirs with (0.9, 0.99)).
        ignore_index: mask value of pixels that count nowhere (zero in both pairs' maps).

    Logged each step (detached 0-d tensors): ``loss`` (= ``loss_segmentor``, the total),
    ``loss_pixel``, ``loss_adv`` (the generator term before ``lambda_adv``),
    ``loss_discriminator``, ``d_acc_real`` / ``d_acc_fake`` (fraction of real / predicted
    pairs, or patches, the discriminator classifies correctly), ``grad_norm_segmentor``,
    ``grad_norm_discriminator``.
    """

    name = "hybrid"

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        in_channels: int,
        num_classes: int,
        lr: float | None = None,
        pixel_loss: str = "ce",
        lambda_adv: float = 0.01,
        encoding: str = "basic",
        discriminator: str = "luc",
        gan_mode: str = "nonsaturating",
        n_critic: int = 1,
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
        check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        check_positive("lambda_adv", lambda_adv, allow_zero=True)
        check_choice("encoding", encoding, PAIR_ENCODINGS)
        check_choice("discriminator", discriminator, DISCRIMINATORS)
        check_choice("gan_mode", gan_mode, GAN_MODES)
        self.in_channels, self.num_classes, self.betas = in_channels, num_classes, betas
        self.critic_betas = betas if critic_betas is None else critic_betas
        self.n_critic, self.ignore_index = n_critic, ignore_index
        self.lambda_adv, self.encoding = lambda_adv, encoding
        self.pixel_loss = get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.gan_loss = GANLoss(gan_mode)
        self.map_channels = logit_channels(segmentor, num_classes)  # K
        self.nets["segmentor"] = segmentor
        pair_channels = encoded_channels(in_channels, self.map_channels, encoding)
        if discriminator == "luc":
            self.nets["discriminator"] = LucDiscriminator(
                pair_channels, base_channels=critic_base_channels, depth=critic_depth, spectral_norm=spectral_norm
            )
        else:
            self.nets["discriminator"] = PatchGANDiscriminator(
                pair_channels,
                base_channels=critic_base_channels,
                n_layers=critic_depth,
                norm="none" if spectral_norm else "batch",
                spectral_norm=spectral_norm,
            )

    def configure_optimizers(self) -> None:
        """One Adam per player (fused on CUDA)."""
        for name, lr, betas in (("segmentor", self.lr, self.betas),
                                ("discriminator", self.critic_lr, self.critic_betas)):
            self.optimizers[name] = make_adam(list(self.unwrapped(name).parameters()), self.device, lr=lr,
                                              betas=betas)

    def check_batch(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        """The segmentor's input check and output channels, and the discriminator's on the shape of a pair batch."""
        super().check_batch(images, masks)
        check_segmentor_channels(self.segmentor, images, self.map_channels, "discriminator")
        b, c, h, w = images.shape
        pair_channels = encoded_channels(c, self.map_channels, self.encoding)
        self.unwrapped("discriminator").check_input(torch.empty(b, pair_channels, h, w, device="meta"))

    # ------------------------------------------------------------------ one step
    def train_step(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Forward, ``n_critic`` discriminator updates, one segmentor update (see the module docstring)."""
        # this step's rates: the base rates, or their cosine anneal over cosine_steps (schedule.py)
        set_rate(self.optimizers["segmentor"], cosine_rate(self.lr, step, self.cosine_steps))
        set_rate(self.optimizers["discriminator"], cosine_rate(self.critic_lr, step, self.cosine_steps))
        logits, real_pairs, fake_pairs = self.forward_pass(images, masks)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.n_critic):
            logs.update(self.critic_step(real_pairs, fake_pairs))
        logs.update(self.segmentor_step(logits, masks, fake_pairs))
        logs["loss"] = logs["loss_segmentor"]
        return logs

    def forward_pass(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)`` and the encoded pairs ``(x, y)`` and ``(x, s(x))``, ``(B, C_in, H, W)``."""
        true_maps, valid = label_maps(masks, self.map_channels, ignore_index=self.ignore_index)  # (B, K, H, W)
        with self.autocast():
            logits = self.nets["segmentor"](images)  # (B, K, H, W)
        probs = segmentation_probs(logits) * valid  # (B, K, H, W), ignored pixels zeroed
        if self.encoding == "scaling":  # the truth softened towards the (detached) prediction
            true_maps, _ = scaled_label_maps(masks, probs, ignore_index=self.ignore_index)
        real_pairs = like_images(encode_pair(images.float(), true_maps, self.encoding), images)  # (B, C_in, H, W)
        fake_pairs = like_images(encode_pair(images.float(), probs, self.encoding), images)
        return logits, real_pairs, fake_pairs

    def critic_step(self, real_pairs: torch.Tensor, fake_pairs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update: tell real pairs from the detached predicted ones."""
        discriminator, optimizer = self.unwrapped("discriminator"), self.optimizers["discriminator"]
        set_requires_grad(discriminator, True)
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            real_scores, fake_scores = judge(self.nets["discriminator"], real_pairs, fake_pairs.detach())
        acc_real, acc_fake = self.gan_loss.accuracy(real_scores, fake_scores)
        loss = self.gan_loss.discriminator(real_scores, fake_scores)
        loss.backward()  # no gradient reaches the segmentor: its prediction is detached
        norm = grad_norm(discriminator.parameters())
        optimizer.step()
        return {"loss_discriminator": loss.detach(), "d_acc_real": acc_real, "d_acc_fake": acc_fake,
                "grad_norm_discriminator": norm}

    def segmentor_step(self, logits: torch.Tensor, masks: torch.Tensor, fake_pairs: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
        """One segmentor update: pixel loss + ``lambda_adv`` * generator term, the discriminator frozen."""
        optimizer = self.optimizers["segmentor"]
        with frozen(self.nets["discriminator"]) as discriminator:  # gradients flow through it, not into it
            optimizer.zero_grad(set_to_none=True)
            pixel = self.pixel_loss(logits.float(), masks)
            with self.autocast():
                fake_scores = discriminator(fake_pairs)  # only the predicted pairs
            adv = self.gan_loss.generator(fake_scores)
            loss = pixel + self.lambda_adv * adv
            loss.backward()
            norm = grad_norm(self.unwrapped("segmentor").parameters())
            optimizer.step()
        return {"loss_segmentor": loss.detach(), "loss_pixel": pixel.detach(), "loss_adv": adv.detach(),
                "grad_norm_segmentor": norm}
