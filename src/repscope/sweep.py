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

Nothing in a ``result.json`` is trusted on resume: it is checked against :data:`RECORD_SCHEMA`
(a malformed record is one line naming the file and the fix), every file an item names
(:data:`FILE_FIELDS`) must lie inside the output folder (an item whose file is missing is computed
again), and the settings' :data:`INPUTS` (content hashes of the input images) must match, so a photo
replaced under the same name is never mixed with results of the old one. A run holds an exclusive
lock on its folder (:func:`output_lock`, ``fcntl.flock`` on ``OUT/.repscope.lock``): a second writer
is refused in one line naming the first one's pid.

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
import errno
import fcntl
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OptimisationError, OutputError, RepscopeError
from .io import output_error, write_json

__all__ = ["Item", "ItemsFailed", "SweepRecord", "run_sweep", "output_lock", "RESULT_FILE", "LOCK_FILE"]

RESULT_FILE = "result.json"
LOCK_FILE = ".repscope.lock"
#: the settings entry holding ``{input spec: images.content_hash}`` (a changed input refuses ``--resume``)
INPUTS = "inputs"
#: item fields naming files in the output folder: a relative path, or a dict / list of them
FILE_FIELDS = ("file", "files")
#: top-level fields of ``result.json`` and their JSON types (others are the command's summary, free-form)
RECORD_SCHEMA = {"settings": dict, "complete": bool, "items": dict, "failed": dict}
#: fields an item may hold and their types (any other field is free-form): what the readers rely on
ITEM_SCHEMA = {"key": str, "file": str, "files": (dict, list), "layer": str, "method": str, "label": str,
               "loss_curve": list, "error": float, "gain": float, "activation": float, "ratio": float,
               "value": float, "selectivity": float, "iterations": int, "seconds": float, "rectifiers": int,
               "unit": (str, int, type(None)), "hyperparameters": dict, "bottleneck": dict}

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
            previous = _read_record(self.path)
            items = {key: item for key, item in previous["items"].items() if _files_present(self.path, key, item)}
            _check_settings(self.path, previous["settings"], self.settings)
            self.items = items  # an item whose file went missing is computed again
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


_FIX = "Start again with --overwrite (or remove it), or use a new --out."


def _read_record(path: Path) -> dict[str, Any]:
    """``result.json`` checked against :data:`RECORD_SCHEMA` and :data:`ITEM_SCHEMA`; one line naming the file otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise OutputError(f"cannot resume: '{path}' is unreadable. {_FIX}") from None
    problem = _schema_problem(record)
    if problem:
        raise OutputError(f"cannot resume: '{path}' is not a valid sweep record ({problem}). {_FIX}")
    return record


def _type_ok(value: Any, kind: Any) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isfinite(value)
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _schema_problem(record: Any) -> str | None:
    """What is wrong with a loaded record (None: it is valid)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for field, kind in RECORD_SCHEMA.items():
        if field not in record and field != "failed":
            return f"no '{field}'"
        if field in record and not _type_ok(record[field], kind):
            return f"'{field}' is not a {kind.__name__}"
    for key, item in record["items"].items():
        if not isinstance(item, dict):
            continue  # a bare value (SweepRecord.add accepts any JSON); no fields to check
        for field, kind in ITEM_SCHEMA.items():
            if field in item and not _type_ok(item[field], kind):
                return f"item '{key}': '{field}' is {json.dumps(item[field])[:40]}"
        if "key" in item and item["key"] != key:
            return f"item '{key}' says its key is '{item['key']}'"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item.get("loss_curve", [])):
            return f"item '{key}': 'loss_curve' holds a non-number"
    if not all(isinstance(v, str) for v in record.get("failed", {}).values()):
        return "a 'failed' entry is not a message"
    return None


def file_names(item: dict[str, Any]) -> list[Any]:
    """The file names an item's record lists (:data:`FILE_FIELDS`), relative to the output folder."""
    names: list[Any] = []
    for field in FILE_FIELDS:
        value = item.get(field)
        names += [value] if isinstance(value, str) else list(value.values()) if isinstance(value, dict) else \
            list(value) if isinstance(value, list) else []
    return names


def inside(out_dir: str | os.PathLike, name: str, what: str = "a record") -> Path:
    """``out_dir / name``, refused (:class:`OutputError`) unless it resolves inside ``out_dir``."""
    root = Path(out_dir).resolve()
    path = (root / name).resolve()
    if "\0" in name or not name or Path(name).is_absolute() or root not in path.parents:
        raise OutputError(f"cannot resume: {what} names the file '{name}', outside the output folder '{out_dir}'. "
                          f"{_FIX}")
    return path


def _files_present(path: Path, key: str, item: dict[str, Any]) -> bool:
    """Whether every file item ``key`` lists is inside the folder (else refused) and present (else recomputed)."""
    if not isinstance(item, dict):
        return True
    where = f"item '{key}' of '{path}'"
    names = file_names(item)
    if not all(isinstance(name, str) for name in names):
        raise OutputError(f"cannot resume: '{path}' is not a valid sweep record (item '{key}': a file name is "
                          f"not a string). {_FIX}")
    return all(inside(path.parent, name, where).is_file() for name in names)


def _check_settings(path: Path, previous: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with other settings; a changed input image is named."""
    if previous == current:
        return
    old, new = previous.get(INPUTS), current.get(INPUTS)
    if isinstance(old, dict) and isinstance(new, dict) and old != new:
        changed = sorted(spec for spec in set(old) | set(new) if old.get(spec) != new.get(spec))
        raise OutputError(f"cannot resume: the input '{changed[0]}' is not the image the interrupted run used "
                          f"(its pixels differ). Restore it, or start again with --overwrite or a new --out.")
    changed = sorted(k for k in set(current) | set(previous) if current.get(k) != previous.get(k))
    raise OutputError(f"cannot resume: settings differ from the interrupted run ({', '.join(changed)}). "
                      "Use the same options, or a new --out.")


# ---------------------------------------------------------------- the output folder's lock
_held: dict[Path, list] = {}  # resolved folder -> [fd, depth, folders created for it]
_held_guard = threading.Lock()


def acquire_output_lock(out_dir: str | os.PathLike) -> None:
    """Take the exclusive lock on ``out_dir`` (created if missing) for this process; reentrant.

    ``fcntl.flock`` on ``OUT/.repscope.lock``, which holds the pid. Another process holding it:
    :class:`OutputError` naming its pid. Undo with :func:`release_output_lock` (or the process's exit).
    """
    out = Path(out_dir)
    key = out.resolve()
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            return
        created = []
        folder = out
        while not folder.exists() and folder != folder.parent:
            created.append(folder)
            folder = folder.parent
        lock = out / LOCK_FILE
        try:
            out.mkdir(parents=True, exist_ok=True)
            fd = _lock_file(lock)
        except OSError as err:
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise output_error(lock, err) from None
        except OutputError:
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        _held[key] = [fd, 1, created]


def _lock_file(lock: Path) -> int:
    """Open and flock ``lock`` (the same inode as the path: a releasing writer unlinks it); write our pid."""
    for _ in range(100):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = ""
            with contextlib.suppress(OSError, ValueError):
                pid = lock.read_text().strip()
            who = f"pid {pid}" if pid.isdigit() else "pid unknown"
            raise OutputError(f"output folder '{lock.parent}' is in use by another repscope run ({who}). "
                              "Wait for it to finish, or choose another --out.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the previous holder removed it while we waited: lock the new file
    raise OSError(errno.EAGAIN, "the lock file keeps changing", str(lock))


def release_output_lock(out_dir: str | os.PathLike | None = None) -> None:
    """Undo one :func:`acquire_output_lock` of ``out_dir`` (None: every lock this process holds, at once).

    The last release removes the lock file, and the folders the lock created if they are still empty.
    """
    with _held_guard:
        keys = list(_held) if out_dir is None else [Path(out_dir).resolve()]
        for key in keys:
            entry = _held.get(key)
            if entry is None:
                continue
            entry[1] -= 1
            if entry[1] > 0 and out_dir is not None:
                continue
            del _held[key]
            with contextlib.suppress(OSError):
                (key / LOCK_FILE).unlink()
            os.close(entry[0])
            for folder in entry[2]:
                with contextlib.suppress(OSError):
                    folder.rmdir()


@contextlib.contextmanager
def output_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    """The exclusive lock on ``out_dir`` for the block (see :func:`acquire_output_lock`); yields ``out_dir``."""
    acquire_output_lock(out_dir)
    try:
        yield Path(out_dir)
    finally:
        release_output_lock(out_dir)


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
    with output_lock(out):
        return _run(out, settings, items, work, shared, write=write, resume=resume, chunk_size=chunk_size,
                    executor=executor, on_error=on_error, progress=progress, desc=desc)


def _run(out, settings, items, work, shared, *, write, resume, chunk_size, executor, on_error, progress, desc):
    """:func:`run_sweep` inside the output folder's lock."""
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
