"""Experiment ``adversarial``: when does an adversarial term help a segmentor? A dose-response study.

**Pre-registered design** (written before the reference run; the reasons come from an earlier,
flawed version of this experiment, whose discriminator won within 20 steps by judging how soft
a label map is rather than its shape, at a weight 1,000x heavier than Luc et al.'s).

Matched pairs: each adversarial arm is compared with the supervised arm of **the same pixel
loss**: the same U-Net, the same initial weights, the same batches in the same order and the
same segmentor optimiser (Adam at the preset's rate, betas (0.9, 0.999)); the adversarial term
is the only difference.

* ``ce`` vs ``ce+hybrid-<encoding>-<lambda>``: cross-entropy alone vs cross-entropy +
  ``lambda_adv`` x the non-saturating adversarial term of Luc, Couprie, Chintala and Verbeek
  (arXiv 1611.08408, NeurIPS 2016 workshop) with an image-level discriminator, at four weights
  ``lambda_adv`` in {1e-4, 1e-3, 1e-2, 1e-1} (three orders of magnitude: the dose) and two
  encodings of the label map: ``basic`` (image and class maps stacked) and ``product`` (each
  class map times the image), which hides part of the one-hot-vs-soft cue. ``scaling`` is left
  out: it keeps at least 0.9 on the true class of the truth, so a discriminator still tells the
  soft prediction from it by its values (measured in the earlier version; the shortcut probe
  below checks whatever encoding is used).
* ``dice`` vs ``dice+segan-<w>``: soft Dice alone vs soft Dice + ``w`` x SegAN's multi-scale L1
  loss ``l_mae`` (Xue et al., Neuroinformatics 2018), ``w`` in {0.1, 1}, critic weights clipped
  to [-0.05, 0.05] as in the authors' code.

**The scale of lambda.** Luc et al.'s multi-class term (their eq. 1) is a *sum* over the
``H x W`` pixels, against one image-level BCE; the library's cross-entropy is a pixel *mean*.
The same number is therefore ``H * W`` times heavier here: at 32 x 32 pixels, ``lambda_adv =
1e-4`` on the mean is ``0.1024`` on Luc et al.'s summed scale, and ``1e-1`` is ``102.4``
(:func:`luc_scale`). Hung et al. (BMVC 2018) use 0.01 on a mean cross-entropy, in the middle of
the range.

**The discriminator** is trained as Hung et al. train theirs: Adam at 1e-4, betas (0.9, 0.99);
an image-level discriminator of 8-32 channels (three strided layers). SegAN's critic: Adam at
the segmentor's rate with DCGAN's betas (0.5, 0.999), as the course's SegAN default.

**Regimes**, both for every pair:

* ``clean``: SynthShapes as it is.
* ``occluded``: the same scenes with strong pixel noise (standard deviation 0.7 on images of
  unit variance) and two solid squares (20-35 % of the image side) painted over each image,
  while the masks still cover the whole of every shape. A pixel loss scores every pixel on its
  own, so noise leaves speckle and an occluder leaves a hole; a critic that has seen true label
  maps could give the segmentor a shape prior, and if it does it should show here first, and in
  the structure metrics more than in Dice.

**Baselines trained to a plateau.** Every optimiser of every arm anneals its rate to 0 over the
run with a cosine (:mod:`~segan_lib.train.schedule`), and the reference preset trains every arm
3,200 steps from the rate 2e-3. The choice came from pilots of the cross-entropy baseline alone
(held-out mean foreground Dice at the end; "moved": over the last quarter of the run):

* an earlier version of this design, 1,600 steps at a constant 2e-3, was withdrawn after 46 of
  its 120 runs: its baselines were still rising (clean ``ce`` +0.022 and clean ``dice`` +0.064
  over the last quarter, two seeds), so a gain from an adversarial term could have been a gain
  from training longer;
* 1,600 annealed steps from 2e-3: clean 0.842 (moved +0.006), but 3,200 gave 0.861, so the
  plateau of the shorter run was the schedule's, not the task's;
* 1,600 annealed steps from 4e-3: clean 0.859 and 0.861 (seeds 0, 1), occluded 0.641, still
  moving (+0.024);
* **3,200 annealed steps from 2e-3**: clean 0.861 and 0.869 (moved -0.009 and +0.004),
  occluded 0.669 (moved -0.006).

Every run records its held-out Dice every 100 steps, and the results say, per baseline, whether
the seed-mean curve moved by less than 0.01 over the last quarter
(:mod:`~segan_lib.experiments.curves`); the adversarial arms get exactly the same steps and
rates.

**Verdicts and validity.** Primary metrics: mean foreground Dice and boundary F1 (Holm over the
two); the others secondary (:mod:`~segan_lib.experiments.verdicts`), on 5 paired seeds. Every
adversarial run also records its discriminator's health and the shortcut probe
(:mod:`~segan_lib.experiments.validity`); a verdict from shortcut runs says so.
"""
from __future__ import annotations

from segan_lib.experiments.regimes import Regime
from segan_lib.experiments.spec import Arm, Experiment, Preset

LAMBDAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)  # lambda_adv on the mean cross-entropy (the dose)
ENCODINGS: tuple[str, ...] = ("basic", "product")
SEGAN_WEIGHTS: tuple[float, ...] = (0.1, 1.0)  # weight of l_mae added to soft Dice
SEGMENTOR_BETAS = (0.9, 0.999)  # Adam betas of SupervisedStrategy, so the segmentor's optimiser matches
DISCRIMINATOR_LR, DISCRIMINATOR_BETAS = 1e-4, (0.9, 0.99)  # Hung et al.'s discriminator optimiser

REGIMES = {
    "clean": Regime("clean SynthShapes images"),
    "occluded": Regime("SynthShapes with pixel noise (std 0.7) and two occluding squares per image; masks "
                       "unchanged: where a pixel loss leaves speckle and holes, a shape prior should help",
                       noise_std=0.7, occluders=2),
}


def luc_scale(lambda_adv: float, size: int) -> float:
    """``lambda_adv`` on a pixel-mean cross-entropy, expressed on Luc et al.'s summed scale at
    ``size x size`` pixels: ``lambda_adv * size**2`` (the same balance of the two terms)."""
    return lambda_adv * size * size


def adversarial_arms(regime: str) -> tuple[Arm, ...]:
    """The arms of ``regime``: ``ce``, ``ce+hybrid-<encoding>-<lambda>``, ``dice``, ``dice+segan-<w>``."""
    def name(label: str) -> str:
        return f"{regime}/{label}"
    hybrid = tuple(
        Arm(name(f"ce+hybrid-{encoding}-{lam:g}"), "hybrid", "ce", regime=regime, baseline=name("ce"),
            options={"lambda_adv": lam, "encoding": encoding, "betas": SEGMENTOR_BETAS,
                     "critic_lr": DISCRIMINATOR_LR, "critic_betas": DISCRIMINATOR_BETAS})
        for encoding in ENCODINGS for lam in LAMBDAS)
    segan = tuple(
        Arm(name(f"dice+segan-{weight:g}"), "segan", "dice", regime=regime, baseline=name("dice"),
            options={"mae_weight": weight, "betas": SEGMENTOR_BETAS, "critic_betas": (0.5, 0.999)})
        for weight in SEGAN_WEIGHTS)
    return (Arm(name("ce"), "supervised", "ce", regime=regime),) + hybrid + (
        Arm(name("dice"), "supervised", "dice", regime=regime),) + segan


PRESETS = {
    # 24 arms x 2 seeds in about a minute of one CPU thread: 16 steps of 8 images of 32x32, a
    # U-Net of 8-16 channels. A demonstration that the whole pipeline runs, not a result.
    "quick": Preset(size=32, num_classes=4, n_train=128, n_eval=32, epochs=1, batch_size=8, base_channels=8,
                    depth=2, lr=5e-3, critic_base_channels=8, critic_depth=2, log_every=4, seeds=2, threads=1,
                    cosine=True),
    # Every arm, 5 paired seeds: 3,200 steps of 16 images of 32x32 (32 epochs of 1,600 images), a
    # U-Net of 16-128 channels with batch norm, every rate annealed by a cosine; about 3.5 hours
    # with two runs at a time, one thread each, on a 2-core CPU on the fast path.
    "reference": Preset(size=32, num_classes=4, n_train=1600, n_eval=256, epochs=32, batch_size=16,
                        base_channels=16, depth=3, lr=2e-3, critic_base_channels=8, critic_depth=3, log_every=20,
                        seeds=5, threads=1, curve_every=100, cosine=True),
    # A GPU (bf16 + torch.compile by default on CUDA): 4,000 steps of 32 images of 128x128 per run,
    # a 16-channel U-Net of depth 4 (about 2M parameters rather than the 31M of the original).
    "full": Preset(size=128, num_classes=4, n_train=8000, n_eval=500, epochs=16, batch_size=32, base_channels=16,
                   depth=4, lr=1e-3, critic_base_channels=32, critic_depth=3, log_every=50, seeds=5,
                   curve_every=250, cosine=True),
}

ADVERSARIAL = Experiment(
    name="adversarial",
    description=__doc__,
    arms=adversarial_arms("clean") + adversarial_arms("occluded"),
    presets=PRESETS,
    regimes=REGIMES,
    primary_metrics=("dice", "boundary_f1"),
)
