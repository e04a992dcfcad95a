"""Writing pre-image results: one PNG per image, a labelled grid, and the loss-curve plot.

Used by the ``invert`` / ``maximize`` / ``caricature`` commands; every file is written atomically
(``repscope.io``). matplotlib is imported only when a plot is drawn.

Example:
    >>> from repscope.preimage.outputs import plot_losses   # doctest: +SKIP
    >>> plot_losses(sweep.results, "out/loss.png")           # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_path
from .engine import PreimageResult

__all__ = ["save_images", "plot_losses", "plot_curves", "safe_name"]


def safe_name(text: str) -> str:
    """A file-name-safe version of a label (``blocks.3:(1, 2, 3)`` -> ``blocks.3_1_2_3``)."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.\-]+", "_", text)).strip("_") or "item"


def save_images(images01, names: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """Save each image (N, 3, H, W) in [0, 1] as ``out_dir/<name>.png``; returns the paths."""
    from ..images import save_image

    return [save_image(img, Path(out_dir) / f"{safe_name(n)}.png") for img, n in zip(images01, names)]


def plot_losses(results: Sequence[PreimageResult], path: str | os.PathLike, title: str = "") -> Path:
    """Plot the data term per iteration of every image of ``results`` (log scale when positive)."""
    curves = {}
    for res in results:
        data = res.data_losses.detach().cpu().float()
        for i in range(data.shape[1]):
            curves[res.labels[i] if i < len(res.labels) else str(len(curves))] = data[:, i].tolist()
    return plot_curves(curves, path, title)


def plot_curves(curves: dict[str, Sequence[float]], path: str | os.PathLike, title: str = "") -> Path:
    """Plot one data-term curve per label against the iteration (log scale when all positive), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    positive = all(v > 0 for curve in curves.values() for v in curve)
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), list(curve), label=label, linewidth=1)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("data term")
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
