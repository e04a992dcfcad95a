"""Sweeps on Ray: each chunk of a sweep is a Ray task; the driver alone writes the results.

:class:`RayExecutor` implements the executor seam of :mod:`repscope.executors` (``run(work, shared,
chunks)`` yields ``(chunk index, outputs | exception)`` as chunks finish) on a Ray cluster, so the
one item runner (:func:`repscope.sweep.run_sweep`) records the items exactly as a local run does:
the same ``result.json``, PNGs and grid, ``--resume`` across executors.

- **Where**: ``address=None`` starts a local Ray for the run (``num_cpus`` = this machine's cores,
  no dashboard, usage statistics off, bound to the loopback interface) and stops it afterwards;
  ``address="HOST:PORT"`` (or ``"auto"``) joins a cluster started with ``ray start --head``. A Ray
  already initialised in this process is used as it is (and left running).
- **Resources**: every chunk asks for ``cpus_per_item`` CPUs and ``gpus_per_item`` GPUs; inside a
  task torch uses ``max(1, int(cpus_per_item))`` threads. On C cores the sweep runs
  ``C / cpus_per_item`` chunks at a time.
- **Shared state**: ``shared`` (the model's weights, the images, the configuration) is put in the
  object store once (``ray.put``); each worker process fetches and unpickles it once per sweep.
- **Failures**: a task that raises anything but a :class:`~repscope.errors.RepscopeError` (which
  is deterministic: a diverged optimisation, a wrong request) and a worker that dies are retried
  up to ``max_retries`` times; then the chunk is yielded with its error and the runner records its
  items as failed while the others go on. Closing the generator (Ctrl-C, a wrong request) cancels
  the tasks still outstanding (``ray.cancel``: pending ones never start, running ones end with their worker process).

Throughput: a chunk of T seconds on W workers gives ``W / T`` chunks per second, less Ray's
per-task overhead (a few milliseconds, measured by ``benchmarks/ray_sweep.py``).

Example:
    >>> from repscope.ray_executor import RayExecutor                        # doctest: +SKIP
    >>> from repscope.preimage.sweeps import maximize_units
    >>> maximize_units(model, "blocks.5", range(64), "out", batch_size=1,     # doctest: +SKIP
    ...                executor=RayExecutor(cpus_per_item=1))
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import RepscopeError

__all__ = ["RayExecutor", "import_ray", "ray_session", "INSTALL_HINT"]

INSTALL_HINT = "pip install -e '.[ray]'"

#: the shared state each worker process has unpickled: {object id: value}, the latest sweep's only
_WORKER_SHARED: dict[str, Any] = {}


def import_ray(local: bool = False):
    """The ``ray`` module, imported with usage statistics off (and, for ``local``, loopback only).

    Raises:
        RepscopeError: ``ray`` is not installed (the message names the extra to install).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:  # Ray's own switch for a one-machine instance: every address on 127.0.0.1
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise RepscopeError(f"--executor ray needs Ray, which is not installed. Run: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, initialised for the duration of the block (unless it already was); yields the module.

    Args:
        address: ``None``: a local Ray with ``num_cpus`` CPUs (default ``os.cpu_count()``), no dashboard;
            else the address of a running cluster (``HOST:PORT`` or ``"auto"``).
        num_cpus: CPUs of a local Ray (ignored when joining a cluster).
    """
    ray = import_ray(local=address is None)
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")
        else:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RepscopeError(f"cannot start or join {where} ({first}). Start it with 'ray start --head' "
                            "and pass its address with --ray-address, or drop --ray-address.") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` nothing listens on (``ray.init`` would retry it for minutes)."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return  # "auto", "ray://..." and the like: left to Ray
    try:
        socket.create_connection((host.removeprefix("ray://") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as error:
        raise RepscopeError(f"no Ray cluster answers at --ray-address {address} ({error.strerror or error}). "
                            "Start one with 'ray start --head' and pass the address it prints.") from None


@dataclass(frozen=True)
class _Refused:
    """A :class:`RepscopeError` raised by a task, returned as a value so that Ray does not retry it."""

    error: RepscopeError


def _worker_shared(ray, ref) -> Any:
    """``ray.get(ref)`` once per worker process and sweep (the model is unpickled once, not per chunk)."""
    key = ref.hex()
    if key not in _WORKER_SHARED:
        _WORKER_SHARED.clear()
        _WORKER_SHARED[key] = ray.get(ref)
    return _WORKER_SHARED[key]


def _run_chunk(work: Callable[[Any, list[Any]], list[Any]], boxed_ref: list, specs: list[Any], threads: int):
    """The Ray task: ``work(shared, specs)`` with ``threads`` torch threads (``boxed_ref``: ``[ref]``,
    boxed so that Ray passes the reference instead of resolving it)."""
    import ray
    import torch

    torch.set_num_threads(threads)
    shared = _worker_shared(ray, boxed_ref[0])
    try:
        return work(shared, specs)
    except RepscopeError as error:  # deterministic: a retry would fail the same way
        return _Refused(error)


class RayExecutor:
    """Runs the chunks of a sweep as Ray tasks (see the module docstring).

    Args:
        address: a running cluster's address; ``None`` starts a local Ray for each sweep.
        cpus_per_item: CPUs each chunk asks for (> 0; fractions allowed), also its torch threads (at least 1).
        gpus_per_item: GPUs each chunk asks for (>= 0). The model runs on the device it was loaded on (``--device``).
        max_retries: retries of a chunk whose task raised or whose worker died, before it is recorded as failed.
        num_cpus: CPUs of a local Ray (default: this machine's cores).
        max_in_flight: at most this many chunks submitted at a time (default: all at once); 1 runs
            them one after another (the one-worker baseline of ``benchmarks/ray_sweep.py``).
    """

    def __init__(self, address: str | None = None, *, cpus_per_item: float = 1, gpus_per_item: float = 0,
                 max_retries: int = 2, num_cpus: int | None = None, max_in_flight: int | None = None):
        for name, value, low in (("--cpus-per-item", cpus_per_item, 0.0), ("--gpus-per-item", gpus_per_item, -1e-12)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                bound = "> 0" if low == 0 else ">= 0"
                raise RepscopeError(f"{name} must be a finite number {bound}, got {value}. Use e.g. {name} 1.")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise RepscopeError(f"max_retries must be an integer >= 0, got {max_retries}.")
        if max_in_flight is not None and not (isinstance(max_in_flight, int) and max_in_flight >= 1):
            raise RepscopeError(f"max_in_flight must be an integer >= 1 or None, got {max_in_flight}.")
        self.address = address
        self.cpus_per_item = float(cpus_per_item)
        self.gpus_per_item = float(gpus_per_item)
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.max_in_flight = max_in_flight

    @property
    def threads(self) -> int:
        """torch threads inside a task."""
        return max(1, int(self.cpus_per_item))

    def run(self, work: Callable[[Any, list[Any]], list[Any]], shared: Any,
            chunks: Sequence[list[Any]]) -> Iterator[tuple[int, list[Any] | BaseException]]:
        """Yield ``(chunk index, work(shared, chunk))`` per chunk as it finishes, or the error it ended with."""
        if not chunks:
            return
        with ray_session(self.address, self.num_cpus) as ray:
            self._check_resources(ray)
            task = ray.remote(_run_chunk).options(num_cpus=self.cpus_per_item, num_gpus=self.gpus_per_item,
                                                  max_retries=self.max_retries, retry_exceptions=True)
            shared_ref = ray.put(shared)
            todo = iter(enumerate(chunks))
            index = {task.remote(work, [shared_ref], list(chunk), self.threads): i
                     for i, chunk in itertools.islice(todo, self.max_in_flight or len(chunks))}
            pending = list(index)
            try:
                while pending:
                    (ref,), pending = ray.wait(pending, num_returns=1)
                    for i, chunk in itertools.islice(todo, 1):  # the next chunk, before the driver writes
                        new = task.remote(work, [shared_ref], list(chunk), self.threads)
                        index[new] = i
                        pending.append(new)
                    i = index.pop(ref)
                    yield i, self._outcome(ray, ref, len(chunks[i]))
            finally:
                for ref in pending:  # closed early (Ctrl-C, a wrong request): stop them now; a running
                    ray.cancel(ref, force=True)  # task's worker is ended (a plain cancel waits for the task)

    def _check_resources(self, ray) -> None:
        """Refuse a request no node can ever satisfy (Ray would wait for it forever)."""
        total = ray.cluster_resources()
        for kind, need, option in (("CPU", self.cpus_per_item, "--cpus-per-item"),
                                   ("GPU", self.gpus_per_item, "--gpus-per-item")):
            have = float(total.get(kind, 0))
            if need > have:
                raise RepscopeError(f"{option} {need:g} asks for more {kind}s than the Ray cluster has ({have:g}). "
                                    f"Use {option} {have:g} or less, or add nodes with 'ray start --address'.")

    def _outcome(self, ray, ref, expected: int) -> list[Any] | BaseException:
        """A finished task's outputs, or its error (a task's exception unwrapped to its cause)."""
        from ray.exceptions import RayError, RayTaskError

        try:
            outputs = ray.get(ref)
        except RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else None
            return cause or RuntimeError(_first_line(error))
        except RayError as error:  # the worker or its node died, the task was cancelled, an object was lost
            return RuntimeError(f"{type(error).__name__} after {self.max_retries} retries: {_first_line(error)}")
        if isinstance(outputs, _Refused):
            return outputs.error
        if len(outputs) != expected:
            return RuntimeError(f"work returned {len(outputs)} outputs for {expected} items")
        return outputs


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
