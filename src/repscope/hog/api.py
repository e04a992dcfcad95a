"""The public HOG operator: ``hog`` / ``HOG`` (function + module pair) and model names ``hog:...``.

Both variants map images ``(N, 3, H, W)`` in [0, 1] to a feature map ``(N, C, h, w)`` with a
stride (= cell size) and a receptive field, so every repscope engine (pre-images, equivariance,
backprop visualisations) treats HOG exactly like a CNN layer.

Names (``repscope.models.load`` and the CLI use :func:`hog_from_name`)::

    hog                                   UoCTTI, cell 8, 9 orientations (31 channels)
    hog:uoctti,cell=8,orientations=9,bilinear=1
    hog:dalal-triggs,orientations=8,cell=8,block=2,norm=L2-Hys

Example:
    >>> import torch
    >>> phi = hog_from_name("hog:dalal-triggs,orientations=8,cell=8,block=2")
    >>> phi(torch.rand(1, 3, 64, 64)).shape, phi.stride
    (torch.Size([1, 32, 7, 7]), 8)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repscope.errors import ModelError, ShapeError, unknown
from repscope.geometry import CellGeometry, hog_geometry, hog_layout

from . import dalal_triggs as _dt
from . import uoctti as _uo
from ._common import as_pair

VARIANTS = ("uoctti", "dalal-triggs")
# Eager HOG on the CPU runs ~40 elementwise passes over the pixels: in slices of at most this many
# input values (8 MiB of float32; two RGB images at 512²) every temporary stays in cache and under
# glibc's 32 MiB mmap threshold. 16 photos at 512² on one core: Dalal–Triggs 0.43 -> 0.34 s,
# UoCTTI 0.33 -> 0.29 s.
EAGER_SLICE_VALUES = 1 << 21
_ALIASES = {"uoctti": "uoctti", "felzenszwalb": "uoctti", "dalal-triggs": "dalal-triggs",
            "dalaltriggs": "dalal-triggs", "dalal_triggs": "dalal-triggs", "dt": "dalal-triggs"}
_KEYS = {
    "orientations": "orientations", "o": "orientations",
    "cell": "cell", "pixels_per_cell": "cell",
    "block": "cells_per_block", "cells_per_block": "cells_per_block",
    "norm": "block_norm", "block_norm": "block_norm",
    "bilinear": "bilinear_orientations", "bilinear_orientations": "bilinear_orientations",
}
_DEFAULTS = {
    "uoctti": {"orientations": 9, "cell": 8, "bilinear_orientations": False},
    "dalal-triggs": {"orientations": 9, "cell": 8, "cells_per_block": 3, "block_norm": "L2-Hys"},
}


def hog(
    images01: Tensor,
    variant: str = "uoctti",
    *,
    orientations: int = 9,
    cell: int | tuple[int, int] = 8,
    cells_per_block: int | tuple[int, int] = 3,
    block_norm: str = "L2-Hys",
    bilinear_orientations: bool = False,
    compiled: bool = False,
) -> Tensor:
    """HOG features of a batch of images, differentiable, on the images' device and dtype.

    Args:
        images01: ``(N, 3, H, W)`` float images in [0, 1].
        variant: ``"uoctti"`` (Felzenszwalb / VLFeat ``vl_hog``) or ``"dalal-triggs"``
            (``skimage.feature.hog``).
        orientations: orientation bins (UoCTTI: undirected count ``n``, ``3n + 4`` channels).
        cell: cell side in pixels (UoCTTI: an int; Dalal–Triggs: int or ``(rows, cols)``).
        cells_per_block: Dalal–Triggs block size in cells (ignored by UoCTTI).
        block_norm: Dalal–Triggs ``L1``, ``L1-sqrt``, ``L2`` or ``L2-Hys`` (ignored by UoCTTI).
        bilinear_orientations: UoCTTI bilinear orientation binning (ignored by Dalal–Triggs).
        compiled: fuse the per-pixel passes with ``torch.compile`` (much faster on large batches;
            the first call per input shape compiles for tens of seconds and needs a C++ compiler
            on CPU). Same values up to float rounding.

    Returns:
        UoCTTI ``(N, 3n + 4, round(H/cell), round(W/cell))``; Dalal–Triggs
        ``(N, b_r·b_c·n, H//cell - b_r + 1, W//cell - b_c + 1)`` (see
        :func:`repscope.hog.to_skimage_layout`).
    """
    variant = _variant(variant)
    if not isinstance(orientations, int) or orientations < 1:
        raise ShapeError(f"orientations must be a positive int, got {orientations!r}.")
    if variant == "uoctti":
        c_r, c_c = as_pair(cell, "cell")
        if c_r != c_c:
            raise ShapeError(f"UoCTTI HOG uses square cells, got cell={cell!r}; pass one int.")
        return _in_slices(lambda x: _uo.uoctti_hog(x, c_r, orientations, bool(bilinear_orientations), compiled),
                          images01, compiled)
    return _in_slices(lambda x: _dt.dalal_triggs_hog(x, orientations, cell, cells_per_block, block_norm, compiled),
                      images01, compiled)


def _in_slices(fn, images01: Tensor, compiled: bool) -> Tensor:
    """``fn(images01)``, computed over slices of the batch of at most :data:`EAGER_SLICE_VALUES` input
    values when eager on the CPU (each image is independent; compiled code fuses its passes and would
    recompile for the last slice's shape; CUDA has its own caching allocator and wants large kernels)."""
    if (compiled or not isinstance(images01, Tensor) or images01.dim() != 4 or images01.shape[0] < 2
            or images01.device.type != "cpu"):
        return fn(images01)
    per_slice = max(1, EAGER_SLICE_VALUES // max(images01[0].numel(), 1))
    if images01.shape[0] <= per_slice:
        return fn(images01)
    return torch.cat([fn(part) for part in images01.split(per_slice)])


class HOG(nn.Module):
    """HOG as a representation Φ: ``HOG(...)(images01) == hog(images01, ...)``.

    Attributes:
        variant, orientations, cell, cells_per_block, block_norm, bilinear_orientations, compiled:
            as :func:`hog`.
        stride: input pixels per feature cell (the cell size; a pair for non-square D–T cells).
        receptive_field: side in pixels of the image region one output cell depends on.
        Both, and the offset of each cell, come from :mod:`repscope.geometry` (:meth:`cell_geometry`).
        channels: number of feature channels.
        name: the canonical model name, e.g. ``"hog:uoctti,orientations=9,cell=8,bilinear=0"``.
    """

    def __init__(
        self,
        variant: str = "uoctti",
        *,
        orientations: int = 9,
        cell: int | tuple[int, int] = 8,
        cells_per_block: int | tuple[int, int] = 3,
        block_norm: str = "L2-Hys",
        bilinear_orientations: bool = False,
        compiled: bool = False,
    ):
        super().__init__()
        self.compiled = bool(compiled)
        self.variant = _variant(variant)
        self.orientations = int(orientations)
        self.cell = cell if isinstance(cell, int) else as_pair(cell, "cell")
        self.cells_per_block = cells_per_block if isinstance(cells_per_block, int) else as_pair(
            cells_per_block, "cells_per_block")
        self.block_norm = block_norm
        self.bilinear_orientations = bool(bilinear_orientations)
        if self.variant == "dalal-triggs" and block_norm not in _dt.BLOCK_NORMS:
            raise ModelError(unknown("block_norm", block_norm, _dt.BLOCK_NORMS, "Use norm=L2-Hys (default)."))
        if self.orientations < 1:
            raise ModelError(f"HOG orientations must be >= 1, got {orientations}; e.g. orientations=9.")

    def forward(self, images01: Tensor) -> Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> ``(N, channels, h, w)``."""
        return hog(images01, self.variant, orientations=self.orientations, cell=self.cell,
                   cells_per_block=self.cells_per_block, block_norm=self.block_norm,
                   bilinear_orientations=self.bilinear_orientations, compiled=self.compiled)

    def _layout(self) -> tuple[tuple[int, int], tuple[float, float], int]:
        return hog_layout(self.variant, as_pair(self.cell, "cell"), as_pair(self.cells_per_block, "cells_per_block"))

    @property
    def stride(self) -> int | tuple[int, int]:
        """Input pixels per output cell (an int for square cells)."""
        s_r, s_c = self._layout()[0]
        return s_r if s_r == s_c else (s_r, s_c)

    @property
    def receptive_field(self) -> int:
        """Side in pixels of the image region one output cell depends on (not clipped to any image)."""
        return self._layout()[2]

    def cell_geometry(self, input_size: tuple[int, int]) -> CellGeometry:
        """Stride, offset and receptive field of the cells on an ``input_size`` image, in closed form
        (:func:`repscope.geometry.hog_geometry`; :func:`repscope.geometry.cell_geometry` asks this)."""
        return hog_geometry(self.variant, as_pair(self.cell, "cell"), as_pair(self.cells_per_block, "cells_per_block"),
                            tuple(input_size), self.output_shape(*input_size))

    @property
    def channels(self) -> int:
        """Number of output channels."""
        if self.variant == "uoctti":
            return 3 * self.orientations + 4
        b_r, b_c = as_pair(self.cells_per_block, "cells_per_block")
        return b_r * b_c * self.orientations

    @property
    def name(self) -> str:
        """Canonical ``hog:...`` name that :func:`hog_from_name` turns back into this module."""
        def fmt(v):
            return str(v) if isinstance(v, int) else "x".join(map(str, v))
        if self.variant == "uoctti":
            return (f"hog:uoctti,orientations={self.orientations},cell={fmt(self.cell)},"
                    f"bilinear={int(self.bilinear_orientations)}")
        return (f"hog:dalal-triggs,orientations={self.orientations},cell={fmt(self.cell)},"
                f"block={fmt(self.cells_per_block)},norm={self.block_norm}")

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(channels, h, w)`` of the features of an ``height × width`` image."""
        c_r, c_c = as_pair(self.cell, "cell")
        if self.variant == "uoctti":
            return self.channels, (height + c_r // 2) // c_r, (width + c_c // 2) // c_c
        b_r, b_c = as_pair(self.cells_per_block, "cells_per_block")
        return self.channels, height // c_r - b_r + 1, width // c_c - b_c + 1

    def extra_repr(self) -> str:
        return self.name


def _variant(name: str) -> str:
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ModelError(unknown("HOG variant", name, VARIANTS, "Use hog:uoctti or hog:dalal-triggs."))
    return _ALIASES[key]


def _parse_size(key: str, text: str) -> int | tuple[int, int]:
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ModelError(f"HOG parameter {key}={text!r} is not an integer; e.g. {key}=8 or {key}=8x6.") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise ModelError(f"HOG parameter {key}={text!r} must be one or two positive integers, e.g. {key}=8.")
    return values[0] if len(values) == 1 else (values[0], values[1])


def hog_kwargs(name: str) -> dict:
    """``"hog:dalal-triggs,orientations=8,cell=8"`` -> keyword arguments of :class:`HOG` (with ``variant``).

    ``hog`` alone is UoCTTI with its defaults. Keys: ``orientations`` (``o``), ``cell``
    (``pixels_per_cell``; ``8`` or ``8x6``), ``block`` (``cells_per_block``), ``norm``
    (``block_norm``), ``bilinear`` (``0``/``1``). Raises ModelError on anything else.
    """
    text = str(name).strip()
    head, _, rest = text.partition(":")
    if head.lower() != "hog":
        raise ModelError(f"'{name}' is not a HOG name; use e.g. hog, hog:uoctti or hog:dalal-triggs,cell=8.")
    items = [p.strip() for p in rest.split(",") if p.strip()] if rest else []
    variant = "uoctti"
    if items and "=" not in items[0]:
        variant = _variant(items.pop(0))
    kwargs: dict = {"variant": variant, **_DEFAULTS[variant]}
    allowed = {k for k, v in _KEYS.items() if v in _DEFAULTS[variant]}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in allowed:
            raise ModelError(unknown(f"{variant} HOG parameter", key, sorted(allowed),
                                     "Write parameters as key=value, e.g. hog:dalal-triggs,orientations=8,cell=8."))
        field = _KEYS[key]
        value = value.strip()
        if field == "block_norm":
            match = {n.lower(): n for n in _dt.BLOCK_NORMS}.get(value.lower())
            if match is None:
                raise ModelError(unknown("block_norm", value, _dt.BLOCK_NORMS, "Use norm=L2-Hys (default)."))
            kwargs[field] = match
        elif field == "bilinear_orientations":
            if value.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ModelError(f"HOG parameter bilinear={value!r} must be 0 or 1.")
            kwargs[field] = value.lower() in ("1", "true", "yes")
        elif field == "orientations":
            size = _parse_size(key, value)
            if not isinstance(size, int):
                raise ModelError(f"HOG parameter orientations={value!r} must be one integer, e.g. orientations=9.")
            kwargs[field] = size
        else:
            kwargs[field] = _parse_size(key, value)
    if variant == "uoctti" and not isinstance(kwargs["cell"], int):
        raise ModelError(f"UoCTTI HOG uses square cells; got cell={kwargs['cell']!r} in '{name}', use e.g. cell=8.")
    return kwargs


def parse_hog_name(name: str) -> HOG:
    """A :class:`HOG` module from a model name such as ``hog:dalal-triggs,orientations=8,cell=8``.

    Raises:
        ModelError: unknown variant, key or value (the message lists the closest valid ones).
    """
    kwargs = hog_kwargs(name)
    variant = kwargs.pop("variant")
    return HOG(variant, **kwargs)


hog_from_name = parse_hog_name  # the name repscope.models.load uses

__all__ = ["HOG", "VARIANTS", "hog", "hog_from_name", "hog_kwargs", "parse_hog_name"]
