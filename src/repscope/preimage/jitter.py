r"""Jitter: every iteration, each image is cut from a random place of a slightly larger canvas.

The pre-image is optimised on a canvas (N, 3, H+j, W+j) in the papers' space (0–255, mean colour
subtracted); Φ sees the crop at offset τ_n ∈ {0..j}² of image n, converted to [0, 1]:

.. math::

    \mathrm{images01}_n = (\mathrm{crop}_{\tau_n}(x_n) + m) / 255

Each image draws its offsets from its own generator, so a batch of N equals N single runs.
:func:`crop_images01` is one autograd function: one pass forward (crop and conversion together),
one zero-fill and N scaled slice copies backward (autograd's own slicing of a stack would zero-fill
the whole batch once per image).

Example:
    >>> import torch
    >>> canvas = torch.zeros(2, 3, 10, 10)
    >>> crop_images01(canvas, [(0, 0), (2, 1)], (8, 8), torch.zeros(1, 3, 1, 1)).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["offsets", "crop_images01"]


def offsets(generators: Sequence[torch.Generator], jitter: int) -> list[tuple[int, int]]:
    """One random (dy, dx) in {0..jitter}² per image, drawn from that image's generator."""
    return [tuple(int(o) for o in torch.randint(0, jitter + 1, (2,), generator=g)) for g in generators]


class _CropImages01(torch.autograd.Function):
    @staticmethod
    def forward(ctx, canvas: Tensor, where: tuple, h: int, w: int, mean: Tensor) -> Tensor:
        ctx.where, ctx.canvas_shape = where, canvas.shape
        mean01 = mean / 255
        if all(o == where[0] for o in where):
            dy, dx = where[0]
            return torch.add(mean01, canvas[:, :, dy : dy + h, dx : dx + w], alpha=1 / 255)
        out = canvas.new_empty(canvas.shape[:2] + (h, w))
        for n, (dy, dx) in enumerate(where):
            torch.add(mean01[0], canvas[n, :, dy : dy + h, dx : dx + w], alpha=1 / 255, out=out[n])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, w = grad.shape[-2:]
        out = grad.new_zeros(ctx.canvas_shape)
        for n, (dy, dx) in enumerate(ctx.where):
            torch.mul(grad[n], 1 / 255, out=out[n, :, dy : dy + h, dx : dx + w])
        return out, None, None, None, None


def crop_images01(canvas: Tensor, where: Sequence[tuple[int, int]], size: tuple[int, int], mean: Tensor) -> Tensor:
    """Images (N, 3, H, W) in [0, 1] cut from ``canvas`` (N, 3, H+j, W+j, papers' space) at ``where``.

    Args:
        canvas: (N, 3, H+j, W+j), 0–255 with the mean colour subtracted.
        where: N offsets (dy, dx), each in {0..j}².
        size: (H, W).
        mean: mean colour (1, 3, 1, 1) in 0–255 units.
    """
    return _CropImages01.apply(canvas, tuple(tuple(o) for o in where), int(size[0]), int(size[1]), mean)
