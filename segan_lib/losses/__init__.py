"""Segmentation losses: pixel-wise ones (:mod:`.pixel`), adversarial ones (:mod:`.adversarial`)
and those of semi-supervised adversarial training (:mod:`.semi`).

All take logits ``(B, K, H, W)`` (``K == 1``: binary, sigmoid) and int64 targets ``(B, H, W)``
where a pixel equal to ``ignore_index`` (default 255) counts nowhere. Pick a pixel loss by
name with ``get_pixel_loss("focal", gamma=2.0)``.
"""
from segan_lib.losses.adversarial import (
    GAN_MODES,
    PAIR_ENCODINGS,
    SCALING_TAU,
    GANLoss,
    encode_pair,
    encoded_channels,
    label_maps,
    mask_images,
    multiscale_l1_loss,
    scaled_label_maps,
    segmentation_probs,
)
from segan_lib.losses.pixel import (
    PIXEL_LOSSES,
    PixelLoss,
    cross_entropy,
    dice_ce_loss,
    focal_loss,
    get_pixel_loss,
    soft_dice_loss,
)
from segan_lib.losses.semi import pseudo_labels, self_training_loss, softmax_confidence, spatial_bce_loss

__all__ = [
    "GAN_MODES",
    "PAIR_ENCODINGS",
    "PIXEL_LOSSES",
    "SCALING_TAU",
    "GANLoss",
    "PixelLoss",
    "cross_entropy",
    "dice_ce_loss",
    "encode_pair",
    "encoded_channels",
    "focal_loss",
    "get_pixel_loss",
    "label_maps",
    "mask_images",
    "multiscale_l1_loss",
    "pseudo_labels",
    "scaled_label_maps",
    "segmentation_probs",
    "self_training_loss",
    "soft_dice_loss",
    "softmax_confidence",
    "spatial_bce_loss",
]
