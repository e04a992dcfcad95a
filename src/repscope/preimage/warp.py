r"""Transformation robustness: every iteration, each crop is also scaled and rotated at random.

Olah et al. (Distill 2017) and Mahendran & Vedaldi's jitter both ask the pre-image to keep its
effect when it moves; a small random scale s and rotation θ per image and iteration (about the
image centre, bilinear, edges reflected) extends the translation jitter of :mod:`.jitter`:

.. math::

    \mathrm{images01}'_n(p) = \mathrm{images01}_n\big(c + s_n^{-1} R_{-\theta_n} (p - c)\big),
    \qquad s_n \sim \mathcal{U}[1 - a, 1 + a],\; \theta_n \sim \mathcal{U}[-r, r]

Each image draws (s, θ) from its own generator, so a batch of N equals N single runs.

Example:
    >>> import torch
    >>> x = torch.rand(2, 3, 16, 16)
    >>> torch.allclose(warp(x, torch.ones(2), torch.zeros(2)), x, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["draw", "warp", "robust"]


def draw(generators: Sequence[torch.Generator], scale: float, rotate: float) -> tuple[Tensor, Tensor]:
    """Per image, s ~ U[1 − ``scale``, 1 + ``scale``] and θ ~ U[−``rotate``, ``rotate``] degrees: two (N,) tensors."""
    u = torch.stack([torch.rand(2, generator=g, dtype=torch.float64) for g in generators])
    return 1 + scale * (2 * u[:, 0] - 1), rotate * (2 * u[:, 1] - 1)


def warp(images: Tensor, scales: Tensor, degrees: Tensor) -> Tensor:
    """Images (N, C, H, W) scaled by ``scales`` (N,) and rotated by ``degrees`` (N,) about their centre.

    Differentiable in the images (bilinear ``grid_sample``, reflected edges); the identity at s = 1, θ = 0.
    """
    n, _, h, w = images.shape
    a = torch.deg2rad(degrees.to(torch.float64))
    inv = 1 / scales.to(torch.float64)
    cos, sin = torch.cos(a) * inv, torch.sin(a) * inv
    aspect = h / w  # normalised coordinates: rotate in pixels, not in the unit square
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * aspect
    theta[:, 1, 0], theta[:, 1, 1] = sin / aspect, cos
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def robust(images: Tensor, generators: Sequence[torch.Generator], scale: float, rotate: float) -> Tensor:
    """``images`` (N, C, H, W) as they are when ``scale`` and ``rotate`` are 0 (no draw); else :func:`warp`
    by a :func:`draw` from each image's generator."""
    if not scale and not rotate:
        return images
    return warp(images, *draw(generators, scale, rotate))
