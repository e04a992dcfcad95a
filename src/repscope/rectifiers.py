"""Which torch calls are rectifiers: one recogniser shared by every engine that treats them specially.

A rectifier is ``relu`` (``F.relu``, ``torch.relu(_)``, ``Tensor.relu(_)``, and so ``nn.ReLU``),
``relu6`` (``F.relu6``, and ``nn.ReLU6``), ``hardtanh(x, 0, M)`` with M > 0, or ``leaky_relu`` with a
slope ≥ 0 (and ``nn.LeakyReLU``), in place or not. :func:`parse_rectifier` turns an intercepted call
(as a :class:`torch.overrides.TorchFunctionMode` sees it) into ``(x, kind, p, inplace)``:

========  =====================================  ==================
kind      forward                                p
========  =====================================  ==================
relu      max(x, 0)                              0
hardtanh  min(max(x, 0), p)   (ReLU6: p = 6)     the upper bound
leaky     x if x > 0 else p·x                    the slope
========  =====================================  ==================

Users: the backprop rules (:mod:`repscope.backprop.rules`), the leaky rectifiers of activation
maximisation (:mod:`repscope.preimage.rectifiers`), the pre-flight check (:mod:`repscope.checks`).

Example:
    >>> import torch, torch.nn.functional as F
    >>> x = torch.zeros(2)
    >>> parse_rectifier(F.hardtanh, (x, 0.0, 6.0), {})[1:]
    ('hardtanh', 6.0, False)
    >>> parse_rectifier(F.hardtanh, (x, -1.0, 1.0), {}) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["RECTIFIER_OPERATORS", "parse_rectifier"]


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


# Each parser maps (args, kwargs) of an intercepted operator to (x, kind, p, inplace), or None when
# the call is not a rectifier (e.g. hardtanh(-1, 1), leaky_relu with a negative slope).
def _relu(inplace: bool | None) -> Callable:
    def parse(args: tuple, kwargs: dict):
        ip = _arg(args, kwargs, 1, "inplace", False) if inplace is None else inplace
        return args[0], "relu", 0.0, bool(ip)

    return parse


def _relu6(inplace: bool | None) -> Callable:
    def parse(args: tuple, kwargs: dict):
        ip = _arg(args, kwargs, 1, "inplace", False) if inplace is None else inplace
        return args[0], "hardtanh", 6.0, bool(ip)

    return parse


def _hardtanh(inplace: bool | None) -> Callable:
    def parse(args: tuple, kwargs: dict):
        lo = float(_arg(args, kwargs, 1, "min_val", -1.0))
        hi = float(_arg(args, kwargs, 2, "max_val", 1.0))
        ip = _arg(args, kwargs, 3, "inplace", False) if inplace is None else inplace
        if lo != 0.0 or hi <= 0.0:
            return None
        return args[0], "hardtanh", hi, bool(ip)

    return parse


def _leaky(inplace: bool | None) -> Callable:
    def parse(args: tuple, kwargs: dict):
        a = float(_arg(args, kwargs, 1, "negative_slope", 0.01))
        ip = _arg(args, kwargs, 2, "inplace", False) if inplace is None else inplace
        if a < 0.0:
            return None
        return args[0], "leaky", a, bool(ip)

    return parse


RECTIFIER_OPERATORS: dict[Callable, Callable] = {
    F.relu: _relu(None),
    torch.relu: _relu(False),
    torch.relu_: _relu(True),
    torch.Tensor.relu: _relu(False),
    torch.Tensor.relu_: _relu(True),
    F.relu6: _relu6(None),
    torch._C._nn.relu6: _relu6(False),
    torch._C._nn.relu6_: _relu6(True),
    F.hardtanh: _hardtanh(None),
    torch._C._nn.hardtanh: _hardtanh(False),
    torch._C._nn.hardtanh_: _hardtanh(True),
    F.leaky_relu: _leaky(None),
    torch._C._nn.leaky_relu: _leaky(False),
    torch._C._nn.leaky_relu_: _leaky(True),
}


def parse_rectifier(func: Callable, args: tuple, kwargs: dict | None = None
                    ) -> tuple[torch.Tensor, str, float, bool] | None:
    """``(x, kind, p, inplace)`` if ``func(*args, **kwargs)`` is a rectifier of a tensor, else ``None``."""
    parse = RECTIFIER_OPERATORS.get(func)
    if parse is None:
        return None
    parsed = parse(args, kwargs or {})
    if parsed is None or not isinstance(parsed[0], torch.Tensor):
        return None
    return parsed
