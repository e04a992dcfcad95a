"""Figures of the per-layer analyses, drawn on :class:`matplotlib.figure.Figure` objects and written atomically.

A figure of its own per call: pyplot, its global figure list and the user's backend are never
touched (matplotlib is imported only when a plot is drawn).

Example:
    >>> import tempfile, os
    >>> path = loss_curves({"blocks.3": [0.9, 0.4, 0.2]}, os.path.join(tempfile.mkdtemp(), "loss.png"))
    >>> path.stat().st_size > 0
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .io import atomic_path

__all__ = ["loss_curves", "equivariance_plot"]


def _save(fig, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def loss_curves(curves: dict[str, Sequence[float]], path: str | os.PathLike, title: str = "") -> Path:
    """One data-term curve per label against the iteration (log scale when all values are positive)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    positive = all(v > 0 for curve in curves.values() for v in curve)
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), list(curve), label=label, linewidth=1)
    if positive:
        ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="data term", title=title)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, 100)


def equivariance_plot(rows, variants: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Equivariance error (left) and top-1 agreement (right) against depth, one line per variant.

    Args:
        rows: per layer, objects with ``layer``, ``error`` (variant -> Σ‖Φ(gx) − M_g Φ(x)‖² / Σ‖Φ(gx)‖²)
            and ``agreement`` (variant -> top-1 agreement with ψ(Φ(x)), or ``None`` throughout).
        variants: the variants to draw, in legend order.
    """
    from matplotlib.figure import Figure

    depth = list(range(len(rows)))
    has_agreement = bool(rows) and rows[0].agreement is not None
    fig = Figure(figsize=(11 if has_agreement else 6, 4))
    axes = fig.subplots(1, 2 if has_agreement else 1, squeeze=False)[0]
    for v in variants:
        axes[0].plot(depth, [r.error[v] for r in rows], marker="o", label=v)
    axes[0].set(ylabel="error  Σ‖Φ(gx) − M_g Φ(x)‖² / Σ‖Φ(gx)‖²", title="held-out error")
    if has_agreement:
        for v in variants:
            label = "invariant (uncompensated)" if v == "invariant" else v
            axes[1].plot(depth, [r.agreement[v] for r in rows], marker="o", label=label)
        axes[1].set(ylabel="top-1 agreement with ψ(Φ(x))", title="compensated agreement", ylim=(-0.02, 1.02))
    for a in axes:
        a.set_xticks(depth)
        a.set_xticklabels([r.layer for r in rows], rotation=45, ha="right", fontsize=8)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, 110)
