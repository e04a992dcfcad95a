r"""A Laplacian-pyramid parameterisation of the pre-image canvas.

The canvas x (N, 3, H, W) is the sum of L+1 levels, each a bilinear ×2 upsampling of the next:

.. math::

    x = p_0 + \uparrow\!\big(p_1 + \uparrow\!(p_2 + \dots + \uparrow p_L)\big),
    \qquad p_k \in \mathbb{R}^{N \times 3 \times \lceil H/2^k \rceil \times \lceil W/2^k \rceil}

With a per-element step (the papers' AdaGrad-scaled momentum, or Adam, both ≈ sign(g) in size), a
coarse element moves a whole 2^k × 2^k patch as fast as a pixel moves itself, so colour and layout
settle in tens of iterations instead of hundreds; the fine level still reaches every image. The map
is linear and onto (p_0 alone spans every canvas), so the energy's minima are those of the pixel
parameterisation; only the optimiser's path changes (its measured effect on the inversion error:
README, "Pre-images").

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

__all__ = ["level_count", "split", "compose", "adjoint", "upsample2", "upsample2_adjoint"]


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


def adjoint(canvas_grad: Tensor, count: int) -> list[Tensor]:
    """The gradients [g_0, ..., g_count] of a loss w.r.t. each level of :func:`compose`, from its canvas gradient.

    g_0 is ``canvas_grad`` (N, C, H, W) itself and g_k = ↑ᵀ g_{k−1}, (N, C, ⌈H/2^k⌉, ⌈W/2^k⌉): what
    autograd gives through :func:`compose`, without building its graph.
    """
    grads = [canvas_grad]
    for _ in range(int(count)):
        h, w = grads[-1].shape[-2:]
        grads.append(upsample2_adjoint(grads[-1], (math.ceil(h / 2), math.ceil(w / 2))))
    return grads


def _is_small(coarse_numel: int) -> bool:
    """Below 2^14 output values (about 3 × 74²; measured on CPU) aten's single kernel wins: the cost is per call."""
    return coarse_numel * 4 < 2**14


def upsample2(x: Tensor, size: tuple[int, int]) -> Tensor:
    """×2 bilinear upsampling of x (N, C, h, w) to ``size`` (2h or 2h−1, 2w or 2w−1), edges replicated.

    Equal to ``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)`` (then the
    last row/column dropped for an odd size); differentiable, with :func:`upsample2_adjoint` as
    backward. Large images are two separable passes of ``torch.lerp`` (at 224², 3–8× faster than
    aten's kernel on CPU); small ones use aten's.
    """
    if _is_small(x.numel()):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[..., : size[0], : size[1]]
    return _Upsample2.apply(x, int(size[0]), int(size[1]))


def upsample2_adjoint(grad: Tensor, size: tuple[int, int]) -> Tensor:
    """The adjoint of :func:`upsample2`: grad (N, C, H, W) → (N, C, h, w) with ``size`` = (h, w), H ∈ {2h−1, 2h}.

    Deterministic on every device (sums in a fixed order).
    """
    h, w = int(size[0]), int(size[1])
    # aten's kernel accumulates with atomics on CUDA (run-to-run differences): the CPU alone takes it
    if grad.device.type == "cpu" and _is_small(grad.shape[0] * grad.shape[1] * h * w):
        full = F.pad(grad, (0, 2 * w - grad.shape[-1], 0, 2 * h - grad.shape[-2]))  # odd sizes: zeros for the cut
        return torch.ops.aten.upsample_bilinear2d_backward(full, [2 * h, 2 * w], list(grad.shape[:2]) + [h, w],
                                                           False, 2.0, 2.0)
    last = grad.dim() - 1
    return _up_adjoint(_up_adjoint(grad, last - 1, h), last, w)


def _every_other(x: Tensor, dim: int, start: int) -> Tensor:
    """Elements start, start+2, ... of x along ``dim`` (a strided view)."""
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, None, 2)
    return x[tuple(index)]


def _interleave_last(even: Tensor, odd: Tensor) -> Tensor:
    """(…, m) even and odd → (…, 2m) alternating; as one complex pack where the dtype allows (strided
    stores along the last axis are several times slower on CPU)."""
    if even.dtype in (torch.float32, torch.float64):
        return torch.view_as_real(torch.complex(even, odd)).flatten(-2)
    return torch.stack([even, odd], -1).flatten(-2)


def _up(x: Tensor, dim: int, length: int) -> Tensor:
    """Along ``dim`` (m → ``length`` = 2m or 2m−1): out[2i] = ¾x[i] + ¼x[i−1], out[2i+1] = ¾x[i] + ¼x[i+1], edges replicated."""
    m = x.shape[dim]
    last = dim == x.dim() - 1
    if last:
        even, odd = torch.empty_like(x), torch.empty_like(x)
    else:  # write straight into the interleaved rows
        shape = list(x.shape)
        shape[dim : dim + 1] = [m, 2]
        out = x.new_empty(shape)
        even, odd = out.unbind(dim + 1)
    torch.lerp(x.narrow(dim, 1, m - 1), x.narrow(dim, 0, m - 1), 0.25, out=even.narrow(dim, 1, m - 1))
    even.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
    torch.lerp(x.narrow(dim, 0, m - 1), x.narrow(dim, 1, m - 1), 0.25, out=odd.narrow(dim, 0, m - 1))
    odd.narrow(dim, m - 1, 1).copy_(x.narrow(dim, m - 1, 1))
    full = _interleave_last(even, odd) if last else out.flatten(dim, dim + 1)
    return full.narrow(dim, 0, length)


def _up_adjoint(grad: Tensor, dim: int, m: int) -> Tensor:
    """The adjoint of :func:`_up` along ``dim`` (length 2m or 2m−1 → m)."""
    even, odd = _every_other(grad, dim, 0), _every_other(grad, dim, 1)  # m and m or m−1 values
    if dim == grad.dim() - 1:
        even, odd = even.contiguous(), odd.contiguous()
    m_odd = odd.shape[dim]
    out = torch.mul(even, 0.75)
    out.narrow(dim, 0, m_odd).add_(odd, alpha=0.75)
    out.narrow(dim, 0, m - 1).add_(even.narrow(dim, 1, m - 1), alpha=0.25)
    out.narrow(dim, 1, m - 1).add_(odd.narrow(dim, 0, m - 1), alpha=0.25)
    out.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)
    if m_odd == m:  # the last odd value's ¼ went to the replicated edge
        out.narrow(dim, m - 1, 1).add_(odd.narrow(dim, m - 1, 1), alpha=0.25)
    return out


class _Upsample2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, height: int, width: int) -> Tensor:
        ctx.size = tuple(x.shape[-2:])
        last = x.dim() - 1
        return _up(_up(x, last, width), last - 1, height)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        return upsample2_adjoint(grad, ctx.size), None, None
