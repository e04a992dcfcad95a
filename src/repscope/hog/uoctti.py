r"""UoCTTI HOG (Felzenszwalb et al.) as VLFeat's ``vl_hog`` computes it, as a differentiable torch op.

Felzenszwalb, Girshick, McAllester, Ramanan, "Object Detection with Discriminatively Trained
Part-Based Models", PAMI 2010; implementation: VLFeat ``vl/hog.c`` (``VlHogVariantUoctti``), the
HOG that Mahendran & Vedaldi (CVPR 2015) invert.

1. Gradient at interior pixels (the one-pixel image border contributes nothing):
   :math:`g_x = I_{y,x+1} - I_{y,x-1}`, :math:`g_y = I_{y+1,x} - I_{y-1,x}` (y down), of the channel
   with the largest :math:`g_x^2 + g_y^2`.
2. Directed orientation :math:`\theta = \mathrm{atan2}(g_y, g_x) \in [0, 2\pi)` (clockwise from the
   x axis on screen) falls into ``2n`` bins centred at :math:`k\pi/n`: hard assignment to the
   nearest centre (VLFeat's default), or, with ``bilinear_orientations``, linear interpolation
   between the two nearest centres (M&V's "HOGb").
3. Spatial bilinear binning: pixel :math:`x` votes :math:`|g|\,(1 - |h_x - j|)^+` into cell column
   :math:`j`, with :math:`h_x = (x + 1/2)/\text{cell} - 1/2` (same for rows);
   ``(H + cell//2) // cell`` × ``(W + cell//2) // cell`` cells. Gives :math:`h_k(\text{cell})`, k < 2n.
4. Cell energy :math:`E = \sum_{k<n} (h_k + h_{k+n})^2`; for each of the four 2×2 blocks around a
   cell (borders replicated) a factor :math:`f_i = 1/\sqrt{\sum_{\text{block}} E + 10^{-4}}`.
5. Features (``3n + 4`` = 31 channels for n = 9), with :math:`\tau(v) = \min(v, 0.2)`:
   channels ``0..2n-1`` :math:`\tfrac12\sum_i \tau(f_i h_k)` (contrast sensitive);
   ``2n..3n-1`` :math:`\tfrac12\sum_i \tau(f_i (h_k + h_{k+n}))` (contrast insensitive);
   ``3n..3n+3`` :math:`\tfrac{1}{\sqrt{18}}\sum_{k<n} \tau(f_i (h_k + h_{k+n}))` for blocks
   i = up-left, up-right, down-left, down-right (texture energy).

The ``10^{-4}`` of step 4 is VLFeat's; gradients are differentiable almost everywhere (hard bin
and channel choices are piecewise constant; the magnitude's and ``atan2``'s derivatives are set
to 0 at a zero gradient). Values equal VLFeat's up to float rounding; images are in [0, 1] (as
``vl_hog(im2single(I))``).

Example:
    >>> import torch
    >>> uoctti_hog(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 31, 8, 8])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import (
    bilinear_matrix,
    check_images,
    interior_gradients,
    magnitude,
    maybe_compiled,
    safe_atan2,
    select_max,
)

NORM_EPS = 1e-4  # VLFeat ("as implemented in UOCTTI code")
CLAMP = 0.2
TEXTURE_SCALE = 1.0 / math.sqrt(18.0)


def _pixel_votes(images: Tensor, orientations: int, cell: int, w_cells: int, bilinear: bool):
    """Elementwise front end (compilable): the votes of the interior pixels (steps 1–2, columns of 3).

    Pixel column ``x`` lies between cell centres ``s-1`` and ``s`` (``s = floor(h_x) + 1``) and gives
    ``(1 - t)`` of its vote to cell ``s-1`` and ``t`` to cell ``s``. Each vote is returned as
    ``(index, value, t·value)`` with ``index = bin·rows·(w+2) + row·(w+2) + s``, plus ``doubtful``:
    hard-binned pixels within rounding error of a half-way angle (decided afterwards, as VLFeat).
    """
    n_dir = 2 * orientations
    g_y, g_x = interior_gradients(images)  # (N, C, H-2, W-2): the border pixels do not vote
    mag, g_y, g_x = select_max(magnitude(g_y, g_x), g_y, g_x, detach=not bilinear)
    rows, cols = mag.shape[-2:]
    if bilinear:
        pos = torch.remainder(safe_atan2(g_y, g_x), 2 * math.pi) * (orientations / math.pi)
        low = torch.floor(pos.detach())
        w_high = pos - low
        low = low.long().remainder(n_dir)
        bins_weights = [(low, mag * (1 - w_high)), ((low + 1).remainder(n_dir), mag * w_high)]
        doubtful = torch.zeros_like(mag, dtype=torch.bool)
    else:
        pos = torch.atan2(g_y, g_x) * (orientations / math.pi)
        low = torch.floor(pos)
        frac = pos - low
        bins_weights = [((low + (frac >= 0.5)).long().remainder(n_dir), mag)]
        doubtful = (frac - 0.5).abs() < 64 * n_dir * torch.finfo(pos.dtype).eps
    hx = (torch.arange(cols, device=images.device, dtype=mag.dtype) + 1.5) / cell - 0.5  # x = p + 1
    seg = torch.floor(hx)
    t = hx - seg
    slots = w_cells + 2
    base = (torch.arange(rows, device=images.device) * slots).view(-1, 1) + (seg.long() + 1).clamp(0, w_cells + 1)
    votes = [(o_bin * (rows * slots) + base, value, value * t) for o_bin, value in bins_weights]
    return votes, doubtful


def _vlfeat_bins(images: Tensor, flat: Tensor, rows: int, cols: int, orientations: int) -> Tensor:
    """VLFeat's hard directed bin of a few interior pixels (flat indices into ``(N, rows, cols)``).

    The channel of largest ``g_x² + g_y²`` (first on ties), float32 direction tables, the first
    ``k`` of largest ``|projection|`` of the normalised gradient; negative means bin ``k + n``.
    """
    img = images.detach()
    n, rest = flat // (rows * cols), flat % (rows * cols)
    y, x = rest // cols + 1, rest % cols + 1
    gx = img[n, :, y, x + 1] - img[n, :, y, x - 1]  # (K, C)
    gy = img[n, :, y + 1, x] - img[n, :, y - 1, x]
    pick = (gx * gx + gy * gy).argmax(1, keepdim=True)
    gx, gy = gx.gather(1, pick), gy.gather(1, pick)
    angles = torch.arange(orientations, device=img.device, dtype=torch.float64) * (math.pi / orientations)
    cos = torch.cos(angles).float().to(img.dtype)
    sin = torch.sin(angles).float().to(img.dtype)
    norm = torch.sqrt(gx * gx + gy * gy).clamp(min=1e-10)
    score = (gx / norm) * cos + (gy / norm) * sin
    k = score.abs().argmax(1, keepdim=True)
    return (k + orientations * (score.gather(1, k) < 0)).squeeze(1)


def uoctti_histograms(
    images: Tensor, cell: int = 8, orientations: int = 9, bilinear_orientations: bool = False,
    compiled: bool = False,
) -> Tensor:
    """Directed orientation histograms per cell (steps 1–3), before normalisation.

    Args:
        images: ``(N, C, H, W)`` float images in [0, 1].
        cell: cell side in pixels.
        orientations: ``n``; there are ``2n`` directed bins of ``180/n`` degrees.
        bilinear_orientations: interpolate between the two nearest orientation bins.
        compiled: run the per-pixel front end through ``torch.compile``.

    Returns:
        ``(N, 2n, (H + cell//2)//cell, (W + cell//2)//cell)``.
    """
    check_images(images, max(4, cell), "UoCTTI HOG")
    n_img, _, height, width = images.shape
    n_dir = 2 * orientations
    h_cells, w_cells = (height + cell // 2) // cell, (width + cell // 2) // cell
    rows, cols, slots = height - 2, width - 2, w_cells + 2
    front = maybe_compiled(_pixel_votes, compiled)
    votes, doubtful = front(images, orientations, cell, w_cells, bool(bilinear_orientations))
    flat = doubtful.reshape(-1).nonzero().squeeze(1)
    if flat.numel():
        index, value, value_t = votes[0]  # index: a fresh int64 tensor without autograd
        stride = rows * slots
        index.view(-1)[flat] = _vlfeat_bins(images, flat, rows, cols, orientations) * stride + (
            index.view(-1)[flat] % stride)
        votes = [(index, value, value_t)]
    total = votes[0][1].new_zeros(n_img, n_dir * rows * slots)
    upper = total.new_zeros(n_img, n_dir * rows * slots)
    for index, value, value_t in votes:
        index = index.reshape(n_img, -1)
        total = total.scatter_add(1, index, value.reshape(n_img, -1))
        upper = upper.scatter_add(1, index, value_t.reshape(n_img, -1))
    total = total.view(n_img, n_dir, rows, slots)
    upper = upper.view(n_img, n_dir, rows, slots)
    acc = (total - upper)[..., 1 : w_cells + 1] + upper[..., :w_cells]  # (N, 2n, rows, w)
    wy = bilinear_matrix(rows, cell, h_cells, 1, acc)  # (h, rows)
    return torch.matmul(wy, acc)


def uoctti_normalize(hist: Tensor) -> Tensor:
    """Block normalisation and feature assembly (steps 4–5).

    Args:
        hist: ``(N, 2n, h, w)`` directed histograms from :func:`uoctti_histograms`.

    Returns:
        ``(N, 3n + 4, h, w)`` UoCTTI features.
    """
    n = hist.shape[1] // 2
    undirected = hist[:, :n] + hist[:, n:]
    energy = undirected.pow(2).sum(1, keepdim=True)  # (N, 1, h, w)
    padded = F.pad(energy, (1, 1, 1, 1), mode="replicate")
    blocks = padded[..., :-1, :-1] + padded[..., 1:, :-1] + padded[..., :-1, 1:] + padded[..., 1:, 1:]
    inv = torch.rsqrt(blocks + NORM_EPS)  # (N, 1, h+1, w+1): block whose top-left cell is (y-1, x-1)
    factors = torch.stack(
        [inv[..., :-1, :-1], inv[..., :-1, 1:], inv[..., 1:, :-1], inv[..., 1:, 1:]], dim=0
    )  # (4, N, 1, h, w): up-left, up-right, down-left, down-right
    directed = (factors * hist).clamp(max=CLAMP)  # (4, N, 2n, h, w)
    insensitive = (factors * undirected).clamp(max=CLAMP)  # (4, N, n, h, w)
    texture = TEXTURE_SCALE * insensitive.sum(2)  # (4, N, h, w)
    return torch.cat([0.5 * directed.sum(0), 0.5 * insensitive.sum(0), texture.permute(1, 0, 2, 3)], dim=1)


def uoctti_hog(
    images: Tensor, cell: int = 8, orientations: int = 9, bilinear_orientations: bool = False,
    compiled: bool = False,
) -> Tensor:
    """UoCTTI HOG; see the module docstring for the formula.

    Args:
        images: ``(N, C, H, W)`` float images in [0, 1] (C = 3 RGB; 1 works too).
        cell: cell side in pixels (8 in VLFeat and M&V).
        orientations: ``n`` undirected orientations (9); features have ``3n + 4`` channels.
        bilinear_orientations: bilinear orientation assignment (M&V's "HOGb") instead of hard.
        compiled: run the per-pixel and normalisation stages through ``torch.compile``.

    Returns:
        ``(N, 3n + 4, (H + cell//2)//cell, (W + cell//2)//cell)``.
    """
    hist = uoctti_histograms(images, cell, orientations, bilinear_orientations, compiled)
    return maybe_compiled(uoctti_normalize, compiled)(hist)


__all__ = ["uoctti_histograms", "uoctti_hog", "uoctti_normalize"]
