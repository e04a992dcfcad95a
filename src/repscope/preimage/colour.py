r"""A decorrelated colour basis for the pre-image canvas (Olah et al., "Feature Visualization", Distill 2017).

Natural images' RGB values are strongly correlated: most of their variance is brightness. With a
per-element step (the papers' AdaGrad-scaled momentum, or Adam: ≈ sign(g) in size) every channel
of every pixel moves equally fast, so colour changes as fast as brightness and maximised images
come out saturated. Optimising y with x = C y per pixel instead, where C is the square root of
ImageNet's colour covariance (Lucid's ``color_correlation_svd_sqrt``, columns scaled so the
largest has norm 1), moves brightness at the old speed and the two colour-opponent directions at
0.27 and 0.13 of it:

.. math::

    x_{:,ij} = C\,y_{:,ij},\qquad \frac{\partial E}{\partial y_{:,ij}} = C^\top \frac{\partial E}{\partial x_{:,ij}},
    \qquad y = C^{-1} x

C is invertible, so the energy's minima are unchanged; only the optimiser's path is.

Example:
    >>> import torch
    >>> x = torch.randn(2, 3, 4, 4)
    >>> torch.allclose(to_rgb(from_rgb(x)), x, atol=1e-5)
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["COLOUR_SQRT", "colour_matrix", "to_rgb", "to_rgb_adjoint", "from_rgb"]

#: Lucid's square root of the ImageNet RGB colour covariance (rows: R, G, B; columns: the basis).
COLOUR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


def colour_matrix(like: Tensor) -> Tensor:
    """C (3, 3): :data:`COLOUR_SQRT` with its columns divided by the largest column norm, on ``like``'s device/dtype."""
    c = torch.tensor(COLOUR_SQRT, dtype=torch.float64)
    c = c / c.norm(dim=0).max()
    return c.to(device=like.device, dtype=like.dtype)


def _mix(matrix: Tensor, x: Tensor) -> Tensor:
    """Per-pixel ``matrix @ x[:, :, i, j]`` for x (N, 3, H, W)."""
    return torch.einsum("cd,ndhw->nchw", matrix, x)


def to_rgb(y: Tensor) -> Tensor:
    """x = C y per pixel: (N, 3, H, W) decorrelated -> (N, 3, H, W) RGB (same units)."""
    return _mix(colour_matrix(y), y)


def to_rgb_adjoint(grad: Tensor) -> Tensor:
    """∂E/∂y = Cᵀ ∂E/∂x per pixel, (N, 3, H, W)."""
    return _mix(colour_matrix(grad).T, grad)


def from_rgb(x: Tensor) -> Tensor:
    """y = C⁻¹ x per pixel, (N, 3, H, W)."""
    c = colour_matrix(x.double()) if x.dtype != torch.float64 else colour_matrix(x)
    return _mix(torch.linalg.inv(c).to(x.dtype), x)
