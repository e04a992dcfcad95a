"""How many CPU threads torch uses: enough for the idle cores, never more (oversubscribed threads spin).

On a machine shared with other jobs, torch's default (one thread per core) competes with them: on
a loaded 2-core machine a blocks.2 inversion took 27-43 s with the default threads and 1.3 s with
one (issue 25). The choice, first that applies:

1. an explicit count (``--threads N``, ``threads=N``);
2. ``REPSCOPE_THREADS``, then ``OMP_NUM_THREADS`` (the user's standing choice);
3. the idle cores: min(physical cores, cores this process may run on) minus the 1-minute load
   average (other jobs' running threads), at least 1.

Inter-op parallelism (independent operators run concurrently) is set to 1 thread: the engines'
graphs are chains of operators, and a second pool only adds threads that compete for the cores.

Example:
    >>> with torch_threads(1) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import RepscopeError

__all__ = ["default_threads", "resolve_threads", "torch_threads", "physical_cores", "MAX_PER_CORE"]

#: an explicit count is refused above this many threads per core (1024 threads fail to start)
MAX_PER_CORE = 4


def physical_cores() -> int:
    """Physical cores of this machine (hyper-threads counted once), from Linux's CPU topology; else ``os.cpu_count()``."""
    siblings = {p.read_text().strip() for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology/thread_siblings_list")
                if p.is_file()}
    return len(siblings) or os.cpu_count() or 1


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_threads(load: float | None = None) -> int:
    """The idle cores: min(physical, usable) minus the load average ``load`` (default: the 1-minute one), ≥ 1."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(physical_cores(), _usable_cores()) - int(load))


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to use: ``threads``, else ``REPSCOPE_THREADS``, else ``OMP_NUM_THREADS``, else the idle cores."""
    for value, source in ((threads, "--threads"), (os.environ.get("REPSCOPE_THREADS"), "REPSCOPE_THREADS"),
                          (os.environ.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS")):
        if value is None or value == "":
            continue
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise RepscopeError(f"{source} must be a whole number >= 1, got {value!r}; e.g. {source.lstrip('-')}=1.")
        most = MAX_PER_CORE * (os.cpu_count() or 1)
        if count > most:
            raise RepscopeError(f"{source} {count} is more than {MAX_PER_CORE} threads per core of this machine "
                                f"({os.cpu_count()} cores); extra threads only wait for a core. Use at most {most}.")
        return count
    return default_threads()


@contextlib.contextmanager
def torch_threads(threads: int | None = None) -> Iterator[int]:
    """Run the block with :func:`resolve_threads` ``(threads)`` intra-op threads and 1 inter-op thread
    (when torch still allows setting it); the previous intra-op count is restored after."""
    count = resolve_threads(threads)
    previous = torch.get_num_threads()
    with contextlib.suppress(RuntimeError):  # settable once, before the first inter-op work
        torch.set_num_interop_threads(1)
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)
