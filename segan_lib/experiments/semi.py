"""Experiment ``semi``: do unlabelled images help, and is the discriminator needed to pick them?

Hung, Tsai, Liou, Lin and Yang, "Adversarial Learning for Semi-Supervised Semantic
Segmentation", BMVC 2018 (arXiv 1802.07934), train a segmentor on a fraction of the labels and
the rest of the images unlabelled (:class:`~segan_lib.train.semi.SemiStrategy`). At each
labelled fraction, four arms; every arm of a seed starts from the same U-Net weights, keeps the
labels of the same images (the split is seeded with the run's seed), sees its labelled images in
the same order and trains for the same number of steps; the semi-supervised arms also draw the
same unlabelled batches:

* ``labelled-only`` -- the baseline: cross-entropy on the labelled images, nothing else.
* ``adv`` -- + the adversarial term on labelled and unlabelled images (``lambda_adv`` 0.01,
  ``lambda_adv_unlabelled`` 0.001), no ``L_semi``. Asks: does the discriminator's
  "make your label maps look real" signal help by itself?
* ``adv+semi`` -- the paper's method: + ``L_semi`` (weight 0.1) on the unlabelled pixels whose
  discriminator confidence exceeds ``T_semi = 0.2``, from a quarter of training on. Asks: do the
  unlabelled images, with the pixels the discriminator trusts, help?
* ``self-training`` -- the same ``L_semi``, but at the pixels where the segmentor's *own* max
  softmax probability exceeds 0.9; no discriminator at all. Asks: is the discriminator needed,
  or does the segmentor's own confidence pick the pixels as well? (The threshold cannot be the
  discriminator's 0.2: a max softmax probability over K = 4 classes is never below 1/4, so 0.2
  would pass every pixel. 0.9 is the usual kind of pseudo-label threshold; FixMatch, Sohn et
  al., NeurIPS 2020, uses 0.95. It was chosen before any run.)

Each arm is compared with the ``labelled-only`` arm of its own fraction; the verdicts are
computed from paired seeds (:mod:`segan_lib.experiments.verdicts`).

**Why these fractions.** 1/16 and 1/4 of the training images. Hung et al. report 1/8, 1/4
and 1/2 of PASCAL VOC 2012 (10,582 training images with the SBD annotations); SynthShapes is far simpler, so a U-Net
needs fewer labels and labels become scarce at a lower fraction. At 1/16 (64 images in the
reference preset) the labelled-only U-Net has few examples of each shape and unlabelled images
have the most to add; at 1/4 (256 images) it has most of what it needs, and a method that helps
at 1/16 should help less there. The baselines of both fractions are in the results, so the gap
that unlabelled images could close is measured too. Two fractions rather than three keep the
notebook's quick run to about a minute.

**Settings.** The paper's weights (``lambda_adv`` 0.01, 0.001 on unlabelled images,
``lambda_semi`` 0.1), threshold (``T_semi`` 0.2) and warm-up (``L_semi`` from a quarter of the
steps, as its 5,000 of 20,000). One change: the discriminator's Adam rate is 1e-3 rather than
the paper's 1e-4 (betas (0.9, 0.99) kept). The paper trains 20,000 steps, the reference preset
512; at 1e-4 a discriminator of this size still gives about 0.5 everywhere at the end of such a
run, which passes every pixel at ``T_semi = 0.2`` and turns ``adv+semi`` into self-training on
every pixel (notebook 05, section 6.1, measures both rates). Every fraction trains for the
same number of steps, those of a fully labelled run of the preset (the authors' code runs
20,000 steps whatever the fraction). The U-Net has no batch norm: the semi-supervised arms pass
labelled and unlabelled images through the segmentor as one batch, and batch statistics would
let unlabelled images change the labelled predictions through the normalisation alone, a
difference to the baseline that is not the method's. The segmentor's optimiser is the same Adam
in every arm (the course trains a small U-Net from scratch, not the paper's pretrained
DeepLab-v2 with SGD).
"""
from __future__ import annotations

from fractions import Fraction

from segan_lib.experiments.spec import Arm, Experiment, Preset

FRACTIONS: tuple[Fraction, ...] = (Fraction(1, 16), Fraction(1, 4))
CRITIC_LR = 1e-3  # the discriminator's Adam rate: 10x the paper's, for runs 40x shorter (see the docstring)
SOFTMAX_THRESHOLD = 0.9  # self-training's threshold on the max softmax probability (see the docstring)


def fraction_arms(fraction: Fraction) -> tuple[Arm, ...]:
    """The four arms at ``fraction`` of the labels, named ``"1_16/labelled-only"`` etc."""
    prefix = f"{fraction.numerator}_{fraction.denominator}"
    baseline = f"{prefix}/labelled-only"
    share = float(fraction)
    return (
        Arm(baseline, "supervised", "ce", labelled_fraction=share),
        Arm(f"{prefix}/adv", "semi", "ce", options={"lambda_semi": 0.0, "critic_lr": CRITIC_LR}, baseline=baseline,
            labelled_fraction=share),
        Arm(f"{prefix}/adv+semi", "semi", "ce", options={"critic_lr": CRITIC_LR}, baseline=baseline,
            labelled_fraction=share),
        Arm(f"{prefix}/self-training", "semi", "ce",
            options={"confidence": "softmax", "t_semi": SOFTMAX_THRESHOLD}, baseline=baseline,
            labelled_fraction=share),
    )


PRESETS = {
    # 8 arms x 3 seeds in about a minute of one CPU thread: 32 steps of 8 labelled (+ 8 unlabelled)
    # images of 32x32, a U-Net of 8-16 channels. Two classes (background, disc): a U-Net without batch
    # norm learns them within 32 steps, where with four it mostly still predicts background at the end.
    # A demonstration that the pipeline runs, not a result.
    "quick": Preset(size=32, num_classes=2, n_train=128, n_eval=32, epochs=2, batch_size=8, base_channels=8,
                    depth=2, lr=5e-3, critic_base_channels=8, critic_depth=2, batch_norm=False, log_every=4,
                    seeds=3, threads=1),
    # Every arm, 3 seeds, one thread of a 2-core CPU in about 25 minutes: 512 steps of 16 labelled
    # (+ 16 unlabelled) images of 32x32; 1/16 of 1,024 training images is 64 labelled images.
    "reference": Preset(size=32, num_classes=4, n_train=1024, n_eval=256, epochs=8, batch_size=16,
                        base_channels=8, depth=2, lr=3e-3, critic_base_channels=8, critic_depth=2,
                        batch_norm=False, log_every=16, seeds=3, threads=1),
    # A GPU (bf16 + torch.compile by default on CUDA): 1,024 steps of 32 labelled (+ 32 unlabelled)
    # images of 128x128, a 16-channel U-Net of depth 4.
    "full": Preset(size=128, num_classes=4, n_train=4096, n_eval=512, epochs=8, batch_size=32, base_channels=16,
                   depth=4, lr=1e-3, critic_base_channels=32, critic_depth=3, batch_norm=False, log_every=50,
                   seeds=3),
}

SEMI = Experiment(
    name="semi",
    description=__doc__,
    arms=tuple(arm for fraction in FRACTIONS for arm in fraction_arms(fraction)),
    presets=PRESETS,
)
