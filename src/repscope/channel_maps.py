"""Fitted channel maps W (as ``k×k`` convolutions) and the best channel permutation.

A channel map is what equivariance (``M_g = g' ∘ W``), equivalence and stitching fit between two
representations: a ``1×1`` convolution (``k = 1``), a small spatial support (``k×k``), or a linear
map on vectors. :class:`ChannelMap` holds its weight in the layout of a ``conv2d`` weight, however it
was fitted (ridge statistics, :mod:`repscope.regression`; a task loss), so fitted maps are swappable.

Example:
    >>> import torch
    >>> w = ChannelMap(torch.eye(3).reshape(3, 3, 1, 1))           # the identity 1×1 map
    >>> x = torch.rand(2, 3, 4, 4)
    >>> bool(torch.equal(w(x), x)), w.kernel
    (True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .regression import StreamingRidge, apply_map

__all__ = ["ChannelMap", "best_permutation", "centre_taps"]


@dataclass(frozen=True)
class ChannelMap:
    """A channel map W as a ``k×k`` convolution (``k = 1``: a 1×1 map; vectors: a linear map)::

        (W Φ)[j](p) = Σ_{c, dy, dx} weight[j, c, dy, dx] · Φ[c](p + (dy, dx) − k//2) + bias[j]

    Attributes:
        weight: ``(C_out, C_in, k, k)``. bias: ``(C_out,)`` or None.
    """

    weight: Tensor
    bias: Tensor | None = None

    @classmethod
    def from_rows(cls, weight: Tensor, bias: Tensor | None, kernel: int) -> ChannelMap:
        """From a solution ``(C_out, C_in·k²)`` on :func:`~repscope.regression.stack_neighbours` rows."""
        return cls(weight.reshape(weight.shape[0], -1, kernel, kernel), bias)

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    def on_rows(self, rows: Tensor) -> Tensor:
        """``(n, C_in·k²)`` stacked-neighbour rows -> ``(n, C_out)``: ``rows Wᵀ + b``."""
        out = rows @ self.weight.reshape(self.weight.shape[0], -1).T.to(rows)
        return out if self.bias is None else out + self.bias.to(rows)

    def __call__(self, feats: Tensor) -> Tensor:
        """``(N, C_in, h, w)`` -> ``(N, C_out, h, w)`` (zero padding), or ``(N, C_in)`` -> ``(N, C_out)``."""
        return apply_map(feats, self.weight.reshape(self.weight.shape[0], -1), self.bias, self.kernel)


def centre_taps(channels: int, kernel: int) -> Tensor:
    """Indices of the centre tap of each channel among :func:`~repscope.regression.stack_neighbours` channels."""
    return torch.arange(channels) * kernel * kernel + (kernel * kernel) // 2


def best_permutation(stats: StreamingRidge, channels: int, kernel: int) -> Tensor:
    """``perm`` with ``W[j] = Φ[perm[j]]`` maximising the summed correlation of the centre taps."""
    from scipy.optimize import linear_sum_assignment

    corr = stats.correlation()[centre_taps(channels, kernel)].cpu().numpy()  # (C_in, C_out)
    rows, cols = linear_sum_assignment(-corr)
    perm = torch.empty(len(cols), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return perm
