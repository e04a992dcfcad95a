r"""Natural-image priors for pre-images: the α-norm and total variation (TV^β).

Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them", CVPR 2015, §3.2,
and the IJCV 2016 follow-up "Visualizing Deep Convolutional Neural Networks Using Natural
Pre-images", with the normalisation of the authors' released code: both priors are *averaged* over
pixels so that, with :math:`\lambda_\alpha = \sigma^{-\alpha}` and
:math:`\lambda_{TV} = (6.5/\sigma)^\beta`, each is about 1 on a typical natural image.

.. math::

    R_\alpha(x) = \frac{1}{HW} \sum_{ij} \lVert x_{ij} \rVert^\alpha
    \qquad
    R_{V^\beta}(x) = \frac{1}{HW} \sum_{ij} \sum_c
        \big((x_{c,i,j+1} - x_{cij})^2 + (x_{c,i+1,j} - x_{cij})^2\big)^{\beta/2}

:math:`x_{ij}` is the RGB vector of pixel (i, j); forward differences replicate the last row and
column (so the differences there are zero). β = 1 gives "spiky" images, β = 2 smoother ones.
Inputs are in whatever units the caller optimises (the engine uses 0–255 mean-subtracted pixels).

Example:
    >>> import torch
    >>> x = torch.arange(4.0).expand(1, 3, 2, 4)      # a ramp: Δh = 1 except the last column
    >>> total_variation(x).item(), alpha_norm(torch.ones(1, 3, 2, 2), alpha=2).item()
    (2.25, 3.0)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import ShapeError

__all__ = ["alpha_norm", "AlphaNorm", "total_variation", "TotalVariation"]


def _check(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"expected images of shape (N, C, H, W), got {shape}; add a batch dimension with x[None].")


def alpha_norm(x: Tensor, alpha: float = 6.0) -> Tensor:
    """Pixel-averaged α-norm of each image, R_α(x) = mean_ij ‖x_ij‖^α (colour-vector norm).

    Args:
        x: images (N, C, H, W), mean-subtracted, any units.
        alpha: the exponent α > 0 (6 in the papers).

    Returns:
        (N,) tensor, one value per image.
    """
    _check(x)
    if alpha <= 0:
        raise ShapeError(f"alpha must be positive, got {alpha}; use alpha=6 as in the paper.")
    sq = x.pow(2).sum(dim=1)  # (N, H, W) squared colour norm
    if alpha == 2:
        return sq.mean(dim=(1, 2))
    return sq.clamp_min(1e-12).pow(alpha / 2).mean(dim=(1, 2))


def total_variation(x: Tensor, beta: float = 2.0, eps: float = 1e-8) -> Tensor:
    """Pixel-averaged TV^β of each image (forward differences, last row/column replicated).

    Args:
        x: images (N, C, H, W), any units.
        beta: the exponent β > 0 (1: spiky, 2: smooth).
        eps: for β ≠ 2, squared gradient magnitudes ≤ eps count as 0 (keeps the gradient finite at 0).

    Returns:
        (N,) tensor, one value per image: (1/HW) Σ_ij Σ_c (Δh² + Δv²)^{β/2}.
    """
    _check(x)
    if beta <= 0:
        raise ShapeError(f"beta must be positive, got {beta}; use beta=2 (smooth) or beta=1 (spiky).")
    if beta == 2:  # the two directions separate: no need to align them
        return _SquaredTotalVariation.apply(x)
    dh = x[..., :, 1:] - x[..., :, :-1]  # (N, C, H, W-1); the replicated last column adds 0
    dv = x[..., 1:, :] - x[..., :-1, :]  # (N, C, H-1, W)
    sq = torch.nn.functional.pad(dh.pow(2), (0, 1)) + torch.nn.functional.pad(dv.pow(2), (0, 0, 0, 1))
    per_pixel = torch.where(sq > eps, sq.clamp_min(eps).pow(beta / 2), torch.zeros_like(sq))
    return per_pixel.sum(dim=1).mean(dim=(1, 2))


class _SquaredTotalVariation(torch.autograd.Function):
    """TV² with a hand-written gradient, (2/HW)·Dᵀ(Δ), computed on each image as one flat row.

    In the row (C·H·W values) Δh is x[i+1] − x[i] and Δv is x[i+W] − x[i]; the values that cross a
    row or channel edge are set to 0, which is the replicated edge. Contiguous shifts are several
    times faster on CPU than 2-D slices, and the gradient is three passes.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        flat = x.reshape(n, c * h * w)
        dh, dv = torch.empty_like(flat), torch.empty_like(flat)  # every value is written below
        torch.sub(flat[:, 1:], flat[:, :-1], out=dh[:, :-1])
        dh.view(n, c * h, w)[:, :, -1] = 0
        torch.sub(flat[:, w:], flat[:, :-w], out=dv[:, :-w])
        dv.view(n, c, h, w)[:, :, -1, :] = 0
        ctx.save_for_backward(dh, dv)
        ctx.shape = x.shape
        return (torch.linalg.vecdot(dh, dh) + torch.linalg.vecdot(dv, dv)) / (h * w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        dh, dv = ctx.saved_tensors
        n, c, h, w = ctx.shape
        out = torch.empty_like(dh)  # out[i] = Δh[i−1] − Δh[i] + Δv[i−W] − Δv[i]
        torch.sub(dh[:, :-1], dh[:, 1:], out=out[:, 1:])
        torch.neg(dh[:, :1], out=out[:, :1])
        out[:, w:].add_(dv[:, :-w])
        out.sub_(dv)
        return out.mul_(grad.view(n, 1) * (2.0 / (h * w))).view(ctx.shape)


class AlphaNorm(nn.Module):
    """Module form of :func:`alpha_norm`: (N, C, H, W) -> (N,)."""

    def __init__(self, alpha: float = 6.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        return alpha_norm(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class TotalVariation(nn.Module):
    """Module form of :func:`total_variation`: (N, C, H, W) -> (N,)."""

    def __init__(self, beta: float = 2.0, eps: float = 1e-8):
        super().__init__()
        self.beta = float(beta)
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        return total_variation(x, self.beta, self.eps)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
