r"""Neuron selectivity and the bottleneck of the reversed network (Mahendran & Vedaldi, ECCV 2016).

*Selectivity.* For one image and one layer take the K most active channels :math:`k_1..k_K` and
their maps :math:`m_a` (each channel's neuron at its maximum, by default). The number reported is
the mean pairwise Pearson correlation of the (flattened, signed) maps:

.. math::

    \text{selectivity} = \frac{2}{K(K-1)} \sum_{a<b} \rho(m_a, m_b).

Low means neuron selective (each unit gets its own map); high means the map is mostly the same
whatever the neuron. The talk's finding: DeConvNet maps are largely *not* neuron selective
(deconvnet ≫ guided ≥ gradient).

*Bottleneck.* The reversed network keeps the forward pass's ReLU masks and pooling switches. Replace
the target's top signal by a random (Gaussian) or constant (all ones) one over the whole layer and
measure how much of the map survives, :math:`\rho(m_\text{target}, m_\text{random/constant})`.
A value near 1 means the map is determined by the bottleneck information (masks, switches), not by
the neuron. When either map has no variation (all zero: a dead unit, a rule that lets nothing
through; or constant) ρ is undefined: no number is reported for it, and ``BottleneckResult.undefined``
says why.

Example:
    >>> import torch, torchvision
    >>> from repscope.backprop import selectivity
    >>> net = torchvision.models.vgg11(weights=None).eval()
    >>> res = selectivity(net, torch.rand(1, 3, 64, 64), "features.10", k=4)
    >>> sorted(res.selectivity)
    ['deconvnet', 'gradient', 'guided']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ShapeError
from .rules import METHODS, check_method
from .saliency import Target, backward_map, layer_output

__all__ = ["correlation_matrix", "mean_pairwise_correlation", "selectivity", "bottleneck",
           "SelectivityResult", "BottleneckResult"]


def correlation_matrix(maps: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
    """Pearson correlations between flattened maps: ``(K, ...)`` -> ``(K, K)`` (or ``(K, L)`` with ``other``).

    A constant map has correlation 0 with everything (its norm is clamped away from 0).
    """
    a = maps.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-30)
    if other is None:
        return a @ a.T
    b = other.flatten(1).double()
    b = b - b.mean(1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return a @ b.T


def mean_pairwise_correlation(maps: torch.Tensor) -> float:
    """Mean of the off-diagonal correlations of ``(K, ...)`` maps, ``K >= 2``."""
    k = maps.shape[0]
    if k < 2:
        raise ShapeError(f"selectivity needs at least 2 maps, got {k}; ask for k >= 2 units.")
    c = correlation_matrix(maps)
    return float((c.sum() - c.diagonal().sum()) / (k * (k - 1)))


def _one_image(image01: torch.Tensor) -> torch.Tensor:
    if image01.dim() == 3:
        image01 = image01.unsqueeze(0)
    if image01.dim() != 4 or image01.shape[0] != 1 or image01.shape[1] != 3:
        raise ShapeError(f"expected one image (3, H, W) or (1, 3, H, W) in [0, 1], got {tuple(image01.shape)}.")
    return image01


def _activity(acts: torch.Tensor, at: str) -> torch.Tensor:
    """Per-channel activity ``(C,)`` of one image's layer output ``(1, C, ...)``."""
    flat = acts[0].flatten(1) if acts.dim() > 2 else acts[0].unsqueeze(1)
    return flat.amax(1) if at == "max" else flat.sum(1)


@dataclass
class SelectivityResult:
    """Result of :func:`selectivity`.

    Attributes:
        layer: the layer name.
        channels: the K channels, most active first.
        maps: method -> ``(K, 3, H, W)`` signed maps, in the order of ``channels``.
        selectivity: method -> mean pairwise correlation of the K maps.
    """

    layer: str
    channels: list[int]
    maps: dict[str, torch.Tensor]
    selectivity: dict[str, float]


def selectivity(model, image01: torch.Tensor, layer: str, *, k: int = 8,
                methods: Sequence[str] = METHODS, at: str = "max") -> SelectivityResult:
    """Maps of the K most active channels of ``layer`` for one image, and their mean pairwise correlation.

    Args:
        model: a :class:`repscope.models.Model` or a bare ``nn.Module``.
        image01: ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1].
        layer: module name (or ``"logits"``).
        k: number of channels (>= 2).
        methods: backward rules to compare.
        at: ``"max"`` (each channel's neuron at its maximum; channels ranked by max activation) or
            ``"sum"`` (whole channel; ranked by summed activation).
    """
    image01 = _one_image(image01)
    methods = [check_method(m) for m in methods]
    with torch.no_grad():
        acts = layer_output(model, image01, layer)
    k = min(int(k), acts.shape[1])
    if k < 2:
        raise ShapeError(f"selectivity needs k >= 2 units; layer '{layer}' has {acts.shape[1]}.")
    channels = _activity(acts, at).topk(k).indices
    batch = image01.expand(k, -1, -1, -1)
    target = Target(layer, channels, at if acts.dim() > 2 else "sum")
    maps = {m: backward_map(model, batch, target, m).maps for m in methods}
    return SelectivityResult(layer, channels.tolist(), maps, {m: mean_pairwise_correlation(v) for m, v in maps.items()})


@dataclass
class BottleneckResult:
    """Result of :func:`bottleneck`.

    Attributes:
        layer: the layer name.
        unit: the target channel / class.
        correlation: method -> signal (``"random"``, ``"constant"``) -> correlation between the
            target's map and the map from that signal (mean over trials for ``"random"``). A
            correlation with an all-zero map is undefined (not 0): that signal is absent here.
        maps: method -> ``{"target": (1,3,H,W), "random": (1,3,H,W), "constant": (1,3,H,W)}``.
        undefined: method -> signal -> why its correlation is not a number (an all-zero map).
    """

    layer: str
    unit: int
    correlation: dict[str, dict[str, float]]
    maps: dict[str, dict[str, torch.Tensor]]
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)

    def score(self, method: str, signal: str) -> float | None:
        """``correlation[method][signal]``, or None where it is undefined (see ``undefined`` for why)."""
        return self.correlation.get(method, {}).get(signal)


def _zero_map_reason(target: torch.Tensor, other: torch.Tensor, signal: str) -> str | None:
    """Why ρ(target, other) is undefined: a map without variation (all zero, or constant), whose centred
    norm Pearson's ρ divides by. ``target`` (1, 3, H, W), ``other`` (T, 3, H, W); None: defined."""
    def flat(maps: torch.Tensor) -> torch.Tensor:
        return maps.flatten(1).double()

    for what, maps in (("the target's map", target), (f"the {signal} signal's map", other)):
        a = flat(maps)
        if not bool(a.ne(0).any(1).all()):
            return f"{what} is all zero (no gradient reaches the image), so no correlation is defined"
        if not bool(a.ne(a[:, :1]).any(1).all()):
            return f"{what} is constant over the image, so no correlation is defined"
    return None


def bottleneck(model, image01: torch.Tensor, layer: str, *, unit: int | None = None, at: str = "max",
               methods: Sequence[str] = METHODS, signals: Sequence[str] = ("random", "constant"),
               trials: int = 4, seed: int = 0) -> BottleneckResult:
    """How much of a unit's map survives when its top signal is replaced by a random or constant one.

    Args:
        model: a :class:`repscope.models.Model` or a bare ``nn.Module``.
        image01: ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1].
        layer: module name (or ``"logits"``).
        unit: channel / class (``None``: the most active one).
        at: target location in the channel (``"max"``, ``"sum"``), as in :class:`Target`.
        methods: backward rules to compare.
        signals: ``"random"`` (standard Gaussian over the whole layer output) and/or ``"constant"`` (ones).
        trials: number of random signals averaged.
        seed: seed of the random signals (a ``torch.Generator`` on the CPU).
    """
    image01 = _one_image(image01)
    for s in signals:
        if s not in ("random", "constant"):
            raise ShapeError(f"unknown bottleneck signal '{s}'; use 'random' or 'constant'.")
    gen = torch.Generator().manual_seed(int(seed))

    def top_signal(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
        if kind == "constant":
            return torch.ones_like
        return lambda acts: torch.randn(acts.shape, generator=gen).to(acts)

    correlation: dict[str, dict[str, float]] = {}
    maps: dict[str, dict[str, torch.Tensor]] = {}
    undefined: dict[str, dict[str, str]] = {}
    for m in (check_method(m) for m in methods):
        res = backward_map(model, image01, Target(layer, unit, at), m)
        unit = int(res.units[0])  # resolved once: the same unit for every method
        maps[m], correlation[m] = {"target": res.maps}, {}
        for s in signals:
            n = int(trials) if s == "random" else 1
            gen.manual_seed(int(seed))  # the same random signals for every method
            batch = image01.expand(n, -1, -1, -1)
            out = backward_map(model, batch, Target(layer, unit, at), m, top=top_signal(s)).maps
            maps[m][s] = out[:1]
            reason = _zero_map_reason(res.maps, out, s)
            if reason is None:
                correlation[m][s] = float(correlation_matrix(res.maps, out).mean())
            else:
                undefined.setdefault(m, {})[s] = reason
    return BottleneckResult(layer, -1 if unit is None else int(unit), correlation, maps, undefined)
