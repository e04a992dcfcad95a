r"""Data terms of the pre-image energy: inversion, activation maximisation, caricaturisation.

Mahendran & Vedaldi, IJCV 2016 ("Visualizing Deep Convolutional Neural Networks Using Natural
Pre-images"), §3: the three visualisations are one energy with three losses ℓ(Φ(x)):

.. math::

    \text{invert:}\quad \ell = \frac{\lVert \Phi(x) - \Phi_0 \rVert^2}{\lVert \Phi_0 \rVert^2}
    \qquad
    \text{maximize:}\quad \ell = -\frac{\langle w, \Phi(x) \rangle}{Z}
    \qquad
    \text{caricature:}\quad \ell = -\frac{\langle \Phi(x_0), \Phi(x) \rangle}{\lVert \Phi(x_0) \rVert^2}

w is a one-hot e_k (a channel averaged over space, its centre cell, a neuron (k, i, j), a class
logit) or any direction; Z is a scale: the unit's largest value over reference photos (our reading
of the IJCV paper's normalisation constant; not confirmed against the text), or else the RMS of
the start images' features. Every objective maps features (N, ...) to a loss
per image (N,) and reports its metric (``error``, ``activation``, ``gain``); objectives compose
with ``+`` and scalar ``*`` (the loss adds, metrics are merged).

Example:
    >>> import torch
    >>> f0 = torch.ones(1, 4, 2, 2)
    >>> Invert(f0)(2 * f0).tolist()
    [1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import LayerError, ShapeError

__all__ = ["Objective", "Invert", "Maximize", "Caricature", "Unit", "unit_weights"]

Unit = int | tuple[int, int, int] | Tensor
"""A unit: channel / class index ``k``, neuron ``(k, i, j)``, or a direction tensor shaped like one feature item."""


def _flat(f: Tensor) -> Tensor:
    return f.reshape(f.shape[0], -1)


class _SquaredDistance(torch.autograd.Function):
    """‖f − t‖² per row of f, t (N, D) → (N,), gradient 2(f − t)·g: one pass over the features each
    way after the difference (autograd's pow and sum take two more)."""

    @staticmethod
    def forward(ctx, features: Tensor, target: Tensor) -> Tensor:
        diff = features - target
        ctx.save_for_backward(diff)
        return torch.linalg.vecdot(diff, diff)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (diff,) = ctx.saved_tensors
        return diff * (2 * grad).unsqueeze(1), None


class Objective:
    """A data term: ``loss(features (N, ...)) -> (N,)`` and ``metrics(features) -> {name: (N,)}``."""

    name = "objective"

    def loss(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self, features: Tensor) -> dict[str, Tensor]:
        return {}

    def __call__(self, features: Tensor) -> Tensor:
        return self.loss(features)

    def __add__(self, other: "Objective") -> "Objective":
        return _Sum([(1.0, self), (1.0, other)])

    def __mul__(self, scale: float) -> "Objective":
        return _Sum([(float(scale), self)])

    __rmul__ = __mul__


class _Sum(Objective):
    def __init__(self, terms: list[tuple[float, Objective]]):
        flat: list[tuple[float, Objective]] = []
        for w, t in terms:
            flat += [(w * w2, t2) for w2, t2 in t.terms] if isinstance(t, _Sum) else [(w, t)]
        self.terms = flat
        self.name = " + ".join(f"{w:g}*{t.name}" if w != 1 else t.name for w, t in flat)

    def loss(self, features: Tensor) -> Tensor:
        return sum(w * t.loss(features) for w, t in self.terms)

    def metrics(self, features: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for _, t in self.terms:
            out.update(t.metrics(features))
        return out


class Invert(Objective):
    """ℓ = ‖Φ(x) − Φ0‖² / ‖Φ0‖² per image; metric ``error`` = ‖Φ(x) − Φ0‖ / ‖Φ0‖.

    Args:
        target: Φ0, features (N, ...) of the images to invert (detached).
    """

    name = "invert"

    def __init__(self, target: Tensor):
        self.target = target.detach()
        self.norm2 = _flat(self.target).pow(2).sum(1).clamp_min(1e-12)

    def loss(self, features: Tensor) -> Tensor:
        if features.shape != self.target.shape:
            raise ShapeError(f"features {tuple(features.shape)} do not match the target {tuple(self.target.shape)}.")
        return _SquaredDistance.apply(_flat(features), _flat(self.target)) / self.norm2

    def metrics(self, features: Tensor) -> dict[str, Tensor]:
        return {"error": self.loss(features).sqrt()}


class Caricature(Objective):
    """ℓ = −⟨Φ(x0), Φ(x)⟩ / ‖Φ(x0)‖² per image; metric ``gain`` = −ℓ (1 at x = x0).

    Args:
        reference: Φ(x0), features (N, ...) of the images to caricature.
    """

    name = "caricature"

    def __init__(self, reference: Tensor):
        self.reference = reference.detach()
        self.norm2 = _flat(self.reference).pow(2).sum(1).clamp_min(1e-12)

    def loss(self, features: Tensor) -> Tensor:
        return -(_flat(features) * _flat(self.reference)).sum(1) / self.norm2

    def metrics(self, features: Tensor) -> dict[str, Tensor]:
        return {"gain": -self.loss(features)}


def unit_weights(units: Sequence[Unit], feature_shape: Sequence[int], spatial: str = "mean") -> Tensor:
    """The directions w_i (N, *feature_shape) selecting each unit.

    Args:
        units: per image, a channel/class ``k``, a neuron ``(k, i, j)``, or a direction tensor.
        feature_shape: shape of one feature item, (C, h, w) or (D,).
        spatial: for a channel of a (C, h, w) map: ``"mean"`` (average over space) or ``"center"``.

    Returns:
        float tensor (N, *feature_shape).
    """
    shape = tuple(int(s) for s in feature_shape)
    out = torch.zeros((len(units), *shape))
    for n, u in enumerate(units):
        if isinstance(u, Tensor):
            if u.numel() != out[n].numel():
                raise ShapeError(f"direction has {u.numel()} elements, the layer has {shape}; pass a tensor of that shape.")
            out[n] = u.detach().reshape(shape).to(out.dtype).cpu()
            continue
        k = u[0] if isinstance(u, (tuple, list)) else u
        if not 0 <= int(k) < shape[0]:
            raise LayerError(f"unit {k} out of range: the layer has {shape[0]} channels/outputs (0..{shape[0] - 1}).")
        if isinstance(u, (tuple, list)):
            if len(u) != 3 or len(shape) != 3:
                raise LayerError(f"neuron {tuple(u)} needs (k, i, j) on a (C, h, w) layer; the layer is {shape}.")
            k, i, j = (int(v) for v in u)
            if not (0 <= i < shape[1] and 0 <= j < shape[2]):
                raise LayerError(f"neuron {(k, i, j)} outside the {shape[1]}x{shape[2]} map; pick i < {shape[1]}, j < {shape[2]}.")
            out[n, k, i, j] = 1.0
        elif len(shape) == 3 and spatial == "center":
            out[n, int(k), shape[1] // 2, shape[2] // 2] = 1.0
        elif len(shape) == 3 and spatial == "mean":
            out[n, int(k)] = 1.0 / (shape[1] * shape[2])
        elif len(shape) == 3:
            raise ShapeError(f"unknown spatial mode '{spatial}'; use 'mean' or 'center'.")
        else:
            out[n].view(-1)[int(k)] = 1.0
    return out


class Maximize(Objective):
    """ℓ = −⟨w_i, Φ(x_i)⟩ / Z_i per image i; metric ``activation`` = ⟨w_i, Φ(x_i)⟩ (not scaled).

    Args:
        units: one unit per image (see :data:`Unit`).
        spatial: ``"mean"`` or ``"center"`` for channel units of a (C, h, w) map.
        scale: Z, a float or (N,) tensor; ``None`` sets it at the first call to the RMS of the
            features then seen (the start images), which the engine evaluates before optimising.
    """

    name = "maximize"

    def __init__(self, units: Sequence[Unit], spatial: str = "mean", scale: float | Tensor | None = None):
        self.units = list(units)
        self.spatial = spatial
        self.scale = scale
        self._w: Tensor | None = None

    def weights(self, features: Tensor) -> Tensor:
        if features.shape[0] != len(self.units):
            raise ShapeError(f"{features.shape[0]} images for {len(self.units)} units; give one unit per image.")
        if self._w is None or self._w.shape[1:] != features.shape[1:]:
            self._w = unit_weights(self.units, features.shape[1:], self.spatial)
        return self._w.to(features.device, features.dtype)

    def activation(self, features: Tensor) -> Tensor:
        return (_flat(features) * _flat(self.weights(features))).sum(1)

    def loss(self, features: Tensor) -> Tensor:
        if self.scale is None:
            self.scale = _flat(features.detach()).pow(2).mean(1).sqrt().clamp_min(1e-6)
        z = torch.as_tensor(self.scale, device=features.device, dtype=features.dtype)
        return -self.activation(features) / z

    def metrics(self, features: Tensor) -> dict[str, Tensor]:
        return {"activation": self.activation(features)}
