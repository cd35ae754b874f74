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
The update order is the game of :mod:`segan_lib.train.adversarial`.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_positive
from segan_lib.losses import PIXEL_LOSSES, get_pixel_loss
from segan_lib.losses.adversarial import GAN_MODES, PAIR_ENCODINGS, GANLoss, encode_pair, encoded_channels
from segan_lib.models.discriminators import LucDiscriminator, PatchGANDiscriminator
from segan_lib.train.adversarial import AdversarialStrategy

DISCRIMINATORS = ("luc", "patchgan")


class HybridStrategy(AdversarialStrategy):
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
    critic_name = "discriminator"
    critic_lr_arg = "disc_lr"

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
        super().__init__(segmentor, in_channels=in_channels, num_classes=num_classes, lr=lr, critic_lr=disc_lr,
                         n_critic=n_critic, betas=betas, ignore_index=ignore_index)
        check_choice("pixel_loss", pixel_loss, tuple(PIXEL_LOSSES))
        check_positive("lambda_adv", lambda_adv, allow_zero=True)
        check_choice("encoding", encoding, PAIR_ENCODINGS)
        check_choice("discriminator", discriminator, DISCRIMINATORS)
        check_choice("gan_mode", gan_mode, GAN_MODES)
        self.lambda_adv, self.encoding = lambda_adv, encoding
        self.pixel_loss_name = pixel_loss
        self.pixel_loss = get_pixel_loss(pixel_loss, ignore_index=ignore_index)
        self.gan_loss = GANLoss(gan_mode)
        disc_in = encoded_channels(in_channels, self.map_channels, encoding)
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

    @property
    def disc_lr(self) -> float:
        """The discriminator's Adam learning rate (``critic_lr`` of the base class)."""
        return self.critic_lr

    def encode(self, images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The (image, label map) pair in the chosen encoding, ``(B, C_in, H, W)``."""
        return encode_pair(images, maps, self.encoding)

    def critic_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``gan_loss.discriminator(a(x, y), a(x, s(x)))``; logs the real / fake accuracies."""
        acc_real, acc_fake = self.gan_loss.accuracy(real_out, fake_out)
        return self.gan_loss.discriminator(real_out, fake_out), {"d_acc_real": acc_real, "d_acc_fake": acc_fake}

    def segmentor_loss(
        self, critic: nn.Module, logits: torch.Tensor, masks: torch.Tensor,
        real_in: torch.Tensor | None, fake_in: torch.Tensor,
    ) -> tuple[torch.Tensor, dict]:
        """``pixel_loss(logits, y) + lambda_adv * gan_loss.generator(a(x, s(x)))``; the predicted pairs only."""
        pixel = self.pixel_loss(logits.float(), masks)
        with self.autocast():
            fake_out = critic(fake_in)
        adv = self.gan_loss.generator(fake_out)
        return pixel + self.lambda_adv * adv, {"loss_pixel": pixel.detach(), "loss_adv": adv.detach()}

    def discriminator_step(self, real_pairs: torch.Tensor, fake_pairs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update on encoded pairs ``(B, C_in, H, W)``; ``fake_pairs`` is detached here."""
        return self.critic_update(real_pairs, fake_pairs)

    def segmentor_step(
        self, logits: torch.Tensor, masks: torch.Tensor, fake_pairs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One segmentor update: pixel loss + ``lambda_adv`` * generator term; the discriminator frozen."""
        return self.segmentor_update(logits, masks, None, fake_pairs)
