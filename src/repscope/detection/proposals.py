"""Region proposals: Selective Search (Uijlings et al. 2013, OpenCV contrib) and a sliding-window grid.

Both return float boxes ``(M, 4)`` as ``(x1, y1, x2, y2)`` in image pixels, at most ``limit`` of them.
Selective Search runs OpenCV's ``ximgproc.segmentation`` in its ``fast`` or ``quality`` mode on one
thread; its boxes are put in a seeded order, so the output is reproducible; R-CNN used the quality mode (~2000 boxes).
The grid is deterministic: square windows of several sides, stretched to several aspect ratios, slid
with a stride of a quarter of the window side (or coarser, to respect ``limit``).

Example:
    >>> import torch
    >>> boxes = grid_proposals(96, 128, limit=50)
    >>> boxes.shape[1], bool((boxes[:, 2] <= 128).all())
    (4, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import RepscopeError, ShapeError
from ..images import to_uint8

METHODS = ("grid", "ss-fast", "ss-quality")


class ProposalError(RepscopeError):
    """No proposals could be made (empty image, or every box was too small)."""


def _check_image(image01: torch.Tensor) -> tuple[int, int]:
    if not isinstance(image01, torch.Tensor) or image01.dim() != 3 or image01.shape[0] != 3:
        shape = tuple(image01.shape) if isinstance(image01, torch.Tensor) else type(image01).__name__
        raise ShapeError(f"expected one image (3, H, W) in [0, 1], got {shape}. Pass images one at a time.")
    h, w = int(image01.shape[1]), int(image01.shape[2])
    if h < 2 or w < 2:
        raise ShapeError(f"the image is empty ({w}x{h} pixels). Give an image of at least 2x2 pixels.")
    return h, w


def grid_proposals(height: int, width: int, *, limit: int = 500, scales: tuple[float, ...] = (0.2, 0.3, 0.45, 0.65, 0.9),
                   aspects: tuple[float, ...] = (0.5, 1.0, 2.0)) -> torch.Tensor:
    """A multi-scale sliding-window grid of at most ``limit`` boxes ``(M, 4)`` for an ``height x width`` image.

    A window of side ``s·min(H, W)`` at aspect ``a`` (width / height) has size ``(s√a, s/√a)·min(H, W)``,
    clipped to the image; its centres step by ``side/4`` (multiplied by 1.25 until the count fits ``limit``).
    """
    if limit < 1:
        raise ProposalError(f"--proposals must be at least 1, got {limit}.")
    step_factor = 0.25
    while True:
        boxes = []
        for s in scales:
            for a in aspects:
                bw = min(width, s * min(height, width) * math.sqrt(a))
                bh = min(height, s * min(height, width) / math.sqrt(a))
                step = max(step_factor * min(bw, bh), 1.0)
                xs = np.arange(0.0, width - bw + 1e-6, step)
                ys = np.arange(0.0, height - bh + 1e-6, step)
                xs = np.append(xs, width - bw) if xs[-1] < width - bw - 0.5 else xs
                ys = np.append(ys, height - bh) if ys[-1] < height - bh - 0.5 else ys
                gx, gy = np.meshgrid(xs, ys)
                boxes.append(np.stack([gx.ravel(), gy.ravel(), gx.ravel() + bw, gy.ravel() + bh], 1))
        out = np.unique(np.round(np.concatenate(boxes), 2), axis=0)
        if len(out) <= limit or step_factor > 4:
            return torch.as_tensor(out[:limit], dtype=torch.float32)
        step_factor *= 1.25


def selective_search(image01: torch.Tensor, *, mode: str = "fast", limit: int = 2000, min_size: int = 8,
                     seed: int = 0) -> torch.Tensor:
    """Selective Search boxes ``(M, 4)`` for ``image01 (3, H, W)``, deduplicated, in a seeded random order.

    ``mode`` is ``"fast"`` or ``"quality"``; boxes with a side below ``min_size`` pixels are dropped.
    OpenCV returns the same set of boxes on every run but ranks them with an unseeded random number
    (``setRNGSeed`` does not reach it), so the set is sorted and shuffled with ``seed``: a capped
    list is a uniform, reproducible subset.
    """
    import cv2

    h, w = _check_image(image01)
    if mode not in ("fast", "quality"):
        raise ProposalError(f"unknown selective search mode '{mode}'. Use 'fast' or 'quality'.")
    cv2.setNumThreads(1)
    cv2.setRNGSeed(seed)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(to_uint8(image01)[:, :, ::-1]))  # OpenCV wants BGR
    ss.switchToSelectiveSearchFast() if mode == "fast" else ss.switchToSelectiveSearchQuality()
    rects = ss.process()
    if rects is None or len(rects) == 0:
        raise ProposalError("selective search found no regions in the image. Use --proposal-method grid.")
    rects = np.asarray(rects, dtype=np.float64)  # (x, y, w, h)
    boxes = np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]], 1)
    keep = (rects[:, 2] >= min_size) & (rects[:, 3] >= min_size)
    boxes = np.unique(boxes[keep], axis=0)  # canonical order: OpenCV ranks with an unseeded random draw
    boxes = boxes[np.random.default_rng(seed).permutation(len(boxes))][:limit]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    if len(boxes) == 0:
        raise ProposalError(f"selective search gave no box of at least {min_size} px. Use a larger image.")
    return torch.as_tensor(boxes, dtype=torch.float32)


def propose(image01: torch.Tensor, method: str = "grid", limit: int = 500, seed: int = 0) -> torch.Tensor:
    """Proposals for one image by ``method`` (``grid``, ``ss-fast``, ``ss-quality``), at most ``limit``."""
    h, w = _check_image(image01)
    if method == "grid":
        return grid_proposals(h, w, limit=limit)
    if method in ("ss-fast", "ss-quality"):
        return selective_search(image01, mode=method[3:], limit=limit, seed=seed)
    raise ProposalError(f"unknown proposal method '{method}'. Use one of {', '.join(METHODS)}.")
