"""Leaky rectifiers for activation maximisation, as a scoped ``TorchFunctionMode``.

Mahendran & Vedaldi (IJCV 2016) run the network with leaky ReLUs (leak 0.05) while maximising an
activation, so that units that are off at the random start still pass a gradient. Inside
``with leaky_rectifiers(0.05):`` every rectifier call recognised by :mod:`repscope.rectifiers`
(``relu`` / ``relu6`` / ``hardtanh(0, M)``, functional, in place or as modules) computes
``x if x > 0 else leak * x``; the upper clamp of ReLU6 is kept; leaky ReLUs stay as they are.
In-place forms (``h.relu_()``, ``F.relu_(h)``, ``nn.ReLU(inplace=True)``) stay in place, so a
statement whose result is unused still rectifies ``h``. The mode is thread-local and removed in
``finally``: nothing leaks, even after an exception. (The backprop rules change the backward pass
of the same rectifiers; this mode changes the forward only.)

Example:
    >>> import torch
    >>> with leaky_rectifiers(0.1):
    ...     torch.relu(torch.tensor([-1.0, 2.0])).tolist()
    [-0.10000000149011612, 2.0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..rectifiers import parse_rectifier

__all__ = ["leaky_rectifiers"]


class _LeakyMode(TorchFunctionMode):
    def __init__(self, leak: float):
        super().__init__()
        self.leak = float(leak)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        parsed = parse_rectifier(func, args, kwargs)
        if parsed is None or parsed[1] == "leaky":
            return func(*args, **kwargs)
        x, kind, upper, inplace = parsed
        if inplace:  # x.relu_(), F.relu_(x), nn.ReLU(inplace=True): x itself is the result, used or not
            if kind == "hardtanh":  # cap first: leaky_relu_ saves its output, which must stay unmodified
                x.clamp_max_(upper)
            return F.leaky_relu_(x, self.leak)
        leaky = F.leaky_relu(x, self.leak)
        return leaky.clamp_max(upper) if kind == "hardtanh" else leaky


@contextlib.contextmanager
def leaky_rectifiers(leak: float | None = 0.05) -> Iterator[None]:
    """Within the block, rectifiers leak ``leak * x`` below zero; ``leak=None`` or 0 changes nothing.

    Args:
        leak: slope below zero, e.g. 0.05 (the papers' setting for activation maximisation).
    """
    if not leak:
        yield
        return
    mode = _LeakyMode(leak)
    mode.__enter__()
    try:
        yield
    finally:
        mode.__exit__(None, None, None)
