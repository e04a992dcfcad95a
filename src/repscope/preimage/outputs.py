"""Writing pre-image results: safe file names and the loss-curve plot (used by :mod:`.runs`).

Every file is written atomically (``repscope.io``). matplotlib is imported only when a plot is drawn.

Example:
    >>> from repscope.preimage.outputs import plot_curves           # doctest: +SKIP
    >>> plot_curves({"blocks.3": [0.9, 0.4, 0.2]}, "out/loss.png")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_path

__all__ = ["plot_curves", "safe_name"]


def safe_name(text: str) -> str:
    """A file-name-safe version of a label (``blocks.3:(1, 2, 3)`` -> ``blocks.3_1_2_3``)."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.\-]+", "_", text)).strip("_") or "item"


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
