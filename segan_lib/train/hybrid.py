"""The hybrid loss of Luc et al. on the one training engine: pixel loss + lambda * adversarial.

Luc, Couprie, Chintala and Verbeek, "Semantic Segmentation using Adversarial Networks",
NeurIPS 2016 Workshop on Adversarial Training (arXiv 1611.08408). A discriminator ``a``
judges (image, label map) pairs: ground truth ``y`` (one-hot) or the segmentor's class
probabilities ``s(x)``:

    discriminator:  min_a  BCE(a(x, y), 1) + BCE(a(x, s(x)), 0)
    segmentor:      min_s  CE(s(x), y) + lambda_adv * BCE(a(x, s(x)), 1)   (non-saturating)

Any objective of :class:`~segan_lib.losses.adversarial.GANLoss` can replace the BCE pair
(``gan_mode``). The pair is encoded ``"basic"`` (image and maps stacked, C + K channels) or
``"product"`` (each class map times the image, K*C channels); see ``encode_pair``. The
discriminator is image-level (``"luc"``) or pix2pix's PatchGAN (``"patchgan"``, Isola et al.,
CVPR 2017). Binary segmentors (K = 1) use the sigmoid map; ignored pixels are zero in both.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss
from segan_lib.losses.adversarial import (
    GAN_MODES,
    PAIR_ENCODINGS,
    GANLoss,
    encode_pair,
    encoded_channels,
    label_maps,
    segmentation_probs,
)
from segan_lib.models.discriminators import LucDiscriminator, PatchGANDiscriminator
from segan_lib.train.segan import frozen_view, grad_norm, like_images, segmentor_out_channels
from segan_lib.train.strategy import Strategy, set_requires_grad
from segan_lib.train.supervised import make_adam

DISCRIMINATORS = ("luc", "patchgan")


class HybridStrategy(Strategy):
    """Pixel loss + adversarial term: nets and optimisers ``"segmentor"`` and ``"discriminator"``.

    Args:
        segmentor: images ``(B, in_channels, H, W)`` -> logits ``(B, K, H, W)``; K is read
            from its ``n_classes`` attribute (else ``num_classes``); K = 1 means sigmoid.
        in_channels, num_classes: image channels; label classes (2 for binary).
        lr: the segmentor's Adam rate (default 1e-3); ``disc_lr`` the discriminator's
            (default ``lr``).
        pixel_loss: a name from ``segan_lib.losses.PIXEL_LOSSES``; "ce" as in the paper.
        lambda_adv: weight of the adversarial term (default 0.01, the weight Hung et al.,
            BMVC 2018, give theirs).
        encoding: "basic" or "product" (``encode_pair``). discriminator: "luc" (one score
            per image) or "patchgan" (one per patch; batch norm, or none with spectral norm).
        gan_mode: the ``GANLoss`` objective; "nonsaturating" is the paper's.
        n_critic: discriminator updates per segmentor update, all on the same batch.
        spectral_norm: spectral normalisation in every discriminator layer.
        disc_base_channels, disc_depth: width and number of strided layers of either
            discriminator (PatchGAN's ``n_layers``; 3 gives its 70x70 patches).
        betas: Adam betas of both players, (0.5, 0.999) as in DCGAN.

    Real and predicted pairs go through the discriminator as one batch of ``2B`` (one
    forward pass per update). Logged each step (detached 0-d tensors): ``loss``
    (= ``loss_segmentor``, the total), ``loss_pixel``, ``loss_adv`` (the generator term
    before ``lambda_adv``), ``loss_discriminator``, ``d_acc_real`` / ``d_acc_fake``
    (fraction of real / predicted pairs, or patches, the discriminator classifies
    correctly), ``grad_norm_segmentor``, ``grad_norm_discriminator``.
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
        disc_lr: float | None = None,
        disc_base_channels: int = 32,
        disc_depth: int = 3,
        betas: tuple[float, float] = (0.5, 0.999),
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        check_positive("lambda_adv", lambda_adv, allow_zero=True)
        check_choice("encoding", encoding, PAIR_ENCODINGS)
        check_choice("discriminator", discriminator, DISCRIMINATORS)
        check_choice("gan_mode", gan_mode, GAN_MODES)
        check_positive("n_critic", n_critic)
        self.lr = 1e-3 if lr is None else lr
        self.disc_lr = self.lr if disc_lr is None else disc_lr
        check_positive("lr", self.lr)
        check_positive("disc_lr", self.disc_lr)
        self.in_channels, self.num_classes, self.betas = in_channels, num_classes, betas
        self.map_channels = segmentor_out_channels(segmentor, num_classes)
        self.lambda_adv, self.encoding, self.n_critic = lambda_adv, encoding, n_critic
        self.ignore_index = ignore_index
        self.pixel_loss_name = pixel_loss
        self.pixel_loss = get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.gan_loss = GANLoss(gan_mode)
        disc_in = encoded_channels(in_channels, self.map_channels, encoding)
        self.nets["segmentor"] = segmentor
        if discriminator == "luc":
            self.nets["discriminator"] = LucDiscriminator(
                disc_in, base_channels=disc_base_channels, depth=disc_depth, spectral_norm=spectral_norm
            )
        else:
            self.nets["discriminator"] = PatchGANDiscriminator(
                disc_in,
                base_channels=disc_base_channels,
                n_layers=disc_depth,
                norm="none" if spectral_norm else "batch",
                spectral_norm=spectral_norm,
            )

    def configure_optimizers(self) -> None:
        """Two Adam optimisers (fused on CUDA), one per player."""
        for name, lr in (("segmentor", self.lr), ("discriminator", self.disc_lr)):
            params = list(self.unwrapped(name).parameters())
            self.optimizers[name] = make_adam(params, self.device, lr=lr, betas=self.betas)

    def discriminator_step(self, real_pairs: torch.Tensor, fake_pairs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update on encoded pairs ``(B, C_in, H, W)``; ``fake_pairs`` is detached here."""
        set_requires_grad(self.unwrapped("discriminator"), True)
        opt = self.optimizers["discriminator"]
        opt.zero_grad(set_to_none=True)
        batch = real_pairs.shape[0]
        with self.autocast():
            scores = self.nets["discriminator"](torch.cat([real_pairs, fake_pairs.detach()]))  # (2B, ...)
        real_out, fake_out = scores[:batch], scores[batch:]
        loss = self.gan_loss.discriminator(real_out, fake_out)
        loss.backward()
        norm = grad_norm(self.unwrapped("discriminator").parameters())
        opt.step()
        acc_real, acc_fake = self.gan_loss.accuracy(real_out, fake_out)
        return {
            "loss_discriminator": loss.detach(),
            "d_acc_real": acc_real,
            "d_acc_fake": acc_fake,
            "grad_norm_discriminator": norm,
        }

    def segmentor_step(
        self, logits: torch.Tensor, masks: torch.Tensor, fake_pairs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One segmentor update: pixel loss + ``lambda_adv`` * generator term; the discriminator frozen.

        The frozen discriminator is called through ``frozen_view`` (never through DDP).
        """
        disc = self.unwrapped("discriminator")
        set_requires_grad(disc, False)
        try:
            opt = self.optimizers["segmentor"]
            opt.zero_grad(set_to_none=True)
            pixel = self.pixel_loss(logits.float(), masks)
            with self.autocast():
                fake_out = frozen_view(self.nets["discriminator"])(fake_pairs)
            adv = self.gan_loss.generator(fake_out)
            loss = pixel + self.lambda_adv * adv
            loss.backward()
            norm = grad_norm(self.unwrapped("segmentor").parameters())
            opt.step()
        finally:
            set_requires_grad(disc, True)
        return {
            "loss_segmentor": loss.detach(),
            "loss_pixel": pixel.detach(),
            "loss_adv": adv.detach(),
            "grad_norm_segmentor": norm,
        }

    def forward_pass(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segmentor logits ``(B, K, H, W)`` and the encoded real and predicted pairs ``(B, C_in, H, W)``."""
        true_maps, valid = label_maps(masks, self.map_channels, ignore_index=self.ignore_index)  # (B, K, H, W)
        with self.autocast():
            logits = self.nets["segmentor"](images)  # (B, K, H, W)
        if logits.shape[1] != self.map_channels:
            raise ValueError(
                f"the segmentor returned {logits.shape[1]} channels, "
                f"the discriminator was built for {self.map_channels}"
            )
        probs = segmentation_probs(logits) * valid  # (B, K, H, W)
        real_pairs = like_images(encode_pair(images.float(), true_maps, self.encoding), images)
        fake_pairs = like_images(encode_pair(images.float(), probs, self.encoding), images)
        return logits, real_pairs, fake_pairs

    def train_step(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Segmentor forward, ``n_critic`` discriminator updates, one segmentor update."""
        logits, real_pairs, fake_pairs = self.forward_pass(images, masks)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.n_critic):
            logs.update(self.discriminator_step(real_pairs, fake_pairs))
        logs.update(self.segmentor_step(logits, masks, fake_pairs))
        logs["loss"] = logs["loss_segmentor"]
        return logs
