r"""A Laplacian-pyramid parameterisation of the pre-image canvas.

The canvas x (N, 3, H, W) is the sum of L+1 levels, each a bilinear ×2 upsampling of the next:

.. math::

    x = p_0 + \uparrow\!\big(p_1 + \uparrow\!(p_2 + \dots + \uparrow p_L)\big),
    \qquad p_k \in \mathbb{R}^{N \times 3 \times \lceil H/2^k \rceil \times \lceil W/2^k \rceil}

With a per-element step (the papers' AdaGrad-scaled momentum, or Adam, both ≈ sign(g) in size), a
coarse element moves a whole 2^k × 2^k patch as fast as a pixel moves itself, so colour and layout
settle in tens of iterations instead of hundreds; the fine level still reaches every image. The map
is linear and onto (p_0 alone spans every canvas), so the energy's minima are those of the pixel
parameterisation; only the optimiser's path changes. On EfficientNet-Lite0 (4 photos, 224²,
200 iterations) it brought the blocks.2 inversion error from 0.26 to 0.17 (README).

Example:
    >>> import torch
    >>> levels = split(torch.zeros(1, 3, 20, 20), count=2)
    >>> [tuple(p.shape[-2:]) for p in levels]
    [(20, 20), (10, 10), (5, 5)]
    >>> compose(levels).shape
    torch.Size([1, 3, 20, 20])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["level_count", "split", "compose", "upsample2"]


def level_count(height: int, width: int, most: int = 5, smallest: int = 4) -> int:
    """Coarse levels for an H × W canvas: up to ``most``, the coarsest at least ``smallest`` pixels wide.

    224² gives 5 (coarsest 7 × 7), 64² gives 4, 16² gives 2, 7² or less gives 0.
    """
    side = min(int(height), int(width))
    if side < 2 * smallest:
        return 0
    return max(0, min(int(most), int(math.floor(math.log2(side / smallest)))))


def split(canvas: Tensor, count: int) -> list[Tensor]:
    """Levels [p_0, ..., p_count] whose :func:`compose` is ``canvas``: p_0 = canvas, the rest zeros.

    Args:
        canvas: (N, C, H, W).
        count: coarse levels L ≥ 0; level k is (N, C, ⌈H/2^k⌉, ⌈W/2^k⌉).
    """
    n, c, h, w = canvas.shape
    coarse = [canvas.new_zeros(n, c, math.ceil(h / 2**k), math.ceil(w / 2**k)) for k in range(1, int(count) + 1)]
    return [canvas.clone()] + coarse


def compose(levels: Sequence[Tensor]) -> Tensor:
    """The canvas (N, C, H, W) of ``levels`` [p_0 (N, C, H, W), p_1, ...]: coarse to fine, ×2 bilinear each step."""
    canvas = levels[-1]
    for level in reversed(levels[:-1]):
        canvas = level + upsample2(canvas, tuple(level.shape[-2:]))
    return canvas


def upsample2(x: Tensor, size: tuple[int, int]) -> Tensor:
    """×2 bilinear upsampling of x (N, C, h, w) to ``size`` (2h or 2h−1, 2w or 2w−1), edges replicated.

    Equal to ``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)`` (then the
    last row/column dropped for an odd size); written as four shifted 0.75/0.25 sums per axis, with
    the adjoint as backward, it is 3–4× faster than aten's on CPU for large images; small ones
    (output under 2^16 values), where the cost is per call, use aten's.
    """
    if x.numel() * 4 < 2**16:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[..., : size[0], : size[1]]
    return _Upsample2.apply(x, int(size[0]), int(size[1]))


def _up(x: Tensor, dim: int) -> Tensor:
    """Along ``dim`` (m → 2m): out[2i] = .75 x[i] + .25 x[i−1], out[2i+1] = .75 x[i] + .25 x[i+1], edges replicated."""
    m = x.shape[dim]
    shape = list(x.shape)
    shape[dim : dim + 1] = [m, 2]
    out = x.new_empty(shape)
    even, odd = out.unbind(dim + 1)
    torch.mul(x, 0.75, out=even)
    torch.mul(x, 0.75, out=odd)
    even.narrow(dim, 1, m - 1).add_(x.narrow(dim, 0, m - 1), alpha=0.25)
    even.narrow(dim, 0, 1).add_(x.narrow(dim, 0, 1), alpha=0.25)
    odd.narrow(dim, 0, m - 1).add_(x.narrow(dim, 1, m - 1), alpha=0.25)
    odd.narrow(dim, m - 1, 1).add_(x.narrow(dim, m - 1, 1), alpha=0.25)
    return out.flatten(dim, dim + 1)


def _up_adjoint(g: Tensor, dim: int) -> Tensor:
    """The adjoint of :func:`_up` along ``dim`` (size 2m → m)."""
    even, odd = g.unflatten(dim, (-1, 2)).unbind(dim + 1)
    m = even.shape[dim]
    out = (even + odd).mul_(0.75)
    out.narrow(dim, 0, m - 1).add_(even.narrow(dim, 1, m - 1), alpha=0.25)
    out.narrow(dim, 1, m - 1).add_(odd.narrow(dim, 0, m - 1), alpha=0.25)
    out.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)
    out.narrow(dim, m - 1, 1).add_(odd.narrow(dim, m - 1, 1), alpha=0.25)
    return out


class _Upsample2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, height: int, width: int) -> Tensor:
        ctx.size = x.shape[-2:]
        return _up(_up(x, x.dim() - 1), x.dim() - 2)[..., :height, :width]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        h, w = ctx.size
        full = F.pad(grad, (0, 2 * w - grad.shape[-1], 0, 2 * h - grad.shape[-2]))  # odd sizes: zeros for the cut
        return _up_adjoint(_up_adjoint(full, full.dim() - 2), full.dim() - 1), None, None
