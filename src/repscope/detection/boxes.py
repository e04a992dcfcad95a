"""Boxes ``(x1, y1, x2, y2)`` in image pixels and the R-CNN box-regression parameterisation.

A proposal ``P = (Px, Py, Pw, Ph)`` (centre, width, height) and its ground truth ``G`` give the
regression targets of Girshick et al. (R-CNN, appendix C; Fast R-CNN eq. 2):

.. math::
    t_x = (G_x - P_x) / P_w,\\quad t_y = (G_y - P_y) / P_h,\\quad
    t_w = \\log(G_w / P_w),\\quad t_h = \\log(G_h / P_h)

:func:`encode` computes ``t`` and :func:`decode` inverts it; IoU and NMS are ``torchvision.ops``.
Widths are ``x2 - x1`` (continuous coordinates, no +1).
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, nms

from ..errors import ShapeError

__all__ = ["box_iou", "nms", "batched_nms", "clip_boxes_to_image", "encode", "decode", "check_boxes",
           "BBOX_CLIP"]

#: Largest |t_w|, |t_h| accepted by :func:`decode` (log(1000/16), as torchvision) so exp() cannot overflow.
BBOX_CLIP = math.log(1000.0 / 16)


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode(proposals: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression targets ``t (M, 4)`` taking ``proposals (M, 4)`` to ``targets (M, 4)`` (formula above)."""
    px, py, pw, ph = _centre_size(proposals)
    gx, gy, gw, gh = _centre_size(targets)
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1)


def decode(proposals: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Boxes ``(M, 4)`` from ``proposals (M, 4)`` and ``deltas (M, 4)``: the inverse of :func:`encode`."""
    px, py, pw, ph = _centre_size(proposals)
    dw = deltas[:, 2].clamp(max=BBOX_CLIP)
    dh = deltas[:, 3].clamp(max=BBOX_CLIP)
    cx, cy = px + deltas[:, 0] * pw, py + deltas[:, 1] * ph
    w, h = pw * torch.exp(dw), ph * torch.exp(dh)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)


def check_boxes(boxes: torch.Tensor, height: int, width: int, what: str = "boxes") -> torch.Tensor:
    """``boxes`` as a float ``(M, 4)`` tensor inside an ``height x width`` image, else a one-line error."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ShapeError(f"{what} must have shape (M, 4) as (x1, y1, x2, y2), got {tuple(boxes.shape)}.")
    if not torch.isfinite(boxes).all():
        raise ShapeError(f"{what} contain NaN or Inf. Give finite pixel coordinates.")
    if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ShapeError(f"{what} need x2 > x1 and y2 > y1 (x1, y1, x2, y2 in pixels). Fix the box order.")
    tol = 0.5
    outside = (boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > width + tol) | (boxes[:, 3] > height + tol)
    if outside.any():
        bad = boxes[outside][0].tolist()
        raise ShapeError(f"{int(outside.sum())} of the {what} lie outside the {width}x{height} image "
                         f"(first: {[round(v, 1) for v in bad]}). Clip them to the image.")
    return boxes
