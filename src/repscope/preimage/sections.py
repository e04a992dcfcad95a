"""Wall-clock seconds per named part of an optimiser loop, for finding where an iteration's time goes.

A :class:`SectionClock` is switched off by default and then costs one attribute test per lap. When on,
each :meth:`~SectionClock.lap` adds the time since the previous lap (or :meth:`~SectionClock.start`)
to its section. On CUDA every lap first waits for the device, so each section holds the GPU work it
queued; that waiting removes the overlap of CPU and GPU, so the sections then sum to more than an
untimed run takes.

Example:
    >>> clock = SectionClock(enabled=True, device="cpu")
    >>> clock.start()
    >>> _ = sum(range(1000))
    >>> clock.lap("sum")
    >>> list(clock.seconds)
    ['sum']
"""

from __future__ import annotations

import time

import torch

__all__ = ["SectionClock"]


class SectionClock:
    """Accumulates seconds per section name; ``seconds`` maps name -> total seconds, in first-lap order.

    Args:
        enabled: time the laps (``False``: :meth:`start` and :meth:`lap` do nothing).
        device: the device the loop runs on; CUDA is synchronised at each lap.
    """

    def __init__(self, enabled: bool, device: torch.device | str):
        self.enabled = bool(enabled)
        self.seconds: dict[str, float] = {}
        device = torch.device(device)
        self._cuda = device if device.type == "cuda" else None
        self._last = 0.0

    def _now(self) -> float:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)
        return time.perf_counter()

    def start(self) -> None:
        """Start the first section of an iteration (time before this call is not counted)."""
        if self.enabled:
            self._last = self._now()

    def lap(self, name: str) -> None:
        """Add the time since the last :meth:`start` or :meth:`lap` to section ``name``."""
        if self.enabled:
            now = self._now()
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
            self._last = now
