"""A plain GAN: toy 2-D GANs and the DCGAN mask generator. One step, read top to bottom.

Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014:

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]

played by alternating updates (their Algorithm 1): ``n_critic`` discriminator steps (their
``k``), then one generator step. The objective is :class:`segan_lib.losses.adversarial.GANLoss`:
``"vanilla"`` is the minimax game above, whose generator loss ``log(1 - D(G(z)))``
*saturates* (its gradient vanishes) when D rejects the fakes confidently; ``"nonsaturating"``
makes the generator minimise ``-log D(G(z))`` instead, as the paper recommends; ``"lsgan"``
and ``"hinge"`` are there too. Optimisers: Adam with ``lr=2e-4, betas=(0.5, 0.999)`` (DCGAN,
Radford et al., ICLR 2016), fused on CUDA like every method's.

:meth:`GANStrategy.train_step` is the whole step, in the order of the methods below it:
``n_critic`` times (sample ``fake = G(z)``; :meth:`~GANStrategy.critic_step`: unfreeze D,
zero its gradients, its loss on the real batch and ``fake.detach()``, backward, Adam step),
then :meth:`~GANStrategy.generator_step` on the last ``fake``: freeze D, the generator's
loss, backward, Adam step, unfreeze.

The engine passes ``train_step`` whatever the dataset's ``get_batch`` gives, ``(inputs,
targets)``; ``real_from`` says where the real samples are: ``"inputs"`` for the first item
(points ``(B, 2)`` of :class:`segan_lib.data.toy2d.GaussianMixture2D`), ``"masks"`` for the
second item of a binary segmentation dataset (SynthShapes ``binary=True``: int64 masks
``(B, H, W)`` in {0, 1}, turned into float ``(B, 1, H, W)``).

:class:`GANSnapshots` is a training callback that draws samples from fixed noise at each
logging interval, for plots and for the snapshot scrubber.
"""
from __future__ import annotations

import torch
from torch import nn

from segan_lib._checks import check_choice, check_mask, check_positive, check_tensor
from segan_lib.losses.adversarial import GAN_MODES, GANLoss
from segan_lib.train.adversarial import frozen, grad_norm, set_requires_grad
from segan_lib.train.hardware import make_adam
from segan_lib.train.strategy import Strategy

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
        lr: the generator's Adam learning rate; ``critic_lr``: the discriminator's (default ``lr``).
        betas: Adam's betas for both.
        n_critic: discriminator updates per generator update (k of Algorithm 1). All use the
            same real batch, each with fresh noise.
        real_from: ``"inputs"`` or ``"masks"`` (see the module docstring).

    Real and fake samples go through D in separate forward passes, so batch norm never mixes
    them (as in DCGAN). Logged (detached 0-d): ``loss_discriminator``, ``loss_generator``,
    ``d_acc_real`` and ``d_acc_fake`` (fraction of real / fake samples that D classifies
    correctly, from the last D step), ``grad_norm_discriminator``, ``grad_norm_generator``.
    """

    name = "gan"

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, loss: str = "nonsaturating",
                 lr: float = 2e-4, critic_lr: float | None = None, betas: tuple[float, float] = (0.5, 0.999),
                 n_critic: int = 1, real_from: str = "inputs") -> None:
        super().__init__()
        check_choice("loss", loss, GAN_MODES)
        check_choice("real_from", real_from, REAL_SOURCES)
        check_positive("lr", lr)
        check_positive("critic_lr", lr if critic_lr is None else critic_lr)
        check_positive("n_critic", n_critic)
        if not isinstance(getattr(generator, "z_dim", None), int):
            raise ValueError(f"generator must have an int attribute z_dim (noise size), got {type(generator).__name__}")
        self.gan_loss = GANLoss(loss)
        self.lr, self.critic_lr = lr, lr if critic_lr is None else critic_lr
        self.betas, self.n_critic, self.real_from = betas, n_critic, real_from
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
        """One Adam per player (fused on CUDA)."""
        for name, lr in (("generator", self.lr), ("discriminator", self.critic_lr)):
            self.optimizers[name] = make_adam(list(self.unwrapped(name).parameters()), self.device, lr=lr,
                                              betas=self.betas)

    def check_batch(self, inputs: torch.Tensor, targets: torch.Tensor | None) -> None:
        """The real samples of a batch exist: a tensor of inputs, or binary masks in {0, 1}."""
        if self.real_from == "inputs":
            check_tensor("inputs", inputs)
        elif targets is None:
            raise ValueError("real_from='masks' needs a dataset of (image, mask) pairs, got targets=None")
        else:
            masks_as_samples(targets)

    def sample(self, batch_size: int, *, device: torch.device | str | None = None) -> torch.Tensor:
        """``G(z)`` for fresh ``z ~ N(0, I)`` ``(batch_size, z_dim)``, with gradients (train mode as is)."""
        z = torch.randn(batch_size, self.z_dim, device=device if device is not None else self.device)
        with self.autocast():
            return self.nets["generator"](z)

    # ------------------------------------------------------------------ one step
    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor | None, step: int) -> dict[str, torch.Tensor]:
        """``n_critic`` discriminator updates, each on fresh fakes, then one generator update."""
        real = inputs.float() if self.real_from == "inputs" else targets.unsqueeze(1).float()  # masks -> (B, 1, H, W)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.n_critic):
            fake = self.sample(real.shape[0], device=real.device)
            logs.update(self.critic_step(real, fake))
        logs.update(self.generator_step(fake))
        return logs

    def critic_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update on ``real`` and ``fake.detach()``."""
        discriminator, optimizer = self.nets["discriminator"], self.optimizers["discriminator"]
        set_requires_grad(self.unwrapped("discriminator"), True)
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            real_scores = discriminator(real)
            fake_scores = discriminator(fake.detach())  # no gradient reaches the generator
        loss = self.gan_loss.discriminator(real_scores, fake_scores)
        loss.backward()
        norm = grad_norm(self.unwrapped("discriminator").parameters())
        optimizer.step()
        acc_real, acc_fake = self.gan_loss.accuracy(real_scores, fake_scores)
        return {"loss_discriminator": loss.detach(), "d_acc_real": acc_real, "d_acc_fake": acc_fake,
                "grad_norm_discriminator": norm}

    def generator_step(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator update: minimise ``loss.generator(D(fake))``, the discriminator frozen."""
        optimizer = self.optimizers["generator"]
        with frozen(self.nets["discriminator"]) as discriminator:  # gradients flow through it, not into it
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                fake_scores = discriminator(fake)
            loss = self.gan_loss.generator(fake_scores)
            loss.backward()
            norm = grad_norm(self.unwrapped("generator").parameters())
            optimizer.step()
        return {"loss_generator": loss.detach(), "grad_norm_generator": norm}


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
