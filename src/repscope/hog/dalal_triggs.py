r"""Dalal–Triggs HOG, numerically identical to ``skimage.feature.hog``, as a differentiable torch op.

Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005, in the form
implemented by scikit-image (``skimage/feature/_hog.py``, ``_hoghistogram.pyx``):

1. Gradients per colour channel by central differences (no 1/2), zero on the border rows/columns:
   :math:`g_r = I_{y+1,x} - I_{y-1,x}`, :math:`g_c = I_{y,x+1} - I_{y,x-1}`; per pixel the channel
   with the largest :math:`|g| = \mathrm{hypot}(g_r, g_c)` is kept.
2. Unsigned orientation :math:`o = \mathrm{deg}(\mathrm{atan2}(g_r, g_c)) \bmod 180` is hard-binned:
   bin :math:`i` holds :math:`o \in [180 i/n, 180 (i+1)/n)`.
3. Cells are the non-overlapping ``cell`` tiles from the top-left corner
   (``H // cell_rows`` × ``W // cell_cols``; the remaining pixels only feed the gradients);
   :math:`h_i(\text{cell}) = \frac{1}{c_r c_c}\sum_{p \in \text{cell}, o_p \in \text{bin } i} |g_p|`.
4. Every ``b_r × b_c`` block of cells (stride one cell) is normalised (ε = 1e-5, as scikit-image):
   ``L1`` :math:`v/(\|v\|_1+ε)`; ``L1-sqrt`` :math:`\sqrt{v/(\|v\|_1+ε)}`;
   ``L2`` :math:`v/\sqrt{\|v\|_2^2+ε^2}`; ``L2-Hys`` ``L2``, then :math:`\min(\cdot, 0.2)`, then ``L2`` again.

Output layout: ``(N, b_r·b_c·n, n_blocks_row, n_blocks_col)``, channel index
``(i·b_c + j)·n + o`` for cell ``(i, j)`` of the block and orientation ``o`` — the ravel order of
scikit-image's ``(n_blocks_row, n_blocks_col, b_r, b_c, n)`` per block;
:func:`to_skimage_layout` converts.

Numerical note: scikit-image accumulates each cell in single precision (``cdef float total``), so
agreement is to ~1e-6 relative, not bitwise. Torch's ``atan2``/``hypot`` and the C library's (used
by numpy) may differ by one ulp, which flips a hard choice only at ties: gradients exactly on a
diagonal bin edge, or two colour channels of (nearly) equal magnitude. Those few pixels are
flagged and their bin is re-decided with numpy exactly as scikit-image decides it (channel by
``hypot`` in the image's precision, angle in float64), so the result is scikit-image's on the same
machine, for float64 and float32 images alike (the few flagged values cross to the CPU).

Example:
    >>> import torch
    >>> x = torch.rand(2, 3, 64, 64)
    >>> dalal_triggs_hog(x, orientations=9, cell=8, cells_per_block=3).shape
    torch.Size([2, 81, 6, 6])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from repscope.errors import ShapeError

from ._common import as_pair, border_gradients, check_images, magnitude, maybe_compiled, safe_sqrt, select_max

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
EPS = 1e-5  # scikit-image's block-normalisation epsilon


def _pixel_votes(images: Tensor, orientations: int, cell_of: Tensor, n_cells: int, diagonal_edges: bool):
    """Elementwise front end (compilable): per pixel of whole cells, magnitude, scatter index, doubt.

    Returns ``(magnitude (N,R,C) with autograd, index (N,R,C) into (n+1)·cells, doubtful (N,R,C))``;
    ``doubtful`` marks pixels whose hard choices may differ from numpy's by one-ulp effects: two
    channels of different gradients with magnitudes within 16 ulps, or an angle within 16 ulps of
    a 45°/135° bin edge.
    """
    rows, cols = cell_of.shape
    height, width = images.shape[-2:]
    g_row, g_col = border_gradients(images[:, :, : min(height, rows + 1), : min(width, cols + 1)])
    g_row, g_col = g_row[:, :, :rows, :cols], g_col[:, :, :rows, :cols]
    score = magnitude(g_row, g_col)
    best, row, col = select_max(score, g_row, g_col)
    o = torch.remainder(torch.rad2deg(torch.atan2(row, col)), 180.0)
    bins = torch.div(o, 180.0 / orientations, rounding_mode="floor").long().clamp(0, orientations)
    index = bins * n_cells + cell_of  # bin n (an angle rounding to 180°) is a spare slot
    tol = 16 * torch.finfo(images.dtype).eps
    doubtful = _near_ties(score.detach(), best.detach() * (1 - tol), g_row.detach(), g_col.detach(), row, col)
    if diagonal_edges:
        doubtful = doubtful | ((o - 45.0).abs() <= tol * 180) | ((o - 135.0).abs() <= tol * 180)
    return best, index, doubtful


def _near_ties(score: Tensor, floor: Tensor, g_row: Tensor, g_col: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """Pixels ``(N, H, W)`` where another channel with a different gradient scores at least ``floor``."""
    doubtful = torch.zeros_like(floor, dtype=torch.bool)
    g_row, g_col, row, col = (_bits(t) for t in (g_row, g_col, row, col))
    for c in range(score.shape[1]):  # the chosen channel has the chosen gradient: never flagged by itself
        doubtful |= (score[:, c] >= floor) & ((g_row[:, c] != row) | (g_col[:, c] != col))
    return doubtful


def _bits(t: Tensor) -> Tensor:
    """Float32/64 values as same-size integers: "!=" then compares bit patterns, 1.5x faster than
    float "!=" on CPU; it can only flag more (±0; NaN inputs give NaN features either way), and a
    flagged pixel is re-decided exactly."""
    kinds = {torch.float32: torch.int32, torch.float64: torch.int64}
    return t.view(kinds[t.dtype]) if t.dtype in kinds else t


def _fix_bins(images: Tensor, index: Tensor, doubtful: Tensor, orientations: int, n_cells: int) -> Tensor:
    """Re-decide the bins of doubtful pixels with numpy (rare: ties of measure zero)."""
    flat = doubtful.reshape(-1).nonzero().squeeze(1)
    if flat.numel() == 0:
        return index
    n_img, rows, cols = doubtful.shape
    height, width = images.shape[-2:]
    n, rest = flat // (rows * cols), flat % (rows * cols)
    y, x = rest // cols, rest % cols
    img = images.detach()
    up, down = (y + 1).clamp(max=height - 1), (y - 1).clamp(min=0)
    right, left = (x + 1).clamp(max=width - 1), (x - 1).clamp(min=0)
    g_row = (img[n, :, up, x] - img[n, :, down, x]).cpu().numpy()  # (K, C)
    g_col = (img[n, :, y, right] - img[n, :, y, left]).cpu().numpy()
    g_row[((y == 0) | (y == height - 1)).cpu().numpy()] = 0
    g_col[((x == 0) | (x == width - 1)).cpu().numpy()] = 0
    pick = np.hypot(g_row, g_col).argmax(1)  # in the image's precision, as skimage
    k = np.arange(len(pick))
    # skimage casts the chosen gradients to float64 before hypot/arctan2 and the bin comparisons
    r, c = g_row[k, pick].astype(np.float64), g_col[k, pick].astype(np.float64)
    o = np.rad2deg(np.arctan2(r, c)) % 180
    step = 180.0 / orientations
    edges = np.array([step * i for i in range(orientations + 1)])  # as skimage's loop
    bins = np.searchsorted(edges, o, side="right") - 1  # o >= 180 -> n (no bin)
    cells = index.reshape(-1)[flat] % n_cells
    index.view(-1)[flat] = torch.as_tensor(bins, device=index.device) * n_cells + cells  # a fresh tensor
    return index


def cell_histograms(
    images: Tensor, orientations: int = 9, cell: int | tuple[int, int] = 8, compiled: bool = False
) -> Tensor:
    """Per-cell orientation histograms (step 1–3 above) before block normalisation.

    Args:
        images: ``(N, C, H, W)`` float images (any range; [0, 1] in repscope).
        orientations: number ``n`` of unsigned orientation bins over [0°, 180°).
        cell: pixels per cell, ``int`` or ``(rows, cols)``.
        compiled: run the per-pixel front end through ``torch.compile`` (see :mod:`repscope.hog`).

    Returns:
        ``(N, n, H // cell_rows, W // cell_cols)``, mean gradient magnitude per bin and cell.
    """
    c_r, c_c = as_pair(cell, "cell")
    check_images(images, max(3, c_r, c_c), "Dalal-Triggs HOG")
    n_img, _, height, width = images.shape
    n_r, n_c = height // c_r, width // c_c
    device = images.device
    cell_of = (torch.arange(n_r * c_r, device=device) // c_r).view(-1, 1) * n_c + (
        torch.arange(n_c * c_c, device=device) // c_c)
    front = maybe_compiled(_pixel_votes, compiled)
    mag, index, doubtful = front(images, orientations, cell_of, n_r * n_c, orientations % 4 == 0)
    index = _fix_bins(images, index, doubtful, orientations, n_r * n_c)
    hist = mag.new_zeros(n_img, (orientations + 1) * n_r * n_c)
    hist = hist.scatter_add(1, index.reshape(n_img, -1), mag.reshape(n_img, -1))
    hist = hist[:, : orientations * n_r * n_c].view(n_img, orientations, n_r, n_c)
    return hist / (c_r * c_c)


def normalize_blocks(hist: Tensor, cells_per_block: int | tuple[int, int] = 3, block_norm: str = "L2-Hys") -> Tensor:
    """Block normalisation (step 4 above).

    Args:
        hist: ``(N, n, cells_rows, cells_cols)`` cell histograms.
        cells_per_block: ``b`` or ``(b_r, b_c)``.
        block_norm: one of ``L1``, ``L1-sqrt``, ``L2``, ``L2-Hys``.

    Returns:
        ``(N, b_r·b_c·n, cells_rows - b_r + 1, cells_cols - b_c + 1)``.
    """
    b_r, b_c = as_pair(cells_per_block, "cells_per_block")
    n_img, n, h, w = hist.shape
    nb_r, nb_c = h - b_r + 1, w - b_c + 1
    if nb_r <= 0 or nb_c <= 0:
        raise ShapeError(
            f"Dalal-Triggs HOG: {h}x{w} cells cannot hold a {b_r}x{b_c} block; "
            "use larger images, a smaller cell or fewer cells_per_block."
        )
    blocks = torch.stack(
        [hist[:, :, i : i + nb_r, j : j + nb_c] for i in range(b_r) for j in range(b_c)], dim=1
    ).reshape(n_img, b_r * b_c * n, nb_r, nb_c)
    if block_norm == "L1":
        return blocks / (blocks.abs().sum(1, keepdim=True) + EPS)
    if block_norm == "L1-sqrt":
        return safe_sqrt(blocks / (blocks.abs().sum(1, keepdim=True) + EPS))
    if block_norm in ("L2", "L2-Hys"):
        out = blocks / torch.sqrt(blocks.pow(2).sum(1, keepdim=True) + EPS**2)
        if block_norm == "L2-Hys":
            out = out.clamp(max=0.2)
            out = out / torch.sqrt(out.pow(2).sum(1, keepdim=True) + EPS**2)
        return out
    raise ShapeError(f"unknown block_norm '{block_norm}'; use one of {', '.join(BLOCK_NORMS)}.")


def dalal_triggs_hog(
    images: Tensor,
    orientations: int = 9,
    cell: int | tuple[int, int] = 8,
    cells_per_block: int | tuple[int, int] = 3,
    block_norm: str = "L2-Hys",
    compiled: bool = False,
) -> Tensor:
    """Dalal–Triggs HOG with scikit-image's definition; see the module docstring for the formula.

    Args:
        images: ``(N, C, H, W)`` float images in [0, 1] (C = 3 for RGB; 1 works too).
        orientations: unsigned orientation bins ``n``.
        cell: pixels per cell (``pixels_per_cell``).
        cells_per_block: cells per block (``cells_per_block``).
        block_norm: ``L1``, ``L1-sqrt``, ``L2`` or ``L2-Hys``.
        compiled: run the per-pixel front end through ``torch.compile``.

    Returns:
        ``(N, b_r·b_c·n, n_blocks_row, n_blocks_col)`` normalised block descriptors.
    """
    if block_norm not in BLOCK_NORMS:
        raise ShapeError(f"unknown block_norm '{block_norm}'; use one of {', '.join(BLOCK_NORMS)}.")
    hist = cell_histograms(images, orientations, cell, compiled)
    # eager on purpose: TorchInductor (torch 2.11, CUDA) compiled it wrong (values off by up to 0.66);
    # it works on 64x fewer values than the per-pixel front end, so compiling it gained little
    return normalize_blocks(hist, cells_per_block, block_norm)


def to_skimage_layout(features: Tensor, orientations: int, cells_per_block: int | tuple[int, int] = 3) -> Tensor:
    """``(N, b_r·b_c·n, R, C)`` -> scikit-image's ``(N, R, C, b_r, b_c, n)`` (a view-based permute)."""
    b_r, b_c = as_pair(cells_per_block, "cells_per_block")
    n_img, _, rows, cols = features.shape
    return features.permute(0, 2, 3, 1).reshape(n_img, rows, cols, b_r, b_c, orientations)


__all__ = [
    "BLOCK_NORMS",
    "cell_histograms",
    "dalal_triggs_hog",
    "normalize_blocks",
    "to_skimage_layout",
]
