r"""Canvases whose optimised variables are a linear basis's coefficients: colour-decorrelated, Fourier.

:class:`~.canvas.Canvas` optimises the levels of a Laplacian pyramid. :class:`BasisCanvas` keeps
the same canvas x (papers' space, jittered size, projected by Π) but lets the optimiser step on
coefficients θ of a linear map x = A(θ):

.. math::

    A(\theta) = C\,\mathrm{compose}(\theta) \;\;(\text{pyramid}) \quad\text{or}\quad
    A(\theta) = C\,\mathcal{F}^{-1}(w \odot \theta) \;\;(\text{Fourier}),

with C the decorrelated colour basis (:mod:`.colour`; the identity when ``colour="rgb"``) and w
the spectrum weights (:mod:`.fourier`). The gradient is the adjoint, ∂E/∂θ = Aᵀ ∂E/∂x, and after
each step x ← Π(A(θ)), θ ← A⁻¹(x) with the right inverse A⁻¹(x) = (C⁻¹x, 0, …) (pyramid: the coarse
levels folded into the finest, as :class:`~.canvas.Canvas` does) or rfft(C⁻¹x)/w (Fourier). A is
onto, so the energy's minima are those of pixels; only the optimiser's path changes.

Example:
    >>> import torch
    >>> from repscope.preimage.config import PreimageConfig
    >>> cfg = PreimageConfig(canvas="fourier", colour="decorrelated").resolve(stride=4)
    >>> c = canvas_type(cfg).noise([torch.Generator().manual_seed(0)], (16, 16), cfg, "cpu", torch.float32)
    >>> tuple(c.x.shape), [tuple(p.shape) for p in c.levels]
    ((1, 3, 17, 17), [(1, 3, 17, 9, 2)])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import colour, fourier, pyramid
from .canvas import Canvas, project_
from .config import PreimageConfig
from .sections import SectionClock

__all__ = ["BasisCanvas", "canvas_type"]


def canvas_type(cfg: PreimageConfig) -> type[Canvas]:
    """:class:`~.canvas.Canvas` for today's RGB pyramid (the default), :class:`BasisCanvas` otherwise."""
    return Canvas if cfg.colour == "rgb" and cfg.canvas == "pyramid" else BasisCanvas


class BasisCanvas(Canvas):
    """A canvas x = A(θ) (module doc); ``levels`` are θ, ``x`` the canvas (N, 3, H + j, W + j) the loss reads."""

    def __init__(self, x: Tensor, cfg: PreimageConfig, size: tuple[int, int]):
        super().__init__(x, cfg, size)  # projects x; self.x is its pyramid's finest level
        self.decorrelate = cfg.colour == "decorrelated"
        self.weights = None
        if cfg.canvas == "fourier":
            self.count = 0
            self.weights = fourier.weights(*self.x.shape[-2:], like=self.x, decay=cfg.fourier_decay)
        self.x = self.x.detach().clone().requires_grad_(True)
        self.levels = [p.requires_grad_(True) for p in self._coefficients(self.x.detach())]

    def _coefficients(self, x: Tensor) -> list[Tensor]:
        """θ = A⁻¹(x)."""
        y = colour.from_rgb(x) if self.decorrelate else x
        return [fourier.from_image(y, self.weights)] if self.weights is not None else pyramid.split(y, self.count)

    def _compose(self) -> Tensor:
        """x = A(θ), (N, 3, H + j, W + j)."""
        if self.weights is not None:
            y = fourier.to_image(self.levels[0], self.weights, tuple(self.x.shape[-2:]))
        else:
            y = pyramid.compose(self.levels)
        return colour.to_rgb(y) if self.decorrelate else y

    def adjoint(self, grad: Tensor) -> list[Tensor]:
        """∂E/∂θ = Aᵀ ∂E/∂x for every coefficient tensor."""
        g = colour.to_rgb_adjoint(grad) if self.decorrelate else grad
        return [fourier.to_image_adjoint(g, self.weights)] if self.weights is not None else pyramid.adjoint(g, self.count)

    @torch.no_grad()
    def step_(self, optimizer: torch.optim.Optimizer, grads: Sequence[Tensor], clock: SectionClock) -> None:
        """One optimiser step on θ, then x ← Π(A(θ)) and θ ← A⁻¹(x) (laps ``step``, ``pyramid fold``, ``projection``)."""
        self.previous.copy_(self.x)
        for level, grad in zip(self.levels, grads):
            level.grad = grad
        optimizer.step()
        clock.lap("step")
        self.x.copy_(self._compose())
        clock.lap("pyramid fold")
        project_(self.x, self.bound, self.box)
        for level, value in zip(self.levels, self._coefficients(self.x)):
            level.copy_(value)
        clock.lap("projection")
