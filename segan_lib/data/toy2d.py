"""Two-dimensional Gaussian mixtures for toy GANs, and a measure of mode coverage.

The ring of 8 Gaussians is the usual test bed for mode collapse (Metz, Poole, Pfau,
Sohl-Dickstein, "Unrolled Generative Adversarial Networks", ICLR 2017): it is easy to see
which modes a generator covers. :meth:`GaussianMixture2D.coverage` counts them, following
the "modes covered" and "high-quality samples" measures of Srivastava, Valkov, Russell,
Gutmann, Sutton ("VEEGAN", NeurIPS 2017).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from segan_lib._checks import check_positive, check_tensor


def ring_centers(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres ``(n_modes, 2)`` evenly spaced on a circle: ``mu_k = r (cos 2 pi k / M, sin 2 pi k / M)``."""
    check_positive("n_modes", n_modes)
    check_positive("radius", radius)
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_centers(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """Centres ``(side**2, 2)`` on a square grid centred on the origin, ``spacing`` apart."""
    check_positive("side", side)
    check_positive("spacing", spacing)
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)  # (side*side, 2)


class GaussianMixture2D(Dataset):
    """``n`` points from an equal-weight mixture ``p(x) = (1/M) sum_k N(x; mu_k, std^2 I)``.

    The points are drawn once, from ``seed``, so sample ``i`` is the same on every run.
    ``__getitem__(i)`` gives ``(point (2,) float32, mode id () int64)``; :meth:`get_batch`
    gives the same for many indices at once, ``(points (B, 2), mode ids (B,))``, which is what
    the training engine feeds to a strategy's ``train_step``.

    Args:
        centers: mode centres ``(M, 2)``, e.g. :func:`ring_centers` or :func:`grid_centers`.
        std: standard deviation of every mode.
        n: number of points.
        seed: seed of the draw.
        device: where the points live (batches are made there, without a DataLoader).
    """

    def __init__(self, centers: torch.Tensor, *, std: float = 0.05, n: int = 10_000, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        centers = check_tensor("centers", centers)
        if centers.dim() != 2 or centers.shape[1] != 2 or centers.shape[0] < 1:
            raise ValueError(f"centers must have shape (M, 2) with M >= 1, got shape {tuple(centers.shape)}")
        check_positive("std", std)
        check_positive("n", n)
        self.centers = centers.float().to(device)
        self.std = float(std)
        self.seed = seed
        self.device = torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        modes = torch.randint(len(centers), (n,), generator=gen)  # (n,)
        noise = torch.randn(n, 2, generator=gen)  # (n, 2)
        self.modes = modes.to(device)
        self.points = (centers.float()[modes] + self.std * noise).to(device)  # (n, 2)

    @classmethod
    def ring(cls, n_modes: int = 8, radius: float = 2.0, **kwargs) -> GaussianMixture2D:
        """A ring of ``n_modes`` Gaussians of radius ``radius`` (keyword options as ``__init__``)."""
        return cls(ring_centers(n_modes, radius), **kwargs)

    @classmethod
    def grid(cls, side: int = 5, spacing: float = 2.0, **kwargs) -> GaussianMixture2D:
        """A ``side x side`` grid of Gaussians (keyword options as ``__init__``)."""
        return cls(grid_centers(side, spacing), **kwargs)

    @property
    def n_modes(self) -> int:
        return len(self.centers)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[i], self.modes[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points ``(B, 2)`` float32 and their mode ids ``(B,)`` int64 for ``indices (B,)``."""
        indices = check_tensor("indices", indices)
        if indices.dim() != 1 or indices.is_floating_point():
            raise ValueError(f"indices must be a 1-D integer tensor, got a {indices.dtype} tensor of shape {tuple(indices.shape)}")
        indices = indices.to(self.points.device, non_blocking=True)
        return self.points[indices], self.modes[indices]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture density ``p(x)`` at points ``x (N, 2)``, returned as ``(N,)``."""
        x = check_tensor("x", x)
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (N, 2), got shape {tuple(x.shape)}")
        sq_dist = torch.cdist(x.float(), self.centers.to(x.device)) ** 2  # (N, M)
        per_mode = torch.exp(-sq_dist / (2 * self.std**2)) / (2 * math.pi * self.std**2)
        return per_mode.mean(dim=1)

    @torch.no_grad()
    def coverage(self, samples: torch.Tensor, *, n_std: float = 3.0, min_share: float = 0.25) -> dict[str, float]:
        """How well ``samples (N, 2)`` cover the mixture's modes.

        A sample is *high quality* if it lies within ``n_std * std`` of its nearest centre.
        A mode is *covered* if it receives at least ``min_share`` of the fair share
        ``N / M`` of samples, i.e. ``count_k >= min_share * N / M`` high-quality samples.
        Whatever their quality, samples go to their nearest centre; the *largest share* is
        the fraction that goes to the most popular one (``1/M`` when spread evenly, ``1``
        when the generator has collapsed onto one mode).

        Returns a dict of floats: ``"modes_covered"`` (how many of the M modes),
        ``"n_modes"`` (M), ``"high_quality"`` (fraction of high-quality samples) and
        ``"largest_share"``. :meth:`mode_counts` gives the count per mode.
        """
        counts = self.mode_counts(samples, n_std=n_std)
        n = samples.shape[0]
        threshold = min_share * n / self.n_modes
        nearest = torch.cdist(samples.float(), self.centers.to(samples.device)).argmin(dim=1)  # (N,)
        largest = torch.bincount(nearest, minlength=self.n_modes).max()
        return {
            "modes_covered": float((counts >= threshold).sum()),
            "n_modes": float(self.n_modes),
            "high_quality": float(counts.sum()) / n,
            "largest_share": float(largest) / n,
        }

    @torch.no_grad()
    def mode_counts(self, samples: torch.Tensor, *, n_std: float = 3.0) -> torch.Tensor:
        """High-quality samples per mode, ``(M,)`` int64 (see :meth:`coverage`)."""
        samples = check_tensor("samples", samples)
        if samples.dim() != 2 or samples.shape[1] != 2 or samples.shape[0] < 1:
            raise ValueError(f"samples must have shape (N, 2) with N >= 1, got shape {tuple(samples.shape)}")
        check_positive("n_std", n_std)
        dist = torch.cdist(samples.float(), self.centers.to(samples.device))  # (N, M)
        nearest_dist, nearest = dist.min(dim=1)  # (N,), (N,)
        good = nearest_dist <= n_std * self.std
        return torch.bincount(nearest[good], minlength=self.n_modes).cpu()
