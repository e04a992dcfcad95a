"""Leaky rectifiers for activation maximisation, as a scoped ``TorchFunctionMode``.

Mahendran & Vedaldi (IJCV 2016) run the network with leaky ReLUs (leak 0.05) while maximising an
activation, so that units that are off at the random start still pass a gradient. Inside
``with leaky_rectifiers(0.05):`` every ``relu`` / ``relu6`` / ``hardtanh(min_val=0)`` call (functional,
``torch.relu``, ``nn.ReLU``, ``nn.ReLU6``) computes ``x if x > 0 else leak * x`` below zero; the upper
clamp of ReLU6 is kept. The mode is thread-local and removed in ``finally``: nothing leaks, even
after an exception. (The backprop engine has its own rectifier mode for its backward rules; this
one changes the forward only.)

Example:
    >>> import torch
    >>> with leaky_rectifiers(0.1):
    ...     torch.relu(torch.tensor([-1.0, 2.0])).tolist()
    [-0.10000000149011612, 2.0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["leaky_rectifiers"]

_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_RELU6 = {F.relu6}
_HARDTANH = {F.hardtanh, F.hardtanh_}


class _LeakyMode(TorchFunctionMode):
    def __init__(self, leak: float):
        super().__init__()
        self.leak = float(leak)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS:
            return F.leaky_relu(args[0], self.leak)
        if func in _RELU6:
            return F.leaky_relu(args[0], self.leak).clamp_max(6.0)
        if func in _HARDTANH:
            names = ("input", "min_val", "max_val")
            params = dict(zip(names, args))
            params.update({k: v for k, v in kwargs.items() if k in names})
            lo, hi = params.get("min_val", -1.0), params.get("max_val", 1.0)
            if lo == 0:
                return F.leaky_relu(params["input"], self.leak).clamp_max(hi)
        return func(*args, **kwargs)


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
