"""Progress for long work: tqdm on a terminal; per finished item, one short line on stderr otherwise.

:func:`progress` wraps a loop (iterations of one optimisation) in a bar shown only on a terminal.
:class:`ItemProgress` follows the items of a sweep (:func:`repscope.sweep.run_sweep`): on a terminal
a bar labelled with the last finished item and the count, without one (a log file, a batch job)
one line per finished item, ``repscope: invert blocks.3 done (2/5, 41 s)`` (seconds since the sweep
started); a failed item gets no line of its own (the command ends with one error line naming it).

Example:
    >>> import io
    >>> stream = io.StringIO()
    >>> with ItemProgress(2, desc="invert", stream=stream) as bar:
    ...     bar.finished("blocks.0")
    >>> stream.getvalue().split(" (")[0]
    'repscope: invert blocks.0 done'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

__all__ = ["progress", "ItemProgress"]


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             quiet: bool = False) -> tqdm:
    """Wrap ``iterable`` (or count to ``total``) in a tqdm bar shown only on an interactive stderr."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, dynamic_ncols=True)


class ItemProgress:
    """The finished items of a sweep: ``finished(key)`` after each; a context manager that closes the bar.

    Args:
        total: items in the sweep.
        done: items already finished (a resumed run).
        desc: label prefix (the command).
        enabled: ``False`` prints nothing (``--quiet``).
        stream: where to write (default stderr); a terminal gets a bar, anything else lines.
    """

    def __init__(self, total: int, *, done: int = 0, desc: str = "", enabled: bool = True,
                 stream: IO[str] | None = None):
        self.total, self.count, self.desc = int(total), int(done), desc
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        terminal = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=self.total, initial=self.count, desc=desc, file=self.stream, leave=False,
                        dynamic_ncols=True) if terminal else None

    def finished(self, key: str, failed: bool = False) -> None:
        """Count item ``key`` as finished (or failed) and show it."""
        self.count += 1
        if not self.enabled:
            return
        label = f"{self.desc} {key}".strip()
        if self.bar is not None:
            self.bar.set_description_str(label)
            self.bar.update(1)
            return
        if failed:  # no line: the command's one error line names the failed items (and keeps errors one line)
            return
        seconds = time.perf_counter() - self.start
        print(f"repscope: {label} done ({self.count}/{self.total}, {seconds:.0f} s)",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "ItemProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
