"""Adversarial losses: the GAN objectives in one place and the SegAN multi-scale L1 loss.

* :class:`GANLoss` -- the discriminator and generator terms of four GAN objectives
  (vanilla minimax, non-saturating, least squares, hinge), so a method swaps objective
  with one argument, as in pix2pix's ``GANLoss`` (Isola et al., CVPR 2017).
* :func:`multiscale_l1_loss` -- the loss of SegAN (Xue et al., Neuroinformatics 2018).
* :func:`mask_images`, :func:`segmentation_probs`, :func:`label_maps`,
  :func:`scaled_label_maps`, :func:`encode_pair` -- how a segmentation (predicted or true)
  is shown to a critic.

Discriminator outputs are raw scores (logits); no sigmoid is ever applied before these
losses (a sigmoid followed by a BCE-with-logits is a classic silent bug).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from segan_lib._checks import check_choice, check_image, check_mask, check_tensor

GAN_MODES = ("vanilla", "nonsaturating", "lsgan", "hinge")
PAIR_ENCODINGS = ("basic", "product", "scaling")
SCALING_TAU = 0.9  # Luc et al.'s tau: the least probability the scaled truth gives the true class


class GANLoss:
    """The two players' losses of one GAN objective; ``d`` is a raw discriminator score.

    Scores may have any shape (one per image, or one per patch for PatchGAN); every loss
    is the mean over all scores. With ``sigma`` the logistic sigmoid:

    ===============  ===================================================  ===========================
    mode             discriminator loss (minimised)                       generator loss (minimised)
    ===============  ===================================================  ===========================
    vanilla          -log sigma(d_real) - log(1 - sigma(d_fake))          log(1 - sigma(d_fake))
    nonsaturating    same as vanilla                                      -log sigma(d_fake)
    lsgan            0.5 (d_real - 1)^2 + 0.5 d_fake^2                    0.5 (d_fake - 1)^2
    hinge            relu(1 - d_real) + relu(1 + d_fake)                  -d_fake
    ===============  ===================================================  ===========================

    vanilla / nonsaturating: Goodfellow et al., NeurIPS 2014 (at the optimum p_g = p_data the
    discriminator loss is log 4). lsgan: Mao et al., ICCV 2017. hinge: Lim & Ye 2017,
    Miyato et al., ICLR 2018. ``-log sigma(x)`` is computed as ``softplus(-x)`` and
    ``-log(1 - sigma(x))`` as ``softplus(x)``, which never overflow.
    """

    def __init__(self, mode: str = "nonsaturating") -> None:
        check_choice("mode", mode, GAN_MODES)
        self.mode = mode

    @property
    def decision_threshold(self) -> float:
        """The score above which the discriminator calls an input real (0.5 for LSGAN, else 0)."""
        return 0.5 if self.mode == "lsgan" else 0.0

    def discriminator(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """0-d loss of the discriminator on its scores for real and for generated inputs."""
        check_tensor("real_out", real_out)
        check_tensor("fake_out", fake_out)
        real_out, fake_out = real_out.float(), fake_out.float()
        if self.mode in ("vanilla", "nonsaturating"):
            return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
        if self.mode == "lsgan":
            return 0.5 * (real_out - 1).pow(2).mean() + 0.5 * fake_out.pow(2).mean()
        return F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()  # hinge

    def generator(self, fake_out: torch.Tensor) -> torch.Tensor:
        """0-d loss of the generator (here: the segmentor) on the scores of its outputs."""
        fake_out = check_tensor("fake_out", fake_out).float()
        if self.mode == "vanilla":
            return -F.softplus(fake_out).mean()  # log(1 - sigma(d)): saturates when D is sure
        if self.mode == "nonsaturating":
            return F.softplus(-fake_out).mean()
        if self.mode == "lsgan":
            return 0.5 * (fake_out - 1).pow(2).mean()
        return -fake_out.mean()  # hinge

    def accuracy(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Detached 0-d fractions of real scores called real and of fake scores called fake."""
        t = self.decision_threshold
        real_acc = (real_out.detach().float() > t).float().mean()
        fake_acc = (fake_out.detach().float() <= t).float().mean()
        return real_acc, fake_acc

    def __repr__(self) -> str:
        return f"GANLoss(mode={self.mode!r})"


def multiscale_l1_loss(
    real_features: list[torch.Tensor], fake_features: list[torch.Tensor], *, reduction: str = "mean"
) -> torch.Tensor:
    """SegAN's multi-scale L1 loss between critic features of two inputs.

    ``l_mae = (1/L) sum_{i=1..L} mean |f^i_real - f^i_fake|``, where ``f^i`` is the
    ``i``-th of ``L`` feature maps ``(B, C_i, H_i, W_i)`` (any shape with batch first).
    The mean runs over the channels and positions of layer ``i``: it is the L1 norm
    ``||f^i_real - f^i_fake||_1`` of Xue et al. (Neuroinformatics 2018) divided by the
    number of elements of one sample's layer ``i``, so that large early layers do not
    drown the small deep ones. ``reduction="mean"`` averages over the batch (0-d);
    ``"none"`` keeps one value per sample, shape ``(B,)``.
    """
    check_choice("reduction", reduction, ("mean", "none"))
    if not isinstance(real_features, (list, tuple)) or not isinstance(fake_features, (list, tuple)):
        raise ValueError(
            "real_features and fake_features must be lists of tensors, got "
            f"{type(real_features).__name__} and {type(fake_features).__name__}"
        )
    if len(real_features) == 0 or len(real_features) != len(fake_features):
        raise ValueError(
            "real_features and fake_features must be non-empty lists of equal length, got "
            f"{len(real_features)} and {len(fake_features)}"
        )
    per_layer = []
    for i, (real, fake) in enumerate(zip(real_features, fake_features)):
        check_tensor(f"real_features[{i}]", real)
        check_tensor(f"fake_features[{i}]", fake)
        if real.shape != fake.shape:
            raise ValueError(
                f"real_features[{i}] {tuple(real.shape)} and fake_features[{i}] {tuple(fake.shape)} "
                "must have the same shape"
            )
        diff = (real.float() - fake.float()).abs()
        per_layer.append(diff.flatten(1).mean(dim=1))  # (B,)
    per_sample = torch.stack(per_layer, dim=0).mean(dim=0)  # (L, B) -> (B,)
    return per_sample.mean() if reduction == "mean" else per_sample


def mask_images(images: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Per-class masked images: every image channel multiplied by every class map.

    ``images (B, C, H, W)`` and ``probs (B, K, H, W)`` give ``(B, K*C, H, W)`` with
    ``out[:, k*C + c] = images[:, c] * probs[:, k]`` (class-major: the C channels of
    class 0, then those of class 1, ...). With K = 1 (binary) this is SegAN's ``x o S(x)``.
    """
    check_image("images", images)
    check_image("probs", probs)
    if images.shape[0] != probs.shape[0] or images.shape[2:] != probs.shape[2:]:
        raise ValueError(
            f"images {tuple(images.shape)} and probs {tuple(probs.shape)} must agree in batch "
            "size and spatial size"
        )
    b, c, h, w = images.shape
    k = probs.shape[1]
    masked = images.unsqueeze(1) * probs.unsqueeze(2)  # (B, 1, C, H, W) * (B, K, 1, H, W) -> (B, K, C, H, W)
    return masked.reshape(b, k * c, h, w)  # (B, K*C, H, W)


def segmentation_probs(logits: torch.Tensor) -> torch.Tensor:
    """Class maps ``(B, K, H, W)`` in [0, 1] from logits: sigmoid when K = 1, else softmax over K."""
    check_image("logits", logits)
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def label_maps(
    target: torch.Tensor, channels: int, *, ignore_index: int | None = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth class maps matching :func:`segmentation_probs`, and the valid-pixel mask.

    ``target (B, H, W)`` int64. ``channels = 1`` (binary): maps ``(B, 1, H, W)`` hold
    ``target == 1``; ``channels = K >= 2``: one-hot ``(B, K, H, W)``. Pixels equal to
    ``ignore_index`` are all-zero in the maps; ``valid (B, 1, H, W)`` is 1 elsewhere, so
    a caller multiplies predicted maps by ``valid`` to hide ignored pixels from a critic.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels!r}")
    num_labels = 2 if channels == 1 else channels
    check_mask("target", target, num_labels, ignore_index)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    clean = torch.where(valid, target, torch.zeros_like(target))  # (B, H, W), ignored -> 0
    if channels == 1:
        maps = (clean == 1).unsqueeze(1).float()  # (B, 1, H, W)
    else:
        maps = F.one_hot(clean, channels).permute(0, 3, 1, 2).float()  # (B, H, W, K) -> (B, K, H, W)
    valid = valid.unsqueeze(1).float()  # (B, 1, H, W)
    return maps * valid, valid


def scaled_label_maps(
    target: torch.Tensor, probs: torch.Tensor, *, tau: float = SCALING_TAU, ignore_index: int | None = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Luc et al.'s "scaling" encoding of the truth: the one-hot map softened towards the prediction.

    ``target (B, H, W)`` int64, ``probs (B, K, H, W)`` the segmentor's class maps
    (:func:`segmentation_probs`; K = 1: the sigmoid map of class 1, read as the two classes
    ``(1 - p, p)``). At a valid pixel whose true class is ``l``, with ``s = probs`` there::

        y_l = max(tau, s_l)
        y_c = s_c * (1 - y_l) / (1 - s_l)      for every other class c

    so the true class keeps at least ``tau`` and the others share the rest in proportion to
    the prediction (Luc, Couprie, Chintala, Verbeek, arXiv 1611.08408, 2016;
    tau = 0.9 there). Where ``s_l >= tau`` the pixel is left as predicted (``y = s``); each
    pixel still sums to 1 (when ``probs`` does). A one-hot truth is told from a soft
    prediction by its values alone (every maximum is exactly 1); the scaled truth takes its
    values from the prediction, which removes that exact cue (while the segmentor is unsure,
    its maps stay softer than the scaled truth, so a threshold on softness may still tell
    them apart). ``probs`` is detached: the
    encoded truth is a target, no gradient reaches the segmentor through it.

    Returns ``(maps, valid)`` as :func:`label_maps`: ``maps (B, K, H, W)`` (zero at ignored
    pixels) and ``valid (B, 1, H, W)``.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 < tau < 1.0:
        raise ValueError(f"tau must be a number in (0, 1), got {tau!r}")
    check_image("probs", probs)
    channels = probs.shape[1]
    one_hot, valid = label_maps(target, channels, ignore_index=ignore_index)  # (B, K, H, W), (B, 1, H, W)
    if probs.shape[0] != target.shape[0] or probs.shape[2:] != target.shape[1:]:
        raise ValueError(f"probs {tuple(probs.shape)} and target {tuple(target.shape)} must agree in batch and "
                         "spatial size")
    s = probs.detach().float()
    if channels == 1:  # binary: the two classes (1 - p, p)
        s = torch.cat([1 - s, s], dim=1)  # (B, 2, H, W)
        one_hot = torch.cat([1 - one_hot, one_hot], dim=1)
    s_true = (s * one_hot).sum(dim=1, keepdim=True)  # (B, 1, H, W): s_l, the prediction for the true class
    y_true = s_true.clamp(min=tau)  # max(tau, s_l)
    # (1 - y_l) / (1 - s_l): 1 where s_l >= tau (nothing changes, and no 0/0 at s_l = 1); else 1 - s_l > 1 - tau
    share = torch.where(s_true >= tau, torch.ones_like(s_true), (1 - tau) / (1 - s_true).clamp(min=1 - tau))
    maps = torch.where(one_hot.bool(), y_true, s * share)  # (B, K', H, W)
    if channels == 1:
        maps = maps[:, 1:]  # back to the map of class 1
    return maps * valid, valid


def encode_pair(images: torch.Tensor, maps: torch.Tensor, encoding: str) -> torch.Tensor:
    """A discriminator input from an image and its class maps (Luc et al., 2016).

    ``"basic"`` and ``"scaling"``: the image and the maps stacked on channels,
    ``(B, C + K, H, W)`` (for "scaling" the true maps are those of
    :func:`scaled_label_maps`; a prediction is passed as it is). ``"product"``: each class
    map times every image channel, ``(B, K*C, H, W)``, as :func:`mask_images`.

    Luc et al. feed the RGB image to their discriminator through a separate convolutional
    branch whose features are merged with those of the label-map branch; here the image is
    merged at the input (stacked, or multiplied in for "product"), so one network serves
    every encoding.
    """
    check_choice("encoding", encoding, PAIR_ENCODINGS)
    if encoding == "product":
        return mask_images(images, maps)
    check_image("images", images)
    check_image("maps", maps)
    if images.shape[0] != maps.shape[0] or images.shape[2:] != maps.shape[2:]:
        raise ValueError(
            f"images {tuple(images.shape)} and maps {tuple(maps.shape)} must agree in batch and spatial size"
        )
    return torch.cat([images, maps.to(images.dtype)], dim=1)  # (B, C + K, H, W)


def encoded_channels(in_channels: int, map_channels: int, encoding: str) -> int:
    """Channels of :func:`encode_pair`'s output: ``C + K`` (basic, scaling) or ``K*C`` (product)."""
    check_choice("encoding", encoding, PAIR_ENCODINGS)
    return in_channels * map_channels if encoding == "product" else in_channels + map_channels
