"""Bounds on every number and size a user controls: integer ranges, finite floats, memory cost.

Three kinds of check, each one line when it refuses (see :mod:`repscope.errors`):

* :func:`positive_int` / :func:`finite_float` build argparse ``type=`` functions (also callable on
  Python values; for a name starting with ``-`` the message leaves the name to argparse's
  ``argument --iters:`` prefix) that refuse text that is not a number, integers outside ``[lo, hi]``, and ``nan``,
  ``inf`` or ``1e309`` (which ``float()`` reads as ``inf``) with :class:`~repscope.errors.RangeError`.
* :func:`check_tensor_budget` refuses a tensor whose size ``prod(shape) * itemsize`` bytes exceeds
  the memory budget, *before* it is allocated, and says what it would cost
  (:class:`~repscope.errors.BudgetError`).
* :func:`memory_budget` is that budget: the environment variable ``REPSCOPE_MEMORY_BUDGET``
  (bytes, or with a suffix ``K``/``M``/``G``/``T``, powers of 1024) if set, else a quarter of the
  smallest of physical memory, the address-space limit (``RLIMIT_AS``) and the cgroup limit
  (``/sys/fs/cgroup/memory.max``): one tensor may take a quarter, leaving room for the copies that
  the operations around it make.

Example:
    >>> iters = positive_int("--iters", 1, 100_000)
    >>> iters("200")
    200
    >>> finite_float("lr", 0.0)("inf")
    Traceback (most recent call last):
    ...
    repscope.errors.RangeError: lr must be a finite number >= 0.0, got 'inf'.
    >>> format_bytes(tensor_bytes((16, 3, 224, 224)))
    '9.2 MiB'
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Sequence

import torch

from .errors import BudgetError, RangeError

__all__ = ["BUDGET_ENV", "OPTIONS", "check_tensor_budget", "finite_float", "format_bytes", "memory_budget",
           "positive_int", "tensor_bytes"]

BUDGET_ENV = "REPSCOPE_MEMORY_BUDGET"
_SUFFIXES = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_CGROUP_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def positive_int(name: str, lo: int = 1, hi: int = 2**31 - 1) -> Callable[[object], int]:
    """A parser of integers in ``[lo, hi]`` for option ``name`` (an argparse ``type=`` function).

    Accepts ``int`` or text of an integer (``"12"``, ``" 12 "``); refuses floats (``"1.5"``), bools and
    anything else with a :class:`RangeError` that states the range.
    """

    def parse(value: object) -> int:
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:  # also Python's 4300-digit limit on int("9" * 5000)
                number = None
        if number is None or not lo <= number <= hi:
            shown = value if isinstance(value, str) and len(value) <= 40 else f"{str(value)[:40]}..."
            raise RangeError(f"{_subject(name)}must be an integer in [{lo}, {hi}], got {shown!r}{_end(name)}")
        return number

    parse.__name__ = f"int[{lo},{hi}]"  # argparse names the type in some messages
    return parse


def finite_float(name: str, lo: float = -math.inf, hi: float = math.inf, *,
                 lo_open: bool = False) -> Callable[[object], float]:
    """A parser of finite floats in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``) for option ``name``."""
    low = f"> {lo}" if lo_open else f">= {lo}"
    if lo == -math.inf and hi == math.inf:
        rule = "a finite number"
    elif hi == math.inf:
        rule = f"a finite number {low}"
    elif lo == -math.inf:
        rule = f"a finite number <= {hi}"
    else:
        rule = f"a finite number in {'(' if lo_open else '['}{lo}, {hi}]"

    def parse(value: object) -> float:
        try:
            number = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        except (ValueError, OverflowError):
            number = None
        if number is None or not math.isfinite(number) or not lo <= number <= hi or (lo_open and number == lo):
            shown = value if isinstance(value, str) and len(value) <= 40 else f"{str(value)[:40]}"
            raise RangeError(f"{_subject(name)}must be {rule}, got {shown!r}{_end(name)}")
        return number

    parse.__name__ = "float"
    return parse


def _subject(name: str) -> str:
    """The message's subject: none for an option (``--iters``: argparse prefixes ``argument --iters:``)."""
    return "" if name.startswith("-") else f"{name} "


def _end(name: str) -> str:
    """The message's end: none for an option (the parser appends ``. Run 'repscope CMD --help'.``)."""
    return "" if name.startswith("-") else "."


def tensor_bytes(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
    """The bytes a dense tensor of ``shape`` and ``dtype`` takes: ``prod(shape) * itemsize``."""
    count = 1
    for dim in shape:
        count *= max(int(dim), 0)
    return count * torch.empty((), dtype=dtype).element_size()


def format_bytes(n: int | float) -> str:
    """``1536 -> '1.5 KiB'``; powers of 1024, one decimal."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_bytes(text: str) -> int:
    """``"512M" -> 536870912``; plain bytes or a ``K/M/G/T`` suffix (powers of 1024, optional ``iB``/``B``)."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, suffix = (raw[:-1], raw[-1]) if raw and raw[-1] in _SUFFIXES else (raw, "")
    try:
        value = float(number) * _SUFFIXES[suffix]
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise RangeError(f"{BUDGET_ENV}={text!r} is not a size; use bytes or e.g. 4G.")
    return int(value)


def _limits() -> list[int]:
    """Physical memory, the address-space limit and the cgroup limit, where known (bytes)."""
    found = []
    try:
        found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft > 0:
        found.append(soft)
    for name in _CGROUP_FILES:
        try:
            with open(name) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            found.append(int(text))
    return found


def memory_budget() -> int:
    """The most bytes one tensor may take: ``$REPSCOPE_MEMORY_BUDGET``, else a quarter of the memory limit."""
    text = os.environ.get(BUDGET_ENV)
    if text:
        return parse_bytes(text)
    limits = _limits()
    return min(limits) // 4 if limits else 4 << 30


def check_tensor_budget(shape: Sequence[int], dtype: torch.dtype = torch.float32, what: str = "a tensor",
                        budget: int | None = None) -> int:
    """Refuse (:class:`BudgetError`) a tensor of ``shape``/``dtype`` larger than the budget; return its bytes.

    Args:
        shape: the tensor's shape, e.g. ``(N, 3, H, W)``.
        dtype: its dtype (float32 by default).
        what: what the tensor is for, in words (``"resizing 'pano.png' (1x100000) to 224"``).
        budget: bytes allowed (default :func:`memory_budget`).
    """
    needed = tensor_bytes(shape, dtype)
    allowed = memory_budget() if budget is None else budget
    if needed > allowed:
        dims = "x".join(str(int(d)) for d in shape)
        raise BudgetError(f"{what} would need {format_bytes(needed)} ({dims} {str(dtype).removeprefix('torch.')}), "
                          f"over the {format_bytes(allowed)} budget. Use smaller sizes or fewer images "
                          f"(or raise {BUDGET_ENV}).")
    return needed


#: The bound of every numeric command-line option, by option name (the same meaning in every command):
#: ``parser.add_argument("--iters", type=bounds.OPTIONS["--iters"], ...)``. Ranges are generous (any
#: sensible run fits) and finite (nothing reaches torch as ``nan``, ``inf`` or a count that only fails
#: after minutes); sizes that cost memory are checked again by :func:`check_tensor_budget` where used.
OPTIONS: dict[str, Callable[[object], float]] = {
    "--top": positive_int("--top", 1, 100_000),
    "--top-k": positive_int("--top-k", 2, 100_000),  # selectivity compares at least two units
    "--seed": positive_int("--seed", 0, 2**32 - 1),
    "--iters": positive_int("--iters", 1, 100_000),
    "--lr": finite_float("--lr", 0.0, lo_open=True),  # the optimiser's step must be positive
    "--beta": finite_float("--beta", 0.0, 16.0),
    "--tv-weight": finite_float("--tv-weight", 0.0),
    "--alpha-weight": finite_float("--alpha-weight", 0.0),
    "--data-weight": finite_float("--data-weight", 0.0),
    "--jitter": positive_int("--jitter", 0, 1024),
    "--bound": finite_float("--bound", 0.0, 1e4),
    "--pyramid": positive_int("--pyramid", 0, 12),
    "--batch": positive_int("--batch", 1, 4096),
    "--unit": positive_int("--unit", 0, 2**31 - 1),
    "--test": positive_int("--test", 1, 1_000_000),
    "--size": positive_int("--size", 8, 4096),
    "--batch-size": positive_int("--batch-size", 1, 4096),
    "--kernel": positive_int("--kernel", 1, 15),
    "--margin": positive_int("--margin", 0, 256),
    "--threads": positive_int("--threads", 1, 1024),
    "--steps": positive_int("--steps", 1, 1_000_000),
    "--crops": positive_int("--crops", 1, 1_000_000),
    "--fit-crops": positive_int("--fit-crops", 1, 1_000_000),
    "--test-crops": positive_int("--test-crops", 1, 1_000_000),
}
