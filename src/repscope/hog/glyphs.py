"""Glyph rendering of HOG features: one oriented stroke per orientation bin and cell.

As ``vl_hog('render', ...)`` and ``skimage.feature.hog(visualize=True)``: each cell becomes a
``cell_px × cell_px`` tile holding, for every orientation ``k``, a bar through the centre
*perpendicular* to the bin's gradient direction (i.e. along the image edge), with brightness
proportional to the bin's weight. UoCTTI weights are the sum of the two directed and the
undirected channel of orientation ``k`` (as VLFeat); Dalal–Triggs weights sum the ``k``-th bin
over the cells of each block.

Example:
    >>> import torch
    >>> from repscope.hog import hog
    >>> render_glyphs(hog(torch.rand(1, 3, 64, 64))[0], cell_px=12).shape
    torch.Size([3, 96, 96])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from repscope.errors import ShapeError

from ._common import as_pair


def glyph_bank(orientations: int, cell_px: int, offset: float, *, device=None, dtype=torch.float32) -> Tensor:
    """``(orientations, cell_px, cell_px)`` anti-aliased bars perpendicular to angle ``π (k + offset) / n``."""
    c = (cell_px - 1) / 2.0
    grid = torch.arange(cell_px, device=device, dtype=dtype) - c
    v, u = torch.meshgrid(grid, grid, indexing="ij")  # v: rows (y down), u: columns (x)
    theta = (torch.arange(orientations, device=device, dtype=dtype) + offset) * math.pi / orientations
    phi = (theta + math.pi / 2).view(-1, 1, 1)  # the edge runs perpendicular to the gradient
    along = u * torch.cos(phi) + v * torch.sin(phi)
    across = -u * torch.sin(phi) + v * torch.cos(phi)
    half = cell_px / 2.0 - 0.5
    return (1 - across.abs()).clamp(min=0) * (along.abs() <= half + 1e-6)


def orientation_weights(features: Tensor, hog=None) -> tuple[Tensor, float]:
    """Per-cell orientation weights ``(..., n, h, w)`` and the bin-centre offset (0 or 1/2) of a HOG map."""
    c = features.shape[-3]
    variant = getattr(hog, "variant", "uoctti")
    if variant == "uoctti":
        n = getattr(hog, "orientations", (c - 4) // 3)
        if c != 3 * n + 4:
            raise ShapeError(
                f"render_glyphs: {c} channels is not a UoCTTI map (3n+4); pass hog=<the HOG module> "
                "for Dalal-Triggs features."
            )
        return features[..., :n, :, :] + features[..., n : 2 * n, :, :] + features[..., 2 * n : 3 * n, :, :], 0.0
    n = hog.orientations
    b_r, b_c = as_pair(hog.cells_per_block, "cells_per_block")
    if c != b_r * b_c * n:
        raise ShapeError(f"render_glyphs: {c} channels do not match {hog.name} ({b_r * b_c * n}).")
    blocks = features.unflatten(-3, (b_r * b_c, n))
    return blocks.sum(-4), 0.5


def render_glyphs(features: Tensor, hog=None, *, cell_px: int = 16) -> Tensor:
    """Render HOG features as oriented strokes.

    Args:
        features: ``(C, h, w)`` or ``(N, C, h, w)`` HOG output (UoCTTI unless ``hog`` says otherwise).
        hog: the :class:`~repscope.hog.HOG` module that produced them (needed for Dalal–Triggs).
        cell_px: side in pixels of each cell's tile.

    Returns:
        ``(3, h·cell_px, w·cell_px)`` (or ``(N, 3, ...)``) grey image in [0, 1], white strokes on black.
    """
    if features.dim() not in (3, 4):
        raise ShapeError(f"render_glyphs expects (C,h,w) or (N,C,h,w) features, got {tuple(features.shape)}.")
    if cell_px < 3:
        raise ShapeError(f"render_glyphs: cell_px must be at least 3, got {cell_px}.")
    feats = features.detach()
    weights, offset = orientation_weights(feats, hog)
    bank = glyph_bank(weights.shape[-3], cell_px, offset, device=feats.device, dtype=feats.dtype)
    tiles = torch.einsum("...khw,kyx->...hywx", weights.clamp(min=0), bank)
    h, w = weights.shape[-2:]
    image = tiles.reshape(*tiles.shape[:-4], h * cell_px, w * cell_px)
    peak = image.flatten(-2).amax(-1).clamp(min=torch.finfo(image.dtype).tiny)[..., None, None]
    image = (image / peak).clamp(0, 1)
    return image.unsqueeze(-3).expand(*image.shape[:-2], 3, *image.shape[-2:]).contiguous()


__all__ = ["glyph_bank", "orientation_weights", "render_glyphs"]
