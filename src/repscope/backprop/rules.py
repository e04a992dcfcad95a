r"""Backward rules for rectifiers: gradient, DeConvNet and guided backpropagation.

Backpropagation through a network induces a reversed ("transposed") network. Linear layers
(convolution, batch-norm in eval mode, pooling with its switches) are reversed by their transpose in
all three methods; the methods differ only in the backward rule of the rectifiers
(Mahendran & Vedaldi, "Salient Deconvolutional Networks", ECCV 2016). For a rectifier with forward
input :math:`x` and incoming backward signal :math:`g`:

.. math::

    \text{gradient (Simonyan et al. 2014):}\quad & \mathbb{1}[x>0]\,g \\
    \text{deconvnet (Zeiler \& Fergus 2014):}\quad & \max(g, 0) \\
    \text{guided (Springenberg et al. 2015):}\quad & \max(\mathbb{1}[x>0]\,g, 0)

i.e. ``guided = deconvnet ∘ gradient``. Generalisations to the rest of the rectifier family, written
with the forward derivative :math:`f'(x)` and the signal rectifier :math:`r`:

- ReLU6 / ``hardtanh(x, 0, M)`` (EfficientNet-Lite, MobileNet): :math:`f'(x) = \mathbb{1}[0<x<M]`,
  :math:`r(g) = \max(g, 0)` (no cap: the backward signal has no scale of its own).
- LeakyReLU with slope :math:`a \ge 0`: :math:`f'(x) = \mathbb{1}[x>0] + a\,\mathbb{1}[x\le 0]`,
  :math:`r(g) = \max(g,0) + a\min(g,0)` (the leaky rectifier applied to the signal).

gradient is :math:`f'(x)\,g`, deconvnet is :math:`r(g)`, guided is :math:`r(f'(x)\,g)`; with
:math:`a = 0` and :math:`M = \infty` these are the three rules above. Max-pooling keeps its
switches in all three methods (the default autograd rule already routes through the argmax, which is
the DeConvNet "unpooling"). Other non-linearities (SiLU, GELU, sigmoid gates) keep their true
derivative, as in Captum.

The rules are installed by a :class:`torch.overrides.TorchFunctionMode`, scoped to the ``with`` block
and to the current thread, that intercepts every rectifier *operator* however the model writes it:
``nn.ReLU`` (inplace or not), ``F.relu``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu(_)``,
``nn.ReLU6``, ``F.relu6``, ``F.hardtanh(x, 0, M)``, ``nn.LeakyReLU``, ``F.leaky_relu(_)``. Modules are
not walked and not modified: no hooks, no flags. In-place rectifiers stay in place (a custom
:class:`torch.autograd.Function` that marks its input dirty and saves only its output). All three
methods, ``gradient`` included, go through that function; its ``gradient`` rule is torch's own
derivative (``threshold_backward`` / ``hardtanh_backward`` / ``leaky_relu_backward``, so it matches
plain autograd bit for bit) and it skips the input copy torch makes for an in-place ``hardtanh_``
(ReLU6). The rule is recorded in the autograd graph during the forward pass, so the backward pass
may run after the block has exited. Nested blocks: the innermost rule wins. Rectifiers written as
``clamp(min=0)`` are not recognised.

Example:
    >>> import torch, repscope.backprop as bp
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> x = torch.randn(2, 4, requires_grad=True)
    >>> with bp.rule("guided") as r:
    ...     y = net(x).sum()
    >>> (g,) = torch.autograd.grad(y, x)
    >>> r.calls
    1
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import RepscopeError, unknown
from ..rectifiers import parse_rectifier

__all__ = ["METHODS", "rule", "RuleMode"]

METHODS: tuple[str, ...] = ("gradient", "deconvnet", "guided")

_aten = torch.ops.aten


def _rectifier_backward(kind: str, g: torch.Tensor, out: torch.Tensor, p: float) -> torch.Tensor:
    """True derivative f'(x)·g, computed from the forward *output* (out and x have the same mask)."""
    if kind == "relu":
        return _aten.threshold_backward(g, out, 0)
    if kind == "hardtanh":  # 0 < x < p  <=>  0 < out < p
        return _aten.hardtanh_backward(g, out, 0.0, p)
    return _aten.leaky_relu_backward(g, out, p, True)  # out > 0 <=> x > 0 for slope p >= 0


def _rectify_signal(kind: str, g: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
    """The signal rectifier r(g): max(g, 0), or the leaky rectifier for LeakyReLU."""
    if kind == "leaky":
        return F.leaky_relu(g, p, inplace=inplace)
    return g.clamp_min_(0) if inplace else g.clamp_min(0)


def _forward(kind: str, x: torch.Tensor, p: float, inplace: bool) -> torch.Tensor:
    if kind == "relu":
        return torch.relu_(x) if inplace else torch.relu(x)
    if kind == "hardtanh":
        return torch._C._nn.hardtanh_(x, 0.0, p) if inplace else torch._C._nn.hardtanh(x, 0.0, p)
    return torch._C._nn.leaky_relu_(x, p) if inplace else torch._C._nn.leaky_relu(x, p)


class _Rectifier(torch.autograd.Function):
    """A rectifier whose backward pass follows one of :data:`METHODS` (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kind: str, p: float, method: str, inplace: bool) -> torch.Tensor:
        out = _forward(kind, x, p, inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.kind, ctx.p, ctx.method = kind, p, method
        if method != "deconvnet":  # deconvnet ignores the forward mask: save nothing
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.method == "deconvnet":
            gx = _rectify_signal(ctx.kind, g, ctx.p)
        else:
            (out,) = ctx.saved_tensors
            gx = _rectifier_backward(ctx.kind, g, out, ctx.p)
            if ctx.method == "guided":
                gx = _rectify_signal(ctx.kind, gx, ctx.p, inplace=True)  # gx is a fresh tensor
        return gx, None, None, None, None


class RuleMode(TorchFunctionMode):
    """The torch-function mode behind :func:`rule`; ``calls`` counts the rectifiers it rewrote.

    Attributes:
        method: one of :data:`METHODS`.
        calls: number of rectifier calls (with autograd recording) intercepted so far.
    """

    def __init__(self, method: str):
        super().__init__()
        self.method = method
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        parsed = parse_rectifier(func, args, kwargs)
        if parsed is None:
            return func(*args, **kwargs)
        x, kind, p, inplace = parsed
        if not (torch.is_grad_enabled() and x.requires_grad):
            return func(*args, **kwargs)
        self.calls += 1
        with torch._C.DisableTorchFunction():  # outer rule modes must not wrap this rectifier again
            return _Rectifier.apply(x, kind, p, self.method, inplace)


def check_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`METHODS`, else raise a one-line RepscopeError."""
    if method not in METHODS:
        raise RepscopeError(unknown("backprop method", str(method), METHODS, f"Use one of: {', '.join(METHODS)}."))
    return method


@contextlib.contextmanager
def rule(method: str) -> Iterator[RuleMode]:
    """Run the forward passes inside the block with the backward rule ``method`` for every rectifier.

    Args:
        method: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.

    Yields:
        The active :class:`RuleMode`; ``mode.calls`` counts the rectifiers rewritten.

    Raises:
        RepscopeError: ``method`` is unknown.

    Only the current thread is affected, and the mode is popped when the block exits, also on an
    exception. The model is never modified.
    """
    mode = RuleMode(check_method(method))
    mode.__enter__()
    try:
        yield mode
    finally:
        mode.__exit__(None, None, None)
