"""Progress bars for long work: tqdm on a terminal, silent otherwise or when ``quiet``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             quiet: bool = False) -> tqdm:
    """Wrap ``iterable`` (or count to ``total``) in a tqdm bar shown only on an interactive stderr."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, dynamic_ncols=True)
