r"""Saliency maps: backpropagate a target through the reversed network, down to the image.

For a representation :math:`\Phi` (a layer of the model, or its logits) and a *top signal*
:math:`d` with the shape of :math:`\Phi(x)`, the map is the reversed network applied to :math:`d`:

.. math::

    m = \bar{J}_\Phi(x)^\top d, \qquad d = \text{one-hot(class)}, \ \text{one-hot}(k, i, j),
    \ \mathbb{1}_{\text{channel } k}, \ \text{or any direction},

where :math:`\bar{J}` is the Jacobian with the rectifiers' backward rule replaced by the chosen
method (:mod:`repscope.backprop.rules`); with ``method="gradient"`` it is exactly
:math:`\nabla_x \langle d, \Phi(x)\rangle`. The map is taken with respect to the images in
**[0, 1]** (``images01``), so it includes the model's input normalisation (a factor ``1/std`` per
channel); for a bare ``nn.Module`` (identity preprocessing) it equals the gradient w.r.t. the input.
Papers: Simonyan et al. 2014 (gradient), Zeiler & Fergus 2014 (DeConvNet), Springenberg et al. 2015
(guided backprop), Mahendran & Vedaldi 2016 (the common reversed network).

Example:
    >>> import torch, torchvision
    >>> from repscope.backprop import saliency, Target
    >>> net = torchvision.models.resnet18(weights=None).eval()
    >>> maps = saliency(net, torch.rand(2, 3, 64, 64), Target.class_(3), "guided")
    >>> maps.shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import nn

from ..errors import LayerError, ShapeError
from .rules import check_method, rule

__all__ = ["Target", "BackwardMap", "backward_map", "saliency", "layer_output"]

Units = Union[int, Sequence[int], torch.Tensor, None]


@dataclass(frozen=True)
class Target:
    """What to visualise: a class logit, a channel, a single neuron, or a direction at a layer.

    Attributes:
        layer: module name (``blocks.3``) or ``"logits"`` (the model output).
        unit: class / channel index, one shared by the batch or one per image; ``None`` picks the
            most active one per image (the predicted class at ``logits``).
        at: for a channel of an ``(N, C, h, w)`` layer: ``"sum"`` (the whole map), ``"max"`` (the
            neuron at the channel's maximum) or ``(i, j)`` (that neuron).
        direction: instead of ``unit``, a top signal shaped like the layer output without the batch
            dimension (shared) or with it (per image).
    """

    layer: str = "logits"
    unit: Units = None
    at: Union[str, tuple[int, int]] = "sum"
    direction: torch.Tensor | None = None

    @classmethod
    def class_(cls, index: Units = None) -> "Target":
        """The logit of class ``index`` (``None``: the predicted class)."""
        return cls("logits", index)

    @classmethod
    def channel(cls, layer: str, k: Units = None, at: str = "sum") -> "Target":
        """Channel ``k`` of ``layer``, summed over space (``at="sum"``) or at its maximum (``"max"``)."""
        return cls(layer, k, at)

    @classmethod
    def neuron(cls, layer: str, k: int, i: int, j: int) -> "Target":
        """The single neuron ``(k, i, j)`` of ``layer``."""
        return cls(layer, k, (int(i), int(j)))

    @classmethod
    def along(cls, layer: str, direction: torch.Tensor) -> "Target":
        """The projection of ``layer``'s output on ``direction``."""
        return cls(layer, None, "sum", direction)


@dataclass
class BackwardMap:
    """The result of :func:`backward_map`.

    Attributes:
        maps: ``(N, 3, H, W)`` signed maps w.r.t. the images in [0, 1].
        units: ``(N,)`` resolved class / channel per image (``-1`` for a direction target).
        values: ``(N,)`` the target's forward value ⟨d, Φ(x)⟩ per image.
        rectifiers: number of rectifier calls whose backward rule was set.
        method: the backward rule used.
    """

    maps: torch.Tensor
    units: torch.Tensor
    values: torch.Tensor
    rectifiers: int
    method: str


def layer_output(model, images01: torch.Tensor, layer: str) -> torch.Tensor:
    """``layer``'s output for images in [0, 1] (``"logits"``: the model output), keeping the graph."""
    from ..layers import features

    return features(model, images01, [layer])[layer]


def _units(unit: Units, acts: torch.Tensor, at) -> torch.Tensor:
    """Per-image unit indices ``(N,)``; ``None`` -> the most active unit (by ``at``)."""
    n, c = acts.shape[:2]
    if unit is None:
        if acts.dim() == 2:
            return acts.argmax(1)
        flat = acts.flatten(2)
        return (flat.amax(2) if at == "max" else flat.sum(2)).argmax(1)
    units = torch.as_tensor(unit, device=acts.device).long().reshape(-1)
    if units.numel() == 1:
        units = units.expand(n)
    if units.numel() != n:
        raise ShapeError(f"{units.numel()} target units for {n} images; give one unit or one per image.")
    bad = units[(units < 0) | (units >= c)]
    if bad.numel():
        raise LayerError(f"unit {int(bad[0])} out of range: the layer has {c} units (0..{c - 1}).")
    return units


def _top_signal(target: Target, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The top signal d (shaped like ``acts``) and the resolved units for ``target``."""
    n = acts.shape[0]
    if target.direction is not None:
        d = target.direction.to(acts)
        if d.shape == acts.shape[1:]:
            d = d.expand_as(acts)
        if d.shape != acts.shape:
            raise ShapeError(f"direction of shape {tuple(target.direction.shape)} does not fit layer "
                             f"'{target.layer}' of shape {tuple(acts.shape)}; give (C,h,w) or (N,C,h,w).")
        return d, torch.full((n,), -1, dtype=torch.long, device=acts.device)
    units = _units(target.unit, acts, target.at)
    d = torch.zeros(acts.shape, dtype=acts.dtype, device=acts.device)  # contiguous, whatever acts' layout
    rows = torch.arange(n, device=acts.device)
    if acts.dim() == 2:
        if isinstance(target.at, tuple):
            raise ShapeError(f"layer '{target.layer}' is a vector {tuple(acts.shape)}; a location (i, j) needs a map.")
        d[rows, units] = 1
        return d, units
    maps = acts[rows, units]  # (N, h, w, ...)
    if target.at == "sum":
        d[rows, units] = 1
    elif target.at == "max":
        d.view(n, acts.shape[1], -1)[rows, units, maps.flatten(1).argmax(1)] = 1
    elif isinstance(target.at, tuple) and len(target.at) == 2 and acts.dim() == 4:
        i, j = target.at
        h, w = acts.shape[2:]
        if not (0 <= i < h and 0 <= j < w):
            raise LayerError(f"location ({i}, {j}) outside layer '{target.layer}' of size {h}x{w}.")
        d[rows, units, i, j] = 1
    else:
        raise ShapeError(f"unknown target location {target.at!r}; use 'sum', 'max' or (i, j).")
    return d, units


def backward_map(model: nn.Module, images01: torch.Tensor, target: Target | Units = None,
                 method: str = "guided", *,
                 top: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None) -> BackwardMap:
    """Run the forward pass under ``method``'s rule and reverse it from ``target`` (or ``top``).

    Args:
        model: a :class:`repscope.models.Model` or a bare ``nn.Module`` (identity preprocessing).
        images01: ``(N, 3, H, W)`` in [0, 1].
        target: a :class:`Target`, or class index / indices (shorthand for ``Target.class_``).
        method: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.
        top: optional top signal replacing the target's (a tensor shaped like the layer output, or a
            function of the detached output); the forward masks and switches stay those of
            ``images01`` (used by the bottleneck analysis).

    Returns:
        A :class:`BackwardMap` with ``maps`` ``(N, 3, H, W)``.
    """
    check_method(method)
    if not isinstance(target, Target):
        target = Target.class_(target)
    if images01.dim() != 4 or images01.shape[1] != 3:
        raise ShapeError(f"images must be (N, 3, H, W) in [0, 1], got {tuple(images01.shape)}.")
    x = images01.detach().clone().requires_grad_(True)
    with torch.enable_grad(), rule(method) as mode:
        out = layer_output(model, x, target.layer)
    acts = out.detach()
    d, units = _top_signal(target, acts)
    if top is not None:
        d = top(acts) if callable(top) else top.to(acts)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=d)
    if mode.calls == 0 and method != "gradient":
        warnings.warn(f"no rectifier (ReLU/ReLU6/LeakyReLU) before layer '{target.layer}': "
                      f"'{method}' equals the plain gradient here.", stacklevel=2)
    values = (acts * d).flatten(1).sum(1)
    return BackwardMap(grad, units, values, mode.calls, method)


def saliency(model: nn.Module, images01: torch.Tensor, target: Target | Units = None,
             method: str = "guided") -> torch.Tensor:
    """Signed saliency maps ``(N, 3, H, W)`` of ``target`` w.r.t. ``images01`` (see :func:`backward_map`).

    Args:
        model: a :class:`repscope.models.Model` or a bare ``nn.Module``.
        images01: ``(N, 3, H, W)`` in [0, 1].
        target: a :class:`Target` or class index / indices (``None``: the predicted class).
        method: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.
    """
    return backward_map(model, images01, target, method).maps
