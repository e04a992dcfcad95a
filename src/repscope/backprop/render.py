"""Turn signed saliency maps into images: signed RGB, heatmap, colour heatmap and overlay.

- ``signed_rgb``: the map as the papers show it, ``0.5 + m / (2 s)`` per image (grey = 0), with
  ``s`` the ``percentile`` of ``|m|`` (default 99.5, robust to a few hot pixels; 100 = the maximum).
- ``heatmap``: ``max_c |m_c| / s`` clipped to [0, 1] per image (Simonyan et al.'s saliency).
- ``colorize``: a heatmap through a black-red-yellow-white ("hot") colour ramp.
- ``overlay``: the colour heatmap blended over the image, weighted by the heat.

Example:
    >>> import torch
    >>> from repscope.backprop.render import signed_rgb, heatmap
    >>> m = torch.randn(2, 3, 8, 8)
    >>> signed_rgb(m).shape, heatmap(m).shape
    (torch.Size([2, 3, 8, 8]), torch.Size([2, 8, 8]))
"""

from __future__ import annotations

import torch

__all__ = ["signed_rgb", "heatmap", "colorize", "overlay"]


def _scale(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """Per-image ``percentile`` of ``x`` (N, ...), shaped to broadcast against ``x``; never 0."""
    flat = x.flatten(1)
    s = flat.amax(1) if percentile >= 100 else torch.quantile(flat, percentile / 100.0, dim=1)
    s = torch.where(s > 0, s, flat.amax(1)).clamp_min(1e-30)  # a sparse map: fall back to the max
    return s.view(-1, *([1] * (x.dim() - 1)))


def signed_rgb(maps: torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """``(N, 3, H, W)`` signed maps -> ``(N, 3, H, W)`` in [0, 1], 0.5 where the map is 0.

    Args:
        maps: signed maps.
        percentile: ``|m|`` at this percentile maps to 0 / 1 (100: the maximum, nothing clipped).
    """
    maps = maps.detach().float()
    return (0.5 + maps / (2 * _scale(maps.abs(), percentile))).clamp(0, 1)


def heatmap(maps: torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """``(N, 3, H, W)`` signed maps -> ``(N, H, W)`` in [0, 1]: ``max_c |m_c|`` over its ``percentile``, clipped."""
    heat = maps.detach().float().abs().amax(1)
    return (heat / _scale(heat, percentile)).clamp(0, 1)


def colorize(heat: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` in [0, 1] -> ``(N, 3, H, W)`` in [0, 1] with the "hot" ramp (0 black, 1 white)."""
    t = heat.detach().float().clamp(0, 1)
    return torch.stack([(3 * t).clamp(0, 1), (3 * t - 1).clamp(0, 1), (3 * t - 2).clamp(0, 1)], 1)


def overlay(images01: torch.Tensor, maps: torch.Tensor, alpha: float = 0.7) -> torch.Tensor:
    """Blend the coloured heatmap of ``maps`` over ``images01`` (both ``(N, 3, H, W)``), result in [0, 1].

    Each pixel is ``(1 - a h) * image + a h * colour(h)`` with ``h`` the heat and ``a = alpha``.
    """
    heat = heatmap(maps)
    w = (alpha * heat).unsqueeze(1)
    return ((1 - w) * images01.detach().float().to(heat.device) + w * colorize(heat)).clamp(0, 1)
