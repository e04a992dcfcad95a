"""Geometric transformations g on images and the matching warp g' on feature maps.

Lenc & Vedaldi (CVPR 2015) ask whether a representation Φ transforms predictably when the image
does: Φ(g x) ≈ M_g Φ(x). For a convolutional feature map, M_g is the same geometric transform g'
acting on the map's grid, followed by a channel map W (see :mod:`repscope.equivariance`).

Every transform here is an affine map of the plane, in **pixels, relative to the image centre**
(x to the right, y down)::

    p' = A p + t,      (g x)(p') = x(p)

A feature cell (i, j) of a layer with stride ``s`` (input pixels per cell) and receptive-field
offset ``o`` (pixel position of the centre of cell 0) sits at ``p = o + s·(i, j) − (H, W)/2``;
by default the map is assumed centred on the image (``o = (H − s(h−1))/2``), so
``p = s·((i, j) − (h−1, w−1)/2)``. g' reads each output cell from the source position
``A⁻¹(p' − t)``: exactly (a gather) when that position is a grid point, as for flips and multiples
of 90° on centred maps, bilinearly otherwise. Cells whose source falls outside the map are
invalid; the returned mask says which cells are valid (the corners after ``rot:45``, the border
uncovered by ``shift`` or ``scale`` < 1). Images are the special case ``s = 1``.
:func:`repscope.geometry.measure` gives ``s`` and ``o`` of any representation (from the
receptive fields of two neighbouring cells, :func:`repscope.geometry.measure_grids`).

Names (``parse_transform``): ``identity``, ``hflip``, ``vflip``, ``rot90``, ``rot180``, ``rot270``,
``rot:DEG`` (or ``rotDEG``, counter-clockwise on screen), ``scale:S`` (zoom about the centre),
``shift:DX,DY`` (pixels, right and down); compose with ``+``, applied left to right
(``"hflip+rot90"`` flips, then rotates).

Example:
    >>> import torch
    >>> from repscope.transforms import parse_transform
    >>> g = parse_transform("rot90")
    >>> x = torch.rand(1, 3, 8, 8)
    >>> bool(torch.equal(g(x), torch.rot90(x, 1, (-2, -1))))
    True
    >>> phi = torch.rand(1, 16, 4, 4)
    >>> warped, mask = g.warp(phi, stride=2)
    >>> bool(mask.all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import RepscopeError, ShapeError

_EPS = 1e-6


class TransformError(RepscopeError):
    """A transform name cannot be parsed."""


@dataclass(frozen=True)
class Transform:
    """An affine image transform ``p' = A p + t`` (pixels, centre-relative, x right, y down).

    Attributes:
        name: the canonical name (``"rot:45"``, ``"hflip+rot90"``).
        matrix: ``A`` as ``((a, b), (c, d))``, acting on column vectors ``(x, y)``.
        shift: ``t`` as ``(tx, ty)`` in pixels.
    """

    name: str
    matrix: tuple[tuple[float, float], tuple[float, float]]
    shift: tuple[float, float] = (0.0, 0.0)

    # ---- algebra -------------------------------------------------------------------------------
    def then(self, other: Transform) -> Transform:
        """The composition "first ``self``, then ``other``" (``other ∘ self``)."""
        a, b = _mat(self), _mat(other)
        ab = b @ a
        t = b @ torch.tensor(self.shift, dtype=torch.float64) + torch.tensor(other.shift, dtype=torch.float64)
        return Transform(f"{self.name}+{other.name}", _tuple2(ab), (float(t[0]), float(t[1])))

    def inverse(self) -> Transform:
        """The inverse transform ``p = A⁻¹ (p' − t)``."""
        ainv = torch.linalg.inv(_mat(self))
        t = -(ainv @ torch.tensor(self.shift, dtype=torch.float64))
        return Transform(f"inverse({self.name})", _tuple2(ainv), (float(t[0]), float(t[1])))

    @property
    def swaps_axes(self) -> bool:
        """True when the output has height and width exchanged (odd multiples of 90°)."""
        (a, _), (_, d) = self.matrix
        return abs(a) < _EPS and abs(d) < _EPS

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size ``(h', w')`` of the transformed image or map of size ``(height, width)``."""
        return (width, height) if self.swaps_axes else (height, width)

    # ---- action ----------------------------------------------------------------------------
    def __call__(self, images: Tensor) -> Tensor:
        """Apply g to images ``(N, C, H, W)`` (any range); uncovered pixels are 0."""
        return self.warp(images, stride=1)[0]

    def warp(
        self,
        features: Tensor,
        stride: float = 1,
        offset: float | tuple[float, float] | None = None,
        image_size: tuple[int, int] | None = None,
        mode: str = "bilinear",
    ) -> tuple[Tensor, Tensor]:
        """Apply g' to a feature map through the layer's grid.

        Args:
            features: ``(N, C, h, w)`` map, or ``(N, D)`` vectors (returned unchanged: g' = id).
            stride: input pixels per feature cell.
            offset: pixel position of the centre of cell 0's receptive field, ``o`` or
                ``(o_y, o_x)``; ``None`` assumes the map is centred on the image.
            image_size: ``(H, W)`` of the input image; required when ``offset`` is given.
            mode: ``"bilinear"`` or ``"nearest"`` for sources between grid points (grid-point
                sources are always gathered exactly).

        Returns:
            ``(warped, mask)``: warped ``(N, C, h', w')`` (invalid cells 0) and the boolean
            validity mask ``(h', w')`` (``(N,)``-free; the same for every image).
        """
        if features.dim() == 2:
            return features, torch.ones((), dtype=torch.bool, device=features.device)
        if features.dim() != 4:
            raise ShapeError(f"features must be (N, C, h, w) or (N, D), got shape {tuple(features.shape)}.")
        if mode not in ("bilinear", "nearest"):
            raise TransformError(f"unknown warp mode '{mode}'; use 'bilinear' or 'nearest'.")
        if offset is not None and image_size is None:
            raise ShapeError("warp(offset=...) needs image_size=(H, W) of the input image.")
        h, w = features.shape[-2:]
        sy, sx = self.source_grid(h, w, stride, offset, image_size)
        valid = (sy > -_EPS) & (sy < h - 1 + _EPS) & (sx > -_EPS) & (sx < w - 1 + _EPS)
        ry, rx = sy.round(), sx.round()
        on_grid = bool(((sy - ry).abs()[valid] < 1e-4).all() and ((sx - rx).abs()[valid] < 1e-4).all())
        mask = valid.to(features.device)
        if on_grid or mode == "nearest":
            iy = ry.clamp(0, h - 1).long().to(features.device)
            ix = rx.clamp(0, w - 1).long().to(features.device)
            out = features[:, :, iy, ix] * mask.to(features.dtype)
            return out, mask
        gx = sx / (w - 1) * 2 - 1 if w > 1 else sx * 0
        gy = sy / (h - 1) * 2 - 1 if h > 1 else sy * 0
        grid = torch.stack([gx, gy], dim=-1).to(features.device, features.dtype)
        grid = grid.unsqueeze(0).expand(features.shape[0], -1, -1, -1)
        out = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out * mask.to(features.dtype), mask

    def source_grid(
        self,
        height: int,
        width: int,
        stride: float = 1,
        offset: float | tuple[float, float] | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Fractional source cell ``(row, col)`` of every output cell, each ``(h', w')`` float64."""
        h2, w2 = self.output_size(height, width)
        cy_in, cx_in = _centre(height, width, stride, offset, image_size)
        out_image = None if image_size is None else self.output_size(*image_size)
        cy_out, cx_out = _centre(h2, w2, stride, _swap(offset) if self.swaps_axes else offset, out_image)
        ii, jj = torch.meshgrid(
            torch.arange(h2, dtype=torch.float64), torch.arange(w2, dtype=torch.float64), indexing="ij"
        )
        px, py = stride * (jj - cx_out) - self.shift[0], stride * (ii - cy_out) - self.shift[1]
        ainv = torch.linalg.inv(_mat(self))
        qx = ainv[0, 0] * px + ainv[0, 1] * py
        qy = ainv[1, 0] * px + ainv[1, 1] * py
        return qy / stride + cy_in, qx / stride + cx_in


# ---- constructors -------------------------------------------------------------------------------
def identity() -> Transform:
    """The identity transform."""
    return Transform("identity", ((1.0, 0.0), (0.0, 1.0)))


def hflip() -> Transform:
    """Mirror left-right."""
    return Transform("hflip", ((-1.0, 0.0), (0.0, 1.0)))


def vflip() -> Transform:
    """Mirror top-bottom."""
    return Transform("vflip", ((1.0, 0.0), (0.0, -1.0)))


def rotate(degrees: float) -> Transform:
    """Rotate counter-clockwise on screen by ``degrees`` about the image centre."""
    quarter = degrees / 90.0
    if abs(quarter - round(quarter)) < 1e-9:  # exact matrices for multiples of 90°
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][int(round(quarter)) % 4]
    else:
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    name = {90: "rot90", 180: "rot180", 270: "rot270"}.get(int(degrees) % 360 if degrees == int(degrees) else -1)
    # y points down: counter-clockwise on screen is x' = c x + s y, y' = -s x + c y.
    return Transform(name or f"rot:{degrees:g}", ((float(c), float(s)), (float(-s), float(c))))


def scale(factor: float) -> Transform:
    """Zoom by ``factor`` about the image centre (> 1 enlarges, cropping the border)."""
    if not factor > 0:
        raise TransformError(f"scale factor must be positive, got {factor}; e.g. 'scale:1.5'.")
    return Transform(f"scale:{factor:g}", ((float(factor), 0.0), (0.0, float(factor))))


def shift(dx: float, dy: float) -> Transform:
    """Translate by ``dx`` pixels right and ``dy`` pixels down."""
    return Transform(f"shift:{dx:g},{dy:g}", ((1.0, 0.0), (0.0, 1.0)), (float(dx), float(dy)))


def parse_transform(spec: str | Transform) -> Transform:
    """Parse a transform name (see the module docstring); ``+`` composes left to right.

    Raises:
        TransformError: the name is unknown or its parameters are malformed.
    """
    if isinstance(spec, Transform):
        return spec
    parts = [p.strip() for p in str(spec).split("+")]
    if not parts or any(not p for p in parts):
        raise TransformError(f"empty transform in '{spec}'; e.g. 'hflip', 'rot:45', 'hflip+rot90'.")
    result = _parse_one(parts[0])
    for part in parts[1:]:
        result = result.then(_parse_one(part))
    return Transform(str(spec).replace(" ", ""), result.matrix, result.shift) if len(parts) > 1 else result


_SIMPLE = {"identity": identity, "hflip": hflip, "vflip": vflip}
NAMES = ["identity", "hflip", "vflip", "rot90", "rot180", "rot270", "rot:DEG", "scale:S", "shift:DX,DY"]


def _parse_one(spec: str) -> Transform:
    key = spec.lower()
    if key in _SIMPLE:
        return _SIMPLE[key]()
    head, _, arg = key.partition(":")
    try:
        if head == "rot" and arg:
            return rotate(float(arg))
        if head.startswith("rot") and not arg and head[3:]:
            return rotate(float(head[3:]))
        if head == "scale" and arg:
            return scale(float(arg))
        if head == "shift" and arg:
            dx, dy = (float(v) for v in arg.split(","))
            return shift(dx, dy)
    except ValueError:
        raise TransformError(f"malformed transform '{spec}'; expected one of {', '.join(NAMES)}.") from None
    from .errors import unknown

    raise TransformError(unknown("transform", spec, NAMES, "Compose with '+', e.g. 'hflip+rot90'."))


# ---- helpers ------------------------------------------------------------------------------------
def _mat(t: Transform) -> Tensor:
    return torch.tensor(t.matrix, dtype=torch.float64)


def _tuple2(m: Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    v = [[0.0 if abs(float(x)) < 1e-12 else float(x) for x in row] for row in m]
    return ((v[0][0], v[0][1]), (v[1][0], v[1][1]))


def _swap(offset):
    if offset is None or isinstance(offset, (int, float)):
        return offset
    return (offset[1], offset[0])


def _centre(h: int, w: int, stride: float, offset, image_size) -> tuple[float, float]:
    """Cell coordinates ``(row, col)`` of the image centre."""
    if offset is None:
        return (h - 1) / 2.0, (w - 1) / 2.0
    oy, ox = (offset, offset) if isinstance(offset, (int, float)) else offset
    return (image_size[0] / 2.0 - oy) / stride, (image_size[1] / 2.0 - ox) / stride
