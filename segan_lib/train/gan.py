"""A plain GAN on the one training engine: toy 2-D GANs and the DCGAN mask generator.

Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014:

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]

played by alternating updates (their Algorithm 1): ``d_steps`` discriminator steps, then one
generator step. The objective is :class:`segan_lib.losses.adversarial.GANLoss`: ``"vanilla"``
is the minimax game above, whose generator loss ``log(1 - D(G(z)))`` *saturates* (its
gradient vanishes) when D rejects the fakes confidently; ``"nonsaturating"`` makes the
generator minimise ``-log D(G(z))`` instead, as the paper recommends; ``"lsgan"`` and
``"hinge"`` are there too. Optimisers: Adam with ``lr=2e-4, betas=(0.5, 0.999)`` (DCGAN,
Radford et al., ICLR 2016), fused on CUDA like every strategy's.

The engine passes ``train_step`` whatever the dataset's ``get_batch`` gives; ``real_from``
says where the real samples are: ``"inputs"`` for the first item (points ``(B, 2)`` of
:class:`segan_lib.data.toy2d.GaussianMixture2D`), ``"masks"`` for the second item of a
binary segmentation dataset (SynthShapes ``binary=True``: int64 masks ``(B, H, W)`` in
{0, 1}, turned into float ``(B, 1, H, W)``).

:class:`GANSnapshots` is a training callback that draws samples from fixed noise at each
logging interval, for plots and for the snapshot scrubber.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_mask, check_positive, check_tensor
from segan_lib.losses.adversarial import GAN_MODES, GANLoss
from segan_lib.train.strategy import Strategy, frozen_view, set_requires_grad
from segan_lib.train.hardware import make_adam

REAL_SOURCES = ("inputs", "masks")


def masks_as_samples(masks: torch.Tensor) -> torch.Tensor:
    """Binary label masks ``(B, H, W)`` int64 in {0, 1} as float samples ``(B, 1, H, W)``."""
    check_mask("masks", masks, num_classes=2, ignore_index=None)
    return masks.unsqueeze(1).float()  # (B, H, W) -> (B, 1, H, W)


class GANStrategy(Strategy):
    """A GAN: nets and optimisers ``"generator"`` and ``"discriminator"``; no segmentor.

    Args:
        generator: maps noise ``(B, z_dim)`` to samples; must have a ``z_dim`` attribute
            (``ToyGenerator``, ``MaskGenerator``).
        discriminator: maps samples to one logit per sample ``(B,)`` (or any shape of logits).
        loss: a ``GANLoss`` mode: ``"vanilla"`` (saturating minimax), ``"nonsaturating"``,
            ``"lsgan"`` or ``"hinge"``.
        lr: the generator's Adam learning rate; ``lr_d``: the discriminator's (default ``lr``).
        betas: Adam's betas for both.
        d_steps: discriminator updates per generator update (k of Algorithm 1). All use the
            same real batch, each with fresh noise.
        real_from: ``"inputs"`` or ``"masks"`` (see the module docstring).

    One ``train_step``: for each of ``d_steps``: ``fake = G(z)``; minimise
    ``loss.discriminator(D(real), D(fake.detach()))`` over D (real and fake in separate
    forward passes, so batch norm never mixes them, as in DCGAN). Then, with D frozen,
    minimise ``loss.generator(D(fake))`` over G, on the last ``fake``. Logged (detached 0-d):
    ``loss_d``, ``loss_g``, ``d_real_acc`` and ``d_fake_acc`` (fraction of real / fake
    samples that D classifies correctly, from the last D step).
    """

    name = "gan"

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, loss: str = "nonsaturating",
                 lr: float = 2e-4, lr_d: float | None = None, betas: tuple[float, float] = (0.5, 0.999),
                 d_steps: int = 1, real_from: str = "inputs") -> None:
        super().__init__()
        check_choice("loss", loss, GAN_MODES)
        check_choice("real_from", real_from, REAL_SOURCES)
        check_positive("lr", lr)
        check_positive("lr_d", lr if lr_d is None else lr_d)
        check_positive("d_steps", d_steps)
        if not isinstance(getattr(generator, "z_dim", None), int):
            raise ValueError(f"generator must have an int attribute z_dim (noise size), got {type(generator).__name__}")
        self.gan_loss = GANLoss(loss)
        self.lr, self.lr_d = lr, lr if lr_d is None else lr_d
        self.betas, self.d_steps, self.real_from = betas, d_steps, real_from
        self.nets["generator"] = generator
        self.nets["discriminator"] = discriminator

    @property
    def segmentor(self) -> nn.Module:
        raise AttributeError(
            "GANStrategy trains a generator and a discriminator and has no segmentor; "
            "train it without val_data and look at its samples instead"
        )

    @property
    def z_dim(self) -> int:
        return int(self.unwrapped("generator").z_dim)

    def configure_optimizers(self) -> None:
        """Two Adam optimisers (fused on CUDA), one per player."""
        for name, lr in (("generator", self.lr), ("discriminator", self.lr_d)):
            params = list(self.unwrapped(name).parameters())
            self.optimizers[name] = make_adam(params, self.device, lr=lr, betas=self.betas)

    def real_samples(self, inputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The real batch of one engine step (see ``real_from``)."""
        if self.real_from == "inputs":
            return check_tensor("inputs", inputs).float()
        if targets is None:
            raise ValueError("real_from='masks' needs a dataset of (image, mask) pairs, got targets=None")
        return masks_as_samples(targets)

    def sample(self, batch_size: int, *, device: torch.device | str | None = None) -> torch.Tensor:
        """``G(z)`` for fresh ``z ~ N(0, I)`` ``(batch_size, z_dim)``, with gradients (train mode as is)."""
        z = torch.randn(batch_size, self.z_dim, device=device if device is not None else self.device)
        with self.autocast():
            return self.nets["generator"](z)

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D update on ``real`` and ``fake.detach()``."""
        opt = self.optimizers["discriminator"]
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            d_real = self.nets["discriminator"](real)
            d_fake = self.nets["discriminator"](fake.detach())
        loss_d = self.gan_loss.discriminator(d_real, d_fake)
        loss_d.backward()
        opt.step()
        real_acc, fake_acc = self.gan_loss.accuracy(d_real, d_fake)
        return {"loss_d": loss_d.detach(), "d_real_acc": real_acc, "d_fake_acc": fake_acc}

    def generator_step(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One G update: minimise ``loss.generator(D(fake))`` with D frozen.

        The frozen discriminator is called through :func:`frozen_view` (compiled if compiled,
        never through DDP: it gets no gradient here).
        """
        discriminator = self.unwrapped("discriminator")
        set_requires_grad(discriminator, False)
        try:
            opt = self.optimizers["generator"]
            opt.zero_grad(set_to_none=True)
            with self.autocast():
                d_fake = frozen_view(self.nets["discriminator"])(fake)
            loss_g = self.gan_loss.generator(d_fake)
            loss_g.backward()
            opt.step()
        finally:
            set_requires_grad(discriminator, True)
        return {"loss_g": loss_g.detach()}

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor | None, step: int) -> dict[str, torch.Tensor]:
        """``d_steps`` discriminator updates, then one generator update (see the class docstring)."""
        real = self.real_samples(inputs, targets)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.d_steps):
            fake = self.sample(real.shape[0], device=real.device)
            logs.update(self.discriminator_step(real, fake))
        logs.update(self.generator_step(fake))
        return logs


class GANSnapshots:
    """Training callback ``f(trainer, step, logs)``: samples from fixed noise at each log interval.

    Each snapshot is a dict: ``"step"`` (int), ``"samples"`` (``G(z_fixed)`` on the CPU,
    float32: ``(N, 2)`` points or ``(N, 1, H, W)`` masks), ``"logs"`` (the averaged losses
    of the interval, floats) and, with ``grid_extent`` for 2-D data, ``"d_grid"``
    (``sigmoid(D(x))`` on an ``(n, n)`` grid over ``[-grid_extent, grid_extent]^2``, rows = y;
    a probability for the vanilla and non-saturating objectives; a discriminator with
    minibatch features sees the whole grid as one batch).

    The generator is run in eval mode (batch norm uses its running statistics), so taking a
    snapshot changes no state of the run: training continues exactly as without it.

    Args:
        noise: the fixed noise ``(N, z_dim)``.
        every: keep one of every ``every`` logging intervals.
        grid_extent: half-width of the discriminator grid (2-D data only), None for no grid.
        grid_size: ``n``, grid points per axis.
    """

    def __init__(self, noise: torch.Tensor, *, every: int = 1, grid_extent: float | None = None,
                 grid_size: int = 64) -> None:
        noise = check_tensor("noise", noise)
        if noise.dim() != 2:
            raise ValueError(f"noise must have shape (N, z_dim), got a tensor of shape {tuple(noise.shape)}")
        check_positive("every", every)
        check_positive("grid_size", grid_size)
        if grid_extent is not None:
            check_positive("grid_extent", grid_extent)
        self.noise, self.every = noise, every
        self.grid_extent, self.grid_size = grid_extent, grid_size
        self.snapshots: list[dict] = []
        self._calls = 0

    def __call__(self, trainer: object, step: int, logs: dict) -> None:
        self._calls += 1
        if (self._calls - 1) % self.every == 0:
            self.snapshots.append(self.take(trainer.strategy, step, logs))

    @torch.no_grad()
    def take(self, strategy: GANStrategy, step: int, logs: dict) -> dict:
        """One snapshot of ``strategy`` now (see the class docstring)."""
        generator, discriminator = strategy.unwrapped("generator"), strategy.unwrapped("discriminator")
        modes = generator.training, discriminator.training
        generator.eval()
        discriminator.eval()
        try:
            device = next(generator.parameters()).device
            samples = generator(self.noise.to(device)).float()
            snapshot = {"step": int(step), "samples": samples.cpu(), "logs": {k: float(v) for k, v in logs.items()}}
            if self.grid_extent is not None:
                if samples.dim() != 2 or samples.shape[1] != 2:
                    raise ValueError(f"grid_extent needs 2-D samples (N, 2), got samples of shape {tuple(samples.shape)}")
                axis = torch.linspace(-self.grid_extent, self.grid_extent, self.grid_size, device=device)
                ys, xs = torch.meshgrid(axis, axis, indexing="ij")
                points = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)  # (n*n, 2)
                d_prob = torch.sigmoid(discriminator(points).float())  # (n*n,)
                snapshot["d_grid"] = d_prob.view(self.grid_size, self.grid_size).cpu()  # (n, n), rows = y
                snapshot["grid_extent"] = float(self.grid_extent)
        finally:
            generator.train(modes[0])
            discriminator.train(modes[1])
        return snapshot
