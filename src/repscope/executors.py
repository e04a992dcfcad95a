"""Where the chunks of a sweep run: the seam between the item runner (:mod:`repscope.sweep`) and a cluster.

An executor computes ``work(shared, specs)`` for every chunk of specs and yields ``(index,
outputs)`` as each chunk finishes, in any order, or ``(index, exception)`` for a chunk that
raised; it never writes files (the driver does) and lets ``KeyboardInterrupt`` through. It is
used as ``contextlib.closing(executor.run(...))``: closing the generator early (Ctrl-C, an
error in the request) must cancel the chunks still outstanding. ``work`` is a module-level
function and ``shared`` and the specs are picklable, so another process can compute a chunk
from them alone: a Ray executor puts ``shared`` in the object store once, submits one task per
chunk, and yields them as ``ray.wait`` returns them (unwrapping a task's error to its cause).

Example:
    >>> def double(shared, specs):
    ...     return [shared * s for s in specs]
    >>> list(LocalExecutor().run(double, 2, [[1, 2], [3]]))
    [(0, [2, 4]), (1, [6])]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from .errors import RepscopeError, unknown

__all__ = ["Executor", "LocalExecutor", "get_executor", "EXECUTORS"]

#: executor names accepted by :func:`get_executor`
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs chunks of a sweep (see the module docstring for the contract)."""

    def run(self, work: Callable[[Any, list[Any]], list[Any]], shared: Any,
            chunks: Sequence[list[Any]]) -> Iterator[tuple[int, list[Any] | BaseException]]:
        """Yield ``(chunk index, work(shared, chunk))`` per chunk as it finishes, or the exception it raised."""
        ...


class LocalExecutor:
    """In this process, one chunk after another, in order."""

    def run(self, work: Callable[[Any, list[Any]], list[Any]], shared: Any,
            chunks: Sequence[list[Any]]) -> Iterator[tuple[int, list[Any] | BaseException]]:
        for index, chunk in enumerate(chunks):
            try:
                outputs = work(shared, list(chunk))
            except Exception as error:  # recorded by the runner; KeyboardInterrupt goes through
                yield index, error
                continue
            if len(outputs) != len(chunk):
                yield index, RuntimeError(f"work returned {len(outputs)} outputs for {len(chunk)} items")
                continue
            yield index, outputs


def get_executor(name: str | Executor | None = "local", **options) -> Executor:
    """The executor called ``name``: ``"local"``, or ``"ray"`` (:class:`repscope.ray_executor.RayExecutor`
    with ``options`` such as ``address``, ``cpus_per_item``; Ray is imported only then); an executor
    object is returned as is."""
    if name is None or name == "local":
        return LocalExecutor()
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(**options)
    if not isinstance(name, str):
        return name
    raise RepscopeError(unknown("executor", name, list(EXECUTORS), "Use --executor local or --executor ray."))
