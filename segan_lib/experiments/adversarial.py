"""Experiment ``adversarial``: does an adversarial term help a segmentor, against matched baselines?

Matched pairs: each adversarial arm is compared with the supervised arm that has **the same
pixel loss**, the same U-Net, the same initial weights, the same batches in the same order and
the same segmentor optimiser (Adam at the same learning rate, betas (0.9, 0.999) for both);
the adversarial term is the only difference.

* ``ce`` vs ``ce+hybrid``: cross-entropy alone vs cross-entropy + ``lambda_adv`` x the
  non-saturating adversarial term of Luc et al. (arXiv 1611.08408, NeurIPS 2016 workshop),
  image-level discriminator, "basic" encoding, ``lambda_adv = 0.1``. (At 0.01 the
  adversarial part of the gradient is about a hundredth of the pixel part at the start, too
  small to expect any change; at 0.1 it is large enough to matter and still below the pixel
  loss.)
* ``dice`` vs ``dice+segan``: soft Dice alone vs soft Dice + SegAN's multi-scale L1 loss
  ``l_mae`` (Xue et al., Neuroinformatics 2018), critic weights clipped to [-0.05, 0.05] as
  in the authors' code. The soft Dice term is the ``pixel_loss`` of ``SeganStrategy``.

Each pair is run in two regimes, chosen before any run:

* ``clean``: SynthShapes as it is.
* ``occluded``: the same scenes with strong pixel noise (standard deviation 0.7 on images of
  unit variance) and two solid squares (20-35 % of the image side) painted over each image,
  while the masks still cover the whole of every shape. Why this regime: a pixel loss scores
  every pixel on its own, so noise leaves isolated speckles of the wrong class and an occluder
  leaves a hole or a bite in a shape, and nothing in the loss tells the network that true
  shapes are solid, hole-free blobs with straight or round edges. A critic that has seen true
  label maps can tell speckled, holed maps from real ones; if an adversarial term gives the
  segmentor a shape prior, it should show here first, and more in the structure metrics
  (topology error: count of components; HD95: far-away speckles; boundary F1) than in Dice.

The verdict on each pair and metric is computed from paired seeds
(:mod:`segan_lib.experiments.verdicts`).
"""
from __future__ import annotations

from segan_lib.experiments.regimes import Regime
from segan_lib.experiments.spec import Arm, Experiment, Preset

LAMBDA_ADV = 0.1  # weight of the hybrid's adversarial term (see the module docstring)
SEGMENTOR_BETAS = (0.9, 0.999)  # Adam betas of SupervisedStrategy, so the segmentor's optimiser matches

REGIMES = {
    "clean": Regime("clean SynthShapes images"),
    "occluded": Regime("SynthShapes with pixel noise (std 0.7) and two occluding squares per image; masks "
                       "unchanged: where a pixel loss leaves speckle and holes, a shape prior should help",
                       noise_std=0.7, occluders=2),
}


def adversarial_arms(regime: str) -> tuple[Arm, ...]:
    """The two matched pairs in ``regime``: ``ce`` / ``ce+hybrid`` and ``dice`` / ``dice+segan``."""
    def name(label: str) -> str:
        return f"{regime}/{label}"
    return (
        Arm(name("ce"), "supervised", "ce", regime=regime),
        Arm(name("ce+hybrid"), "hybrid", "ce", options={"lambda_adv": LAMBDA_ADV, "betas": SEGMENTOR_BETAS},
            regime=regime, baseline=name("ce")),
        Arm(name("dice"), "supervised", "dice", regime=regime),
        Arm(name("dice+segan"), "segan", "dice", options={"betas": SEGMENTOR_BETAS}, regime=regime,
            baseline=name("dice")),
    )


PRESETS = {
    # 8 arms x 2 seeds in about a minute of one CPU thread: 36 steps of 16 images of 32x32, a
    # U-Net of 8-16 channels. A demonstration that the whole pipeline runs, not a result.
    "quick": Preset(size=32, num_classes=4, n_train=192, n_eval=64, epochs=3, batch_size=16, base_channels=8,
                    depth=2, lr=5e-3, critic_base_channels=8, critic_depth=2, log_every=4, seeds=3, threads=1),
    # Every arm, 3 seeds: 200 steps of 16 images of 48x48 per run, about 25 CPU-minutes in all
    # (one thread; measured on a 2-core machine: about 16 s of CPU per 50 steps and arm).
    "reference": Preset(size=48, num_classes=4, n_train=800, n_eval=200, epochs=4, batch_size=16,
                        base_channels=16, depth=3, lr=1e-3, critic_base_channels=16, critic_depth=3, log_every=10,
                        seeds=3),
    # A GPU (bf16 + torch.compile by default on CUDA): 1,000 steps of 32 images of 128x128 per run,
    # a 16-channel U-Net of depth 4 (about 2M parameters rather than the 31M of the original).
    "full": Preset(size=128, num_classes=4, n_train=4000, n_eval=500, epochs=8, batch_size=32, base_channels=16,
                   depth=4, lr=1e-3, critic_base_channels=32, critic_depth=3, log_every=50, seeds=3),
}

ADVERSARIAL = Experiment(
    name="adversarial",
    description=__doc__,
    arms=adversarial_arms("clean") + adversarial_arms("occluded"),
    presets=PRESETS,
    regimes=REGIMES,
)
