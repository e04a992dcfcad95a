"""Atomic file output: every result file is written to a temporary name, then renamed.

An interrupted run therefore leaves either the old file or the new one, never half of one. Any OS
error on the way (a full disk, a read-only file system, a path under a file, a name too long) is
one :class:`~repscope.errors.OutputError` line naming the path and the fix; the temporary file,
and any folder created for it, are removed. Files get the mode the umask allows (``0o666 & ~umask``,
as ``open()`` would give them), not ``tempfile``'s private ``0o600``. A target that exists but is
not a regular file (``/dev/full``, a FIFO, a folder) is refused: renaming onto it would replace it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError

_FIXES = {
    errno.ENOSPC: "Free disk space or choose another --out.",
    errno.EDQUOT: "Free space within your disk quota or choose another --out.",
    errno.EFBIG: "The file is larger than this file system or process allows; choose another --out.",
    errno.EROFS: "That file system is read-only; choose another --out.",
    errno.ENAMETOOLONG: "Use a shorter --out path.",
    errno.ENOTDIR: "A part of the path is a file, not a folder; choose another --out.",
}


def output_error(path: str | os.PathLike, err: OSError) -> OutputError:
    """The one-line :class:`OutputError` for an OS error ``err`` while writing ``path``."""
    reason = err.strerror or type(err).__name__
    fix = _FIXES.get(err.errno, "Choose a writable --out directory.")
    return OutputError(f"cannot write '{path}': {reason}. {fix}")


def _missing_parents(folder: Path) -> list[Path]:
    """The folders of ``folder``'s chain (itself included) that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _create_temp(path: Path) -> Path:
    """Create an empty temporary file beside ``path``, with the umask's mode (``open()``'s 0o666 & ~umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}{path.suffix or '.tmp'}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    An ``OSError`` raised while the block writes, or by the rename, becomes an :class:`OutputError`.

    Example:
        >>> with atomic_path("out/plot.png") as tmp:   # doctest: +SKIP
        ...     figure.savefig(tmp)
    """
    path = Path(path)
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise OutputError(f"cannot write '{path}': it exists and is {kind}. Choose another output path.")
    created: list[Path] = []
    try:
        created = _missing_parents(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path)
    except OSError as err:
        _remove_empty(created)
        raise output_error(path, err) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from None
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders an unsuccessful write created, deepest first, if they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN is refused: JSON has no NaN)."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    """Make numpy / torch scalars and arrays, and paths, JSON-serialisable."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
