"""Pictures of detections: boxes drawn on an image, and precision-recall curves (written atomically)."""

from __future__ import annotations

import io as _io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import io
from ..images import to_uint8
from .metrics import Detections

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230)]


def draw_detections(image01: torch.Tensor, detections: Detections, class_names: Sequence[str], path: str | os.PathLike,
                    top: int = 10, min_score: float = 0.0) -> Path:
    """``image01 (3, H, W)`` with the ``top`` best boxes (score ≥ ``min_score``) labelled "class score", as PNG."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(to_uint8(image01))
    draw = ImageDraw.Draw(picture)
    order = torch.argsort(detections.scores, descending=True)[:top]
    for rank, i in enumerate(order.tolist()):
        score = float(detections.scores[i])
        if score < min_score and rank > 0:
            continue
        x1, y1, x2, y2 = detections.boxes[i].tolist()
        label = int(detections.labels[i])
        colour = _COLOURS[label % len(_COLOURS)]
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=3 if rank == 0 else 2)
        text = f"{class_names[label].split(',')[0]} {score:.2f}"
        tx, ty = x1 + 2, max(y1 - 12, 0)
        draw.rectangle([tx - 1, ty, tx + 6 * len(text) + 2, ty + 11], fill=colour)
        draw.text((tx, ty), text, fill=(0, 0, 0))
    buffer = _io.BytesIO()
    picture.save(buffer, format="PNG")
    return io.write_bytes(path, buffer.getvalue())


def plot_pr(curves: Sequence, class_names: Sequence[str], aps: Sequence[float], path: str | os.PathLike,
            title: str = "") -> Path:
    """Precision against recall, one line per class with ground truth, AP in the legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for name, curve, ap in zip(class_names, curves, aps):
        if curve is None or math.isnan(ap):
            continue
        precision, recall = curve
        ax.plot(list(recall), list(precision), marker=".", markersize=3, label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
