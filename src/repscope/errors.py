"""The one exception family of repscope.

Every error a user can cause (a missing file, an unknown layer, an unsafe checkpoint, NaN in an
optimisation) raises a :class:`RepscopeError` whose message is one line saying what was asked,
what exists, and the fix. The command line prints that line and exits non-zero; tracebacks are
reserved for bugs (or ``--debug``).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable


class RepscopeError(Exception):
    """A user-fixable problem. ``str(err)`` is one line that names the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ImageError(RepscopeError):
    """An image (file, folder or ``sample:NAME``) could not be read or is unusable."""


class ModelError(RepscopeError):
    """A model name is unknown, or its weights cannot be found offline."""


class CheckpointError(RepscopeError):
    """A checkpoint is unsafe (pickled code), corrupt, or does not fit the architecture."""


class LayerError(RepscopeError):
    """A layer name, unit, or class index does not exist in the model."""


class ShapeError(RepscopeError):
    """A tensor has the wrong shape, dtype or values (NaN/Inf) for the operation."""


class OptimisationError(RepscopeError):
    """An optimisation diverged (NaN/Inf); the last good result is attached as ``last_good``."""

    def __init__(self, message: str, last_good=None, iteration: int | None = None):
        super().__init__(message)
        self.last_good = last_good
        self.iteration = iteration


class OutputError(RepscopeError):
    """An output location is unwritable, or exists and ``--overwrite`` was not given."""


class DeviceError(RepscopeError):
    """The requested device is not available (e.g. ``--device cuda`` without CUDA)."""


class RangeError(RepscopeError, argparse.ArgumentTypeError):
    """A number is outside its allowed range or not finite.

    Also an ``argparse.ArgumentTypeError``, so a bound used as an argparse ``type=`` turns into the
    parser's one-line usage error (``argument --iters: ...``).
    """


class BudgetError(RepscopeError):
    """A size would need more memory than this machine allows (see :mod:`repscope.bounds`)."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` candidates closest to ``name`` (difflib ratio), best first; never empty if candidates exist."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.0)
    return found[:n]


def unknown(kind: str, name: str, candidates: Iterable[str], fix: str = "") -> str:
    """A one-line message for an unknown ``kind`` called ``name``, listing the closest candidates."""
    near = closest(name, candidates)
    hint = f"; closest: {', '.join(near)}" if near else ""
    return f"unknown {kind} '{name}'{hint}.{(' ' + fix) if fix else ''}"
