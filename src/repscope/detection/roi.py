"""Pooling regions out of a feature map: RoI max pooling (Fast R-CNN), spatial pyramid pooling (SPP-net).

A box ``(x1, y1, x2, y2)`` in image pixels maps onto a layer's map by ``spatial_scale = s / stride``,
where ``stride`` is the layer's stride in the layer table (:attr:`repscope.layers.Representation.stride`)
and ``s`` the factor by which the image was resized before the trunk. RoI pooling divides the projected
box into ``k x k`` bins and takes the max of each (``torchvision.ops.roi_pool``, Girshick 2015); SPP
concatenates RoI poolings at the pyramid levels ``{1, 2, 4}`` (He et al. 2014), so every box gives a
vector of the same length ``C · (1 + 4 + 16)``. :func:`roi_mean` averages a region instead (bilinear
samples, ``roi_align``), which matches a network trained with global *average* pooling: the
zero-training ImageNet path pools with it.

``rois`` are ``(R, 5)`` rows ``(batch index, x1, y1, x2, y2)``; :func:`as_rois` builds them.

Example:
    >>> import torch
    >>> fmap = torch.rand(1, 8, 7, 7)
    >>> spp_pool(fmap, as_rois([torch.tensor([[0., 0., 100., 50.]])]), spatial_scale=1 / 32).shape
    torch.Size([1, 168])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align, roi_pool

from ..errors import LayerError

SPP_LEVELS = (1, 2, 4)


def as_rois(boxes_per_image: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(R, 5)`` rois ``(batch index, x1, y1, x2, y2)`` from a list of per-image boxes ``(M_i, 4)``."""
    rows = [torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype, device=b.device), b], 1)
            for i, b in enumerate(boxes_per_image)]
    return torch.cat(rows) if rows else torch.zeros(0, 5)


def roi_max_pool(fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float, output_size: int = 7) -> torch.Tensor:
    """RoI max pooling: ``fmap (N, C, h, w)``, ``rois (R, 5)`` -> ``(R, C, k, k)``."""
    return roi_pool(fmap, rois.to(fmap.dtype), output_size=(output_size, output_size), spatial_scale=spatial_scale)


def spp_pool(fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float,
             levels: Sequence[int] = SPP_LEVELS) -> torch.Tensor:
    """Spatial pyramid max pooling: ``(R, C · Σ l²)``, each level's bins row-major, levels in order."""
    rois = rois.to(fmap.dtype)
    return torch.cat([roi_pool(fmap, rois, (lv, lv), spatial_scale).flatten(1) for lv in levels], 1)


def roi_mean(fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float, grid: int = 4) -> torch.Tensor:
    """The mean of ``fmap`` over each region, ``(R, C)``: ``grid x grid`` bilinear bins (2x2 samples each), averaged."""
    pooled = roi_align(fmap, rois.to(fmap.dtype), (grid, grid), spatial_scale=spatial_scale, sampling_ratio=2,
                       aligned=True)
    return pooled.mean((2, 3))


class RoIPool(nn.Module):
    """Module form of :func:`roi_max_pool` (``k x k`` bins); ``out_features(C) = C · k²``."""

    def __init__(self, output_size: int = 7):
        super().__init__()
        self.output_size = output_size

    def forward(self, fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float) -> torch.Tensor:
        return roi_max_pool(fmap, rois, spatial_scale, self.output_size).flatten(1)

    def out_features(self, channels: int) -> int:
        return channels * self.output_size ** 2


class SpatialPyramidPool(nn.Module):
    """Module form of :func:`spp_pool`; ``out_features(C) = C · Σ l²`` (21·C for {1, 2, 4})."""

    def __init__(self, levels: Sequence[int] = SPP_LEVELS):
        super().__init__()
        self.levels = tuple(levels)

    def forward(self, fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float) -> torch.Tensor:
        return spp_pool(fmap, rois, spatial_scale, self.levels)

    def out_features(self, channels: int) -> int:
        return channels * sum(lv * lv for lv in self.levels)


def make_pool(kind: str) -> nn.Module:
    """``"roi"`` (7x7, Fast R-CNN) or ``"spp"`` ({1, 2, 4})."""
    if kind == "roi":
        return RoIPool(7)
    if kind == "spp":
        return SpatialPyramidPool(SPP_LEVELS)
    raise ValueError(f"unknown pooling {kind!r}")


def layer_stride(representation) -> int:
    """The stride of a representation's layer from the layer table; :class:`LayerError` if it has none."""
    stride = representation.stride
    if not stride:
        raise LayerError(f"layer '{representation.layer}' has no spatial map (stride {stride}). "
                         "Pick a convolutional layer (see 'repscope layers MODEL').")
    return int(stride)


def trunk_map(representation, image01: torch.Tensor, size: int | None) -> tuple[torch.Tensor, float]:
    """Run the trunk once on ``image01 (3, H, W)`` resized so its shorter side is ``size`` (None: as is).

    Returns ``(fmap (1, C, h, w), spatial_scale)`` with ``spatial_scale = resize factor / stride``.
    """
    h, w = image01.shape[1:]
    factor = 1.0 if size is None else size / min(h, w)
    x = image01[None]
    if factor != 1.0:
        x = F.interpolate(x, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="bilinear",
                          align_corners=False, antialias=factor < 1)
    with torch.no_grad():
        fmap = representation(x)
    return fmap, factor / layer_stride(representation)
