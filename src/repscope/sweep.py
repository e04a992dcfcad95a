"""The one item runner: many independent items in, records out, resumable, written atomically.

A sweep (many layers, units, images or methods) is a list of :class:`Item` (a key and a picklable
``spec``) and one *work* function ``work(shared, specs) -> outputs`` (one output per spec) that
computes a chunk of items from the specs and the ``shared`` state (the model, the images, the
configuration). An *executor* (:mod:`repscope.executors`) runs the chunks, in this process or
elsewhere; the driver alone turns each output into files and a JSON record through ``write(key,
output)`` and records it in ``out/result.json`` (:class:`SweepRecord`) as soon as its chunk
finishes. So an interrupted run (Ctrl-C, a crash, a killed job) keeps every finished item, and a
run started again with ``resume=True`` computes only the rest. The record also stores the run's
settings; resuming with different settings is refused rather than mixing results.

Failures: a :class:`~repscope.errors.RepscopeError` other than an
:class:`~repscope.errors.OptimisationError` is a mistake in the request (a unit out of range, a
layer that never runs) that every item would repeat, so it stops the sweep at once. Anything else
(a diverged optimisation, a crashed worker) fails only its chunk: its items are recorded under
``failed`` with a one-line error, the other items go on, and :class:`ItemsFailed` is raised at the
end. Resuming retries the failed items.

Example:
    >>> import tempfile
    >>> def square(shared, specs):                    # module-level: picklable for other processes
    ...     return [shared * s * s for s in specs]
    >>> out = tempfile.mkdtemp()
    >>> items = [Item(str(s), s) for s in (1, 2, 3)]
    >>> record = run_sweep(out, {"scale": 10}, items, square, 10, write=lambda key, value: {"value": value})
    >>> {k: v["value"] for k, v in record.items.items()}
    {'1': 10, '2': 40, '3': 90}
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OptimisationError, OutputError, RepscopeError
from .io import write_json

__all__ = ["Item", "ItemsFailed", "SweepRecord", "run_sweep", "RESULT_FILE"]

RESULT_FILE = "result.json"

#: ``work(shared, specs) -> [output, ...]``, one output per spec; a module-level function (picklable).
Work = Callable[[Any, list[Any]], list[Any]]


@dataclass(frozen=True)
class Item:
    """One unit of a sweep: ``key`` names it in ``result.json``; ``spec`` (picklable) says what to compute."""

    key: str
    spec: Any


class ItemsFailed(RepscopeError):
    """Some items of a sweep failed; the others are recorded, and ``--resume`` retries the failed ones."""


class SweepRecord:
    """The finished (and failed) items of one sweep, persisted in ``out_dir/result.json`` after each change.

    ``result.json`` holds ``settings``, ``complete``, ``items`` (key -> record) and, when some
    failed, ``failed`` (key -> one-line error).
    """

    def __init__(self, out_dir: str | Path, settings: dict[str, Any], resume: bool = False):
        self.path = Path(out_dir) / RESULT_FILE
        self.settings = json.loads(json.dumps(settings, default=str))
        self.items: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        if resume and self.path.is_file():
            try:
                previous = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                raise OutputError(f"cannot resume: '{self.path}' is unreadable. Remove it or drop --resume.") from None
            if previous.get("settings") != self.settings:
                changed = sorted(k for k in set(self.settings) | set(previous.get("settings", {}))
                                 if self.settings.get(k) != previous.get("settings", {}).get(k))
                raise OutputError(f"cannot resume: settings differ from the interrupted run ({', '.join(changed)}). "
                                  "Use the same options, or a new --out.")
            self.items = dict(previous.get("items", {}))
            self.failed = dict(previous.get("failed", {}))

    def done(self, key: str) -> bool:
        """Whether item ``key`` finished in this run or the one being resumed."""
        return key in self.items

    def add(self, key: str, item: Any) -> None:
        """Record a finished item and persist the record atomically."""
        self.failed.pop(key, None)
        self.items[key] = item
        self._write(complete=False)

    def fail(self, key: str, message: str) -> None:
        """Record that item ``key`` failed with the one-line ``message``, atomically."""
        self.failed[key] = message
        self._write(complete=False)

    def order(self, keys: Sequence[str]) -> None:
        """Put the recorded items in the order of ``keys`` (an executor may finish them in any order)."""
        rank = {k: i for i, k in enumerate(keys)}
        self.items = dict(sorted(self.items.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    def finish(self, **summary: Any) -> dict[str, Any]:
        """Mark the sweep complete (with optional summary numbers); returns the final record."""
        return self._write(complete=True, **summary)

    def _write(self, complete: bool, **summary: Any) -> dict[str, Any]:
        record = {"settings": self.settings, "complete": complete, "items": self.items}
        if self.failed:
            record["failed"] = self.failed
        record.update(summary)
        write_json(self.path, record)
        return record


def _chunks(items: Sequence[Item], size: int) -> list[list[Item]]:
    size = max(1, int(size))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (a :class:`RepscopeError`) or ``Type: message``."""
    text = str(error) if isinstance(error, RepscopeError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


def run_sweep(out: str | os.PathLike, settings: dict[str, Any], items: Sequence[Item], work: Work, shared: Any, *,
              write: Callable[[str, Any], dict[str, Any]], resume: bool = False, chunk_size: int = 1,
              executor=None, on_error: Callable[[list[str], BaseException], str] | None = None,
              progress: bool = False, desc: str = "") -> SweepRecord:
    """Compute the items not yet recorded in ``out``, ``chunk_size`` at a time; returns the record.

    Chunks are cut from the full item list (the same chunks whether resuming or not); a chunk with
    any unfinished item is computed whole.

    Args:
        out: the output folder (``result.json`` and whatever ``write`` saves).
        settings: what must be unchanged for ``resume`` (the options that determine the results).
        items: the items, in the order of the final record.
        work: ``work(shared, [item.spec, ...]) -> [output, ...]``, run by ``executor``.
        shared: the state every chunk needs (picklable; an executor may ship it once per worker).
        write: ``write(key, output) -> record`` on the driver: saves the item's files, returns its JSON record.
        resume: skip the items ``out/result.json`` already holds (with the same settings).
        chunk_size: items per call of ``work`` (e.g. units optimised as one batch).
        executor: a :class:`repscope.executors.Executor` (default: in this process).
        on_error: ``on_error(keys, error) -> message`` for a failed chunk (e.g. to save partial results).
        progress: one line per finished item on stderr (a bar on a terminal); labels ``desc KEY (i/n)``.
        desc: the progress label's prefix.

    Raises:
        ItemsFailed: after every item ran, when some failed (they are recorded under ``failed``).
        RepscopeError: a mistake in the request, at once (finished items are kept).
    """
    from .executors import LocalExecutor
    from .progress import ItemProgress

    record = SweepRecord(out, settings, resume=resume)
    keys = [item.key for item in items]
    pending = [chunk for chunk in _chunks(items, chunk_size) if not all(record.done(i.key) for i in chunk)]
    executor = executor if executor is not None else LocalExecutor()
    bar = ItemProgress(len(keys), done=len(keys) - sum(len(c) for c in pending), desc=desc, enabled=progress)
    first_error: BaseException | None = None
    with contextlib.closing(executor.run(work, shared, [[i.spec for i in c] for c in pending])) as results, bar:
        for index, result in results:  # in the order the chunks finish
            chunk = pending[index]
            if isinstance(result, RepscopeError) and not isinstance(result, OptimisationError):
                raise result  # the request is wrong: every item would fail the same way
            if isinstance(result, BaseException):
                message = on_error([i.key for i in chunk], result) if on_error else one_line(result)
                for item in chunk:
                    record.fail(item.key, message)
                    bar.finished(item.key, failed=True)
                first_error = first_error or result
                continue
            for item, output in zip(chunk, result):
                record.add(item.key, write(item.key, output))
                bar.finished(item.key)
    record.order(keys)
    if record.failed:
        message = next(iter(record.failed.values()))
        raise ItemsFailed(f"{message} ({len(record.failed)} of {len(keys)} items failed; recorded in "
                          f"{record.path}, --resume retries them)") from first_error
    return record
