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
computed from paired seeds (:mod:`segan_lib.experiments.verdicts`). ``adv+semi`` against
``self-training`` (both use the unlabelled images, only one has a discriminator) is read from
their two verdicts and from the label-fraction figure.

**A label-limited regime, chosen from labelled-only runs alone.** Unlabelled images can only
help where labels are scarce: the regime must be one in which labelled-only training gets
clearly better with more labels, up to full labels (the ceiling). Three earlier versions were
not. The first (32 x 32 images, 4 classes, a U-Net of 8-16 channels, 512 steps) reached 0.575
mean foreground Dice with 1/16 of the labels and 0.582 with 1/4. The second (2,048 training
images, 6 classes, a U-Net of 16-128 channels, 1,536 steps at a constant rate) was withdrawn
after 40 of its 85 runs: its labelled-only curve was 0.40, 0.60, 0.69, 0.69 and 0.68 at 1/32,
1/8, 1/4, 1/2 and all labels (2-3 seeds), flat above 1/4 while the 1/2 and full-label runs
were still rising (+0.07 and +0.03 over their last quarter): too few steps for 1,024-2,048
labelled images, so the top of the curve measured the step budget, not the labels. The third
(1,024 training images, otherwise the same, 1,536 steps with every rate annealed to 0) completed
with 5 seeds and was withdrawn: its labelled-only curve, 0.317, 0.464, 0.567, 0.588 and 0.621 at
1/32, 1/8, 1/4, 1/2 and all labels, rose by 0.30, but its two top steps were not clear (1/4 to
1/2: +0.022 [-0.041, +0.085]; 1/2 to all: +0.032 [-0.027, +0.091], 95 % paired intervals) and
its 1/2 and full-label baselines were still moving over their last quarter (+0.014 and +0.012).
The regime now: **1,024 training images** (so that even full labels are scarce for this U-Net),
6 classes (background and five shape kinds), the same U-Net, **3,072 steps** with every rate
annealed to 0 by a cosine (below). A pilot of labelled-only training only (no adversarial arm),
seeds 0 and 1, gave held-out mean foreground Dice 0.574 / 0.524 at 1/4, 0.629 / 0.615 at 1/2
and 0.685 / 0.705 with all labels: steps of about 0.07 where the third version's were 0.02 and
0.03. The reference run then trained its 25 labelled-only runs (5 seeds) before any run of an
adversarial or self-training arm. Whether the reference curve rises by at least 0.10 from the
smallest fraction to full labels, and whether every step of it is larger than its interval, is
reported in the results (``label_curve``, :func:`~segan_lib.experiments.curves.label_curve_summary`),
not assumed.

**Fractions.** 1/32, 1/8, 1/4 and 1/2 of the training images (32 to 512 labelled images),
four arms each, and all labels (``full/labelled-only``, the ceiling). Hung et al. report 1/8,
1/4 and 1/2 of PASCAL VOC 2012 (10,582 training images with the SBD annotations) and full labels
(their Table 1). Every arm trains for the same number of steps, those of a fully labelled run
(the authors' code runs 20,000 steps whatever the fraction).

**Settings.** Every optimiser of every arm anneals its rate to 0 over the run with a cosine
(:mod:`~segan_lib.train.schedule`), where Hung et al. decay both players' rates polynomially;
a run that ends at a small rate is scored where it settled rather than wherever the last noisy
step left it. The paper's weights (``lambda_adv`` 0.01, 0.001 on unlabelled images,
``lambda_semi`` 0.1), threshold (``T_semi`` 0.2) and warm-up (``L_semi`` from a quarter of the
steps, as its 5,000 of 20,000); these weights are on a pixel-mean cross-entropy, as in Hung et
al.'s code. One change: the discriminator's Adam rate is 1e-3 rather than the paper's 1e-4
(betas (0.9, 0.99) kept). The paper trains 20,000 steps, this preset 3,072; at 1e-4 a
discriminator of this size still gives about 0.5 everywhere at the end of a short run, which
passes every pixel at ``T_semi = 0.2`` and turns ``adv+semi`` into self-training on every pixel
(notebook 05, section 6.1, measures both rates). The U-Net has no batch norm: the
semi-supervised arms pass labelled and unlabelled images through the segmentor as one batch,
and batch statistics would let unlabelled images change the labelled predictions through the
normalisation alone, a difference to the baseline that is not the method's. The segmentor's
optimiser is the same Adam in every arm (the course trains a small U-Net from scratch, not the
paper's ImageNet-pretrained DeepLab-v2 with SGD).

**Verdicts and validity.** Primary metrics: mean foreground Dice and boundary F1 (Holm over the
two), on 5 paired seeds; the others secondary. The adversarial arms record their
discriminator's health and the shortcut probe (:mod:`~segan_lib.experiments.validity`).
"""
from __future__ import annotations

from fractions import Fraction

from segan_lib.experiments.spec import Arm, Experiment, Preset

FRACTIONS: tuple[Fraction, ...] = (Fraction(1, 32), Fraction(1, 8), Fraction(1, 4), Fraction(1, 2))
CRITIC_LR = 1e-3  # the discriminator's Adam rate: 10x the paper's, for runs 6.5x shorter (see the docstring)
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
    # 17 arms x 2 seeds in about a minute of one CPU thread: 32 steps of 8 labelled (+ 8 unlabelled)
    # images of 32x32, a U-Net of 8-16 channels; 1/32 of 256 images is one batch of 8. Two classes
    # (background, disc): a U-Net without batch norm learns them within 32 steps. A demonstration
    # that the pipeline runs, not a result.
    "quick": Preset(size=32, num_classes=2, n_train=256, n_eval=32, epochs=1, batch_size=8, base_channels=8,
                    depth=2, lr=5e-3, critic_base_channels=8, critic_depth=2, batch_norm=False, log_every=4,
                    seeds=2, threads=1, cosine=True),
    # Every arm, 5 paired seeds, two runs at a time on a 2-core CPU in about 3 hours: 3,072 steps
    # of 16 labelled (+ 16 unlabelled) images of 32x32, 6 classes, 1,024 training images (the
    # label-limited regime of the docstring), every rate annealed by a cosine.
    "reference": Preset(size=32, num_classes=6, n_train=1024, n_eval=256, epochs=48, batch_size=16,
                        base_channels=16, depth=3, lr=2e-3, critic_base_channels=8, critic_depth=2,
                        batch_norm=False, log_every=16, seeds=5, threads=1, curve_every=128, cosine=True),
    # A GPU (bf16 + torch.compile by default on CUDA): 4,096 steps of 32 labelled (+ 32 unlabelled)
    # images of 128x128, 6 classes, a 16-channel U-Net of depth 4.
    "full": Preset(size=128, num_classes=6, n_train=8192, n_eval=512, epochs=16, batch_size=32, base_channels=16,
                   depth=4, lr=1e-3, critic_base_channels=32, critic_depth=3, batch_norm=False, log_every=64,
                   seeds=5, curve_every=256, cosine=True),
}

SEMI = Experiment(
    name="semi",
    description=__doc__,
    arms=tuple(arm for fraction in FRACTIONS for arm in fraction_arms(fraction))
    + (Arm("full/labelled-only", "supervised", "ce"),),
    presets=PRESETS,
)
