"""Resumable pre-image runs that write an output folder (used by the ``invert``, ``maximize`` and
``caricature`` commands).

A run is a list of items (one per layer, or per unit), computed in chunks. As soon as a chunk
finishes, each item's PNG is written and the item (metrics, hyperparameters, loss curve, file) is
recorded in ``result.json`` (:class:`~repscope.sweep.SweepRecord`), all atomically. An interrupted
run keeps its finished items; run again with ``resume=True`` it computes only the rest, and its
final folder equals that of an uninterrupted run (timings aside). The grid and the loss plot are
drawn from the recorded items, so they do not depend on which run computed them.

Example:
    >>> def compute(start, keys):                        # doctest: +SKIP
    ...     res = invert(Representation(model, keys[0]), x)
    ...     return [(res.records()[0], res.images01[0], res.data_losses[:, 0])]
    >>> record = run_items(out, {"iters": 200}, ["blocks.0", "blocks.3"], compute)   # doctest: +SKIP
    >>> finish_items(out, record, title="invert")         # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import OptimisationError
from ..images import load_image, save_grid, save_image
from ..sweep import SweepRecord
from .outputs import plot_curves, safe_name

__all__ = ["run_items", "finish_items"]

#: ``compute(start, keys) -> [(record, image01 (3, H, W), data-loss curve (T,)), ...]`` for ``keys``.
Compute = Callable[[int, list[str]], list[tuple[dict[str, Any], Tensor, Tensor]]]


def run_items(out: str | os.PathLike, settings: dict[str, Any], keys: Sequence[str], compute: Compute, *,
              resume: bool = False, chunk_size: int = 1, prefix: str = "") -> SweepRecord:
    """Compute the items ``keys`` not yet recorded in ``out``, ``chunk_size`` at a time; returns the record.

    ``compute`` receives the index of the chunk's first key (for per-item seeds) and the chunk's keys.
    """
    out = Path(out)
    record = SweepRecord(out, settings, resume=resume)
    keys = list(keys)
    for start in range(0, len(keys), max(1, chunk_size)):
        chunk = keys[start:start + chunk_size]
        if all(record.done(k) for k in chunk):
            continue
        try:
            computed = compute(start, chunk)
        except OptimisationError as err:
            raise _keep_last_good(err, out, [prefix + k for k in chunk]) from None
        for key, (item, image01, curve) in zip(chunk, computed):
            name = f"{safe_name(prefix + key)}.png"
            save_image(image01, out / name)
            item = dict(item, key=key, file=name, loss_curve=[float(v) for v in curve.detach().cpu().flatten()])
            record.add(key, item)
    return record


def _keep_last_good(err: OptimisationError, out: Path, names: list[str]) -> OptimisationError:
    """Save the last finite images of a diverged chunk as ``NAME.last-good.png``; the error says where."""
    if err.last_good is None:
        return err
    paths = [save_image(image01, out / f"{safe_name(name)}.last-good.png") for name, image01 in zip(names, err.last_good)]
    where = paths[0].name if len(paths) == 1 else f"{paths[0].name} (+{len(paths) - 1} more)"
    return OptimisationError(f"{err} Finished items are kept; the last good image is {out / where}.",
                             last_good=err.last_good, iteration=err.iteration)


def finish_items(out: str | os.PathLike, record: SweepRecord, *, title: str,
                 label: Callable[[dict[str, Any]], str] = lambda item: item["key"],
                 lead: tuple[Tensor, str] | None = None, **summary: Any) -> dict[str, Any]:
    """Draw ``grid.png`` (``lead`` image first, e.g. the original) and ``loss.png`` from the recorded
    items, mark the record complete with ``summary``, and return the final result."""
    out = Path(out)
    items = list(record.items.values())
    pictures = [load_image(out / item["file"]) for item in items]
    labels = [label(item) for item in items]
    if lead is not None:
        pictures.insert(0, lead[0].detach().cpu().float())
        labels.insert(0, lead[1])
    if pictures:
        save_grid(torch.stack(pictures), out / "grid.png", labels=labels)
        plot_curves({item["key"]: item["loss_curve"] for item in items}, out / "loss.png", title=title)
    return record.finish(**summary)
