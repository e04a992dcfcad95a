r"""A Fourier (spectrum-scaled) parameterisation of the pre-image canvas (Olah et al., Distill 2017).

The canvas x (N, C, H, W) is the inverse real FFT of coefficients s, each scaled by a weight that
falls with spatial frequency |f| (cycles per pixel), as natural images' amplitude spectra do:

.. math::

    x = \mathcal{F}^{-1}_{\mathrm{ortho}}\big(w \odot s\big), \qquad
    w(f) = \frac{\max(|f|, 1/S)^{-d}}{\mathrm{rms}_f\,\max(|f|, 1/S)^{-d}},\qquad S = \max(H, W)

(d = ``decay``, 1 as in Lucid). The weights have unit root-mean-square over the full spectrum, so
by Parseval a step of the same size on every coefficient moves the pixels by that size on
average, as a step on pixels would, but mostly at low frequencies: a per-element step (AdaGrad or
Adam) then builds coarse structure first. ``from_image`` inverts the map exactly (real FFT of x,
divided by w), so the canvas can be projected in pixel space and re-expressed in s.

Example:
    >>> import torch
    >>> x = torch.randn(1, 3, 8, 10)
    >>> w = weights(8, 10, like=x)
    >>> torch.allclose(to_image(from_image(x, w), w, (8, 10)), x, atol=1e-5)
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["weights", "to_image", "to_image_adjoint", "from_image"]


def weights(height: int, width: int, *, like: Tensor, decay: float = 1.0) -> Tensor:
    """w (H, W//2 + 1) for the half spectrum of an H × W real image (unit rms over the full spectrum)."""
    fy = torch.fft.fftfreq(int(height), dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(int(width), dtype=torch.float64)[None, :]
    full = (fy**2 + fx**2).sqrt().clamp_min(1.0 / max(int(height), int(width))).pow(-float(decay))
    full = full / full.pow(2).mean().sqrt()
    return full[:, : int(width) // 2 + 1].to(device=like.device, dtype=like.dtype)


def to_image(s: Tensor, w: Tensor, size: tuple[int, int]) -> Tensor:
    """x = irfft2(w ⊙ s) (N, C, H, W) from s (N, C, H, W//2 + 1, 2) (real and imaginary parts)."""
    return torch.fft.irfft2(torch.view_as_complex(s.contiguous()) * w, s=tuple(size), norm="ortho")


def to_image_adjoint(grad: Tensor, w: Tensor) -> Tensor:
    """∂E/∂s (N, C, H, W//2 + 1, 2) from ∂E/∂x (N, C, H, W): the exact adjoint of :func:`to_image`."""
    s = torch.zeros(grad.shape[:-1] + (w.shape[-1], 2), dtype=grad.dtype, device=grad.device, requires_grad=True)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(to_image(s, w, tuple(grad.shape[-2:])), s, grad)
    return out


def from_image(x: Tensor, w: Tensor) -> Tensor:
    """s with ``to_image(s, w, x.shape[-2:]) == x``: rfft2(x) / w, (N, C, H, W//2 + 1, 2)."""
    return torch.view_as_real(torch.fft.rfft2(x, norm="ortho") / w).contiguous()
