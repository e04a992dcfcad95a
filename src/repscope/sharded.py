"""Streaming statistics in parallel: per-shard sums on workers, merged on the driver.

A ridge regression over a large image folder needs only sums over rows (:class:`StreamingRidge`:
``n, Σx, Σy, Σxxᵀ, Σxyᵀ, Σy²``), and sums split over shards S₁ … S_K of the rows add up::

    Σ_{rows} x xᵀ = Σ_k Σ_{rows ∈ S_k} x xᵀ        (and likewise n, Σx, Σy, Σxyᵀ, Σy²)

so each worker accumulates its shard (memory independent of the folder's size: one batch of
features plus the d_in × d_out statistics) and the driver merges the K results
(:meth:`StreamingRidge.merge`) in shard order. The merged statistics give the same ridge solution as
one pass over all rows, up to float64 rounding of the sums' order.

:func:`fit_sharded` runs ``accumulate(shared, shard)`` for every shard through an executor
(:mod:`repscope.executors`: in process, or Ray tasks with :class:`repscope.ray_executor.RayExecutor`)
and merges what it returns: one :class:`StreamingRidge`, or a dict of them (e.g. one per layer, or
per direction and split).

Example:
    >>> import torch
    >>> from repscope.regression import StreamingRidge
    >>> def acc(w, seeds):                     # module-level (picklable): one shard = a list of seeds
    ...     r = StreamingRidge(3, 1)
    ...     for s in seeds:
    ...         x = torch.randn(50, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
    ...         r.update(x, x @ w)
    ...     return r
    >>> w = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    >>> merged = fit_sharded(acc, w, [[0, 1], [2], [3]])
    >>> merged.n, torch.allclose(merged.solve(1e-9)[0], w.T, atol=1e-6)
    (200, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from .regression import StreamingRidge

__all__ = ["fit_sharded", "merge_statistics"]

#: what a shard's accumulation returns: one accumulator or a dict of them (nested dicts allowed)
Statistics = StreamingRidge | dict[str, Any]


def merge_statistics(parts: Sequence[Statistics]) -> Statistics:
    """Merge per-shard statistics in order: accumulators with :meth:`StreamingRidge.merge`, dicts key by key.

    Raises:
        ValueError: the parts do not have the same structure (other keys, other types), or there are none.
    """
    if not parts:
        raise ValueError("nothing to merge: give at least one shard")
    first = parts[0]
    if isinstance(first, StreamingRidge):
        if not all(isinstance(p, StreamingRidge) for p in parts):
            raise ValueError("cannot merge a StreamingRidge with something else")
        merged = first
        for part in parts[1:]:
            merged = merged.merge(part)
        return merged
    if isinstance(first, dict):
        if not all(isinstance(p, dict) and p.keys() == first.keys() for p in parts):
            raise ValueError(f"shards returned different keys: {[sorted(p) for p in parts if isinstance(p, dict)]}")
        return {key: merge_statistics([p[key] for p in parts]) for key in first}
    raise ValueError(f"cannot merge {type(first).__name__}: return a StreamingRidge or a dict of them")


def _accumulate_shards(job: tuple[Callable[[Any, Any], Statistics], Any], shards: list[Any]) -> list[Statistics]:
    """The executor's work: one accumulation per shard of the chunk."""
    accumulate, shared = job
    return [accumulate(shared, shard) for shard in shards]


def fit_sharded(accumulate: Callable[[Any, Any], Statistics], shared: Any, shards: Sequence[Any], *,
                executor=None) -> Statistics:
    """``merge(accumulate(shared, shard) for shard in shards)``, the accumulations run by ``executor``.

    Args:
        accumulate: ``accumulate(shared, shard) -> StreamingRidge | dict`` (module-level, picklable).
        shared: what every shard needs (the model, the transform; shipped once per worker by Ray).
        shards: picklable descriptions of the rows (file lists, seeds, index ranges), one task each.
        executor: a :class:`repscope.executors.Executor` (default: in this process).

    Returns:
        the merged statistics, in shard order (so a given sharding gives the same bits on any executor).

    Raises:
        Exception: the first error a shard ended with (a missing shard would bias the fit).
    """
    from .executors import LocalExecutor

    executor = executor if executor is not None else LocalExecutor()
    parts: dict[int, Statistics] = {}
    with contextlib.closing(executor.run(_accumulate_shards, (accumulate, shared), [[s] for s in shards])) as results:
        for index, result in results:
            if isinstance(result, BaseException):
                raise result
            parts[index] = result[0]
    return merge_statistics([parts[i] for i in range(len(shards))])
