"""Where a feature cell sits in the image: stride, offset and receptive field of any representation.

Every engine that maps feature cells to pixels asks this module: the layer table
(:func:`repscope.layer_info.describe`), ``Representation.stride`` / ``.receptive_field``, HOG's
``stride`` / ``receptive_field``, the grid of the warp g' in :mod:`repscope.equivariance`, and the
coming engines (detection's RoI ``spatial_scale = 1 / stride``, stitching's resampling).

Coordinates are continuous pixels, pixel ``i`` spanning ``[i, i + 1)``, rows first. Cell ``(i, j)``
of a map with stride ``s = (s_y, s_x)`` and offset ``o = (o_y, o_x)`` (the centre of cell (0, 0)'s
receptive field) is centred at::

    p(i, j) = o + s · (i, j)

and when ``o`` is unknown the map is taken as centred on the image, ``o = ((H, W) − s · ((h, w) − 1)) / 2``.

How each number is found:

* **stride** — ``Δinput / Δcells`` between the input size and 256 pixels more (the difference
  cancels padding and kernel offsets; 256 is a multiple of every power-of-two stride); where the
  map does not grow (adaptive pooling: the stride depends on the image) or the larger input does not
  run (fixed-size models), ``H / h``.
* **offset** (and the stride again) — from the support of the input gradient of the centre cell and
  of its diagonal neighbour, summed over channels and four noise images (so inactive units do not
  hide part of it): their centres are ``s`` apart, and ``o`` = centre − ``s · (i, j)``. Not
  measured (``None``: centred) for vectors, or where a support touches the image border (clipped).
* **receptive field** — the side of the gradient support of the centre cell, on a *linearised* copy
  of the network: convolution/linear weights all positive, batch normalisations identities,
  activations identities and max-pooling average pooling (:class:`Linearised`), so the gradient
  reaches every pixel of every window whatever the graph (residuals, branches, functional ops).
  Clipped to the input.
* **HOG** knows its geometry in closed form (:func:`hog_geometry`): stride = cell; UoCTTI cell ``j``
  is centred at ``(j + ½)·cell`` and sees ``4·cell + 2 − cell mod 2`` pixels; a Dalal–Triggs block
  ``j`` of ``b`` cells is centred at ``(j + b/2)·cell`` and sees ``b·cell + 2`` pixels.

Example:
    >>> import torch
    >>> from torch import nn
    >>> phi = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    >>> g = cell_geometry(phi, 33, receptive_field=True)
    >>> g.stride, g.offset, g.receptive_field, g.spatial_scale
    ((2.0, 2.0), (0.5, 0.5), 7, 0.5)
    >>> g.cell_centre(16, 16)                       # the centre cell of the 17 × 17 map: the image centre
    (32.5, 32.5)
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .errors import ShapeError
from .progress import progress

__all__ = ["CellGeometry", "Extract", "Linearised", "cell_geometry", "hog_geometry", "hog_layout",
           "linearised_copy", "measure", "measure_grids", "measure_strides", "receptive_fields"]

STRIDE_PROBE = 256
#: ``images (N, 3, H, W) -> {name: features}``: a (truncated) forward pass giving several maps at once.
Extract = Callable[[Tensor], dict[str, Tensor]]


@dataclass(frozen=True)
class CellGeometry:
    """Where the cells of one feature map sit in an ``input_size`` image (pixels; see the module doc).

    Attributes:
        input_size: ``(H, W)`` of the image the map was computed from.
        shape: feature shape without the batch, ``(C, h, w)`` or ``(D,)``.
        stride: ``(s_y, s_x)`` input pixels per cell; None for vectors.
        offset: ``(o_y, o_x)``, the centre of cell (0, 0)'s receptive field; None where unknown
            (the map is then taken as centred on the image, :meth:`centre_of_first_cell`).
        receptive_field: side in pixels of one cell's receptive field, clipped to the input;
            None where not measured.
    """

    input_size: tuple[int, int]
    shape: tuple[int, ...]
    stride: tuple[float, float] | None = None
    offset: tuple[float, float] | None = None
    receptive_field: int | None = None

    @property
    def spatial(self) -> bool:
        """True for a map ``(C, h, w)``, False for vectors."""
        return len(self.shape) == 3

    def scalar_stride(self) -> float:
        """The stride as one number (square cells); ShapeError for vectors or non-square strides."""
        if self.stride is None:
            raise ShapeError(f"features of shape {self.shape} are vectors and have no stride. Pick a spatial layer.")
        if self.stride[0] != self.stride[1]:
            raise ShapeError(f"non-square strides {self.stride} are not supported. Use square cells/strides.")
        return self.stride[0]

    @property
    def spatial_scale(self) -> float:
        """``1 / stride``: feature cells per input pixel (torchvision's RoI pooling ``spatial_scale``)."""
        return 1.0 / self.scalar_stride()

    def centre_of_first_cell(self) -> tuple[float, float]:
        """The offset if known, else the centre of cell (0, 0) of a map centred on the image."""
        if self.offset is not None:
            return self.offset
        (sy, sx), (h, w) = self._stride_pair(), self.shape[-2:]
        return (self.input_size[0] - sy * (h - 1)) / 2, (self.input_size[1] - sx * (w - 1)) / 2

    def _stride_pair(self) -> tuple[float, float]:
        if self.stride is None:
            raise ShapeError(f"features of shape {self.shape} are vectors and have no cells. Pick a spatial layer.")
        return self.stride

    def cell_centre(self, row: float, col: float) -> tuple[float, float]:
        """Pixel centre ``o + s · (row, col)`` of cell ``(row, col)``'s receptive field."""
        (oy, ox), (sy, sx) = self.centre_of_first_cell(), self._stride_pair()
        return oy + sy * row, ox + sx * col


# ---- the one entry point ------------------------------------------------------------------------
def cell_geometry(phi: Callable[[Tensor], Tensor], input_size: int | tuple[int, int], *, offset: bool = True,
                  receptive_field: bool = False, device: torch.device | str | None = None) -> CellGeometry:
    """Stride, offset and receptive field of the cells of ``phi(images)`` at ``input_size``.

    Args:
        phi: a representation ``images01 (N, 3, H, W) -> (N, C, h, w) or (N, D)``: a
            :class:`~repscope.layers.Representation`, HOG (closed form), or any callable (measured).
        input_size: ``S`` or ``(H, W)`` in pixels.
        offset: measure the offset (one backward pass of four noise images); else None.
        receptive_field: measure the receptive field (a linearised copy of ``phi`` when it is an
            ``nn.Module``, else the gradient support of ``phi`` itself); else None.
        device: where to run the probes (default: ``phi``'s parameters' device, else the CPU).
    """
    size = (int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(map(int, input_size))
    known = getattr(phi, "cell_geometry", None)
    if callable(known):  # a representation that knows its geometry in closed form (HOG)
        return known(size)
    device = torch.device(device) if device is not None else _device_of(phi)
    images = torch.full((1, 3) + size, 0.5, device=device)
    found = measure(lambda x: {"phi": phi(x)}, ["phi"], images, offsets=offset)["phi"]
    if not receptive_field:
        return found
    if not found.spatial:
        return replace(found, receptive_field=max(size))
    if isinstance(phi, nn.Module):
        side = receptive_fields(phi, lambda net, x: {"phi": net(x)}, size, device)["phi"]
    else:
        side = _support_side(phi, images)
    return replace(found, receptive_field=side)


def measure(extract: Extract, names: Sequence[str], images: Tensor, *, offsets: bool = True
            ) -> dict[str, CellGeometry]:
    """The geometry of several maps at the size of ``images`` (only their shape, device and dtype are used).

    Shapes from one forward pass, strides by :func:`measure_strides`, and, with ``offsets``, stride
    and offset by :func:`measure_grids` wherever the receptive fields are not clipped.
    """
    size = tuple(images.shape[-2:])
    with torch.no_grad():
        probe = torch.full((1,) + tuple(images.shape[1:]), 0.5, device=images.device, dtype=images.dtype)
        shapes = {n: tuple(t.shape[1:]) for n, t in extract(probe).items() if n in names}
    spatial = [n for n in names if len(shapes[n]) == 3]
    strides = measure_strides(extract, spatial, shapes, probe)
    grids = measure_grids(extract, spatial, images) if offsets and spatial else {}
    out = {}
    for name in names:
        stride, offset = strides.get(name), None
        if name in grids:
            measured, offset = grids[name]
            stride = (float(measured), float(measured))
        out[name] = CellGeometry(size, shapes[name], stride, offset)
    return out


def measure_strides(extract: Extract, names: Sequence[str], shapes: dict[str, tuple[int, ...]], images: Tensor
                    ) -> dict[str, tuple[float, float]]:
    """``(s_y, s_x)`` of spatial maps: ``256 / Δcells`` between the size of ``images`` and 256 pixels more.

    Where a map does not grow, or the larger input does not run, ``(H / h, W / w)`` at this size.
    """
    (height, width), bigger = images.shape[-2:], STRIDE_PROBE
    if not names:
        return {}
    try:
        with torch.no_grad():
            probe = torch.full((1, images.shape[1], height + bigger, width + bigger), 0.5, device=images.device,
                               dtype=images.dtype)
            grown = {n: tuple(t.shape[-2:]) for n, t in extract(probe).items() if n in names}
    except (RuntimeError, ValueError):
        grown = {}
    result = {}
    for name in names:
        h, w = shapes[name][-2:]
        gh, gw = grown.get(name, (h, w))
        result[name] = (float(round(bigger / (gh - h))) if gh > h else height / h,
                        float(round(bigger / (gw - w))) if gw > w else width / w)
    return result


def measure_grids(extract: Extract, names: Sequence[str], images: Tensor
                  ) -> dict[str, tuple[float, tuple[float, float]]]:
    """Measured stride and offset ``(s, (o_y, o_x))`` (pixels) of feature maps, from gradient supports.

    Args:
        extract: ``images (N, 3, H, W) -> {name: features}``, differentiable (a truncated forward pass).
        names: the feature maps to measure.
        images: a batch whose shape, device and dtype the probe copies (its values are not used).

    Returns:
        ``{name: (stride, (o_y, o_x))}`` for the maps that could be measured.

    The support of the gradient of a cell (summed over channels and over four noise images) is its
    receptive field. The centres of the centre cell and of its diagonal neighbour give the stride
    (their distance) and the offset (the pixel centre of cell (0, 0)). Vectors, maps under 2 × 2, and
    maps whose receptive fields reach the image border (clipped, so their centre is unknown) are left out.
    """
    probe = torch.rand((4,) + tuple(images.shape[1:]), generator=torch.Generator().manual_seed(0)).to(images)
    probe.requires_grad_(True)
    out = {}
    with torch.enable_grad():
        feats = extract(probe)
        for name in names:
            f = feats[name]
            if f.dim() != 4 or not f.requires_grad or min(f.shape[-2:]) < 2:
                continue
            ci, cj = (f.shape[-2] - 1) // 2, (f.shape[-1] - 1) // 2
            centres = [_support_centre(f[:, :, ci + d, cj + d], probe) for d in (0, 1)]
            if None in centres:
                continue
            (y0, x0), (y1, x1) = centres
            if y1 - y0 != x1 - x0 or y1 <= y0:
                continue
            stride = y1 - y0
            out[name] = (stride, (y0 - stride * ci, x0 - stride * cj))
    return out


# ---- receptive fields on a linearised copy --------------------------------------------------------
class Linearised(TorchFunctionMode):
    """Within this mode activations are identities and max-pooling is average pooling."""

    _IDENTITIES = {F.relu, torch.relu, torch.relu_, F.relu_, F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu,
                   F.leaky_relu_, F.elu, F.selu, F.gelu, F.silu, F.hardswish, F.mish, F.softplus, F.dropout,
                   torch.Tensor.relu, torch.Tensor.relu_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._IDENTITIES:
            return args[0]
        if func in (F.max_pool2d, F._max_pool2d, torch.max_pool2d):
            return _max_as_average_pool(*args, **kwargs)
        if func is F.adaptive_max_pool2d:
            return F.adaptive_avg_pool2d(args[0], args[1] if len(args) > 1 else kwargs["output_size"])
        return func(*args, **kwargs)


def _max_as_average_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                         return_indices=False):
    """``F.max_pool2d``'s signature, computed as an average pool over the same windows."""
    return F.avg_pool2d(input, kernel_size, stride or kernel_size, padding, ceil_mode=ceil_mode,
                        count_include_pad=False)


def linearised_copy(module: nn.Module) -> nn.Module:
    """A float32 copy with positive averaging weights and identity normalisations (run it under Linearised)."""
    net = copy.deepcopy(module).float().eval()
    with torch.no_grad():
        for sub in net.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.running_mean is not None:
                sub.running_mean.zero_()
                sub.running_var.fill_(1.0)
            weight = getattr(sub, "weight", None)
            if isinstance(weight, torch.Tensor):
                weight.fill_(1.0 / max(1, weight[0].numel()) if weight.dim() >= 2 else 1.0)
            bias = getattr(sub, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    return net


def receptive_fields(module: nn.Module, run: Callable[[nn.Module, Tensor], dict[str, Tensor]],
                     size: tuple[int, int], device: torch.device) -> dict[str, int]:
    """Receptive-field side (pixels, clipped to ``size``) of the centre cell of each map of ``run(copy, x)``.

    ``copy`` is :func:`linearised_copy` ``(module)``; ``run`` is called under :class:`Linearised`
    with a positive ``(1, 3, H, W)`` image. Maps that are the very same tensor (identities, in-place
    activations) share one backward pass.
    """
    net = linearised_copy(module)
    generator = torch.Generator().manual_seed(0)
    x = (0.25 + 0.5 * torch.rand((1, 3) + tuple(size), generator=generator)).to(device).requires_grad_(True)
    with Linearised():
        outputs = run(net, x)
    unique = {id(t): t for t in outputs.values()}
    by_tensor: dict[int, int] = {}
    for i, (key, out) in enumerate(progress(unique.items(), total=len(unique), desc="receptive fields")):
        h, w = out.shape[-2:]
        target = out[0, :, (h - 1) // 2, (w - 1) // 2].abs().sum()
        grad = None
        if target.requires_grad:
            (grad,) = torch.autograd.grad(target, x, retain_graph=i < len(unique) - 1, allow_unused=True)
        by_tensor[key] = _support_extent(grad)
    return {name: by_tensor[id(out)] for name, out in outputs.items()}


# ---- HOG in closed form ---------------------------------------------------------------------------
def hog_layout(variant: str, cell: tuple[int, int], cells_per_block: tuple[int, int]
               ) -> tuple[tuple[int, int], tuple[float, float], int]:
    """``(stride, offset, receptive_field)`` of HOG cells, independent of the image size.

    UoCTTI: cell ``j`` collects votes from the ``2·cell`` pixels (``2·cell − 1`` when odd) around
    ``(j + ½)·cell``, its normalisation reaches the neighbouring cells (``+ 2·cell``) and central
    differences add a pixel each side: ``4·cell + 2 − cell mod 2``. Dalal–Triggs: block ``j`` covers
    cells ``j … j + b − 1``, centred at ``(j + b/2)·cell``, plus the gradients' 1-pixel rim: ``b·cell + 2``.
    """
    (c_r, c_c), (b_r, b_c) = cell, cells_per_block
    if variant == "uoctti":
        return (c_r, c_c), (c_r / 2, c_c / 2), 4 * c_r + 2 - c_r % 2
    return (c_r, c_c), (b_r * c_r / 2, b_c * c_c / 2), max(b_r * c_r, b_c * c_c) + 2


def hog_geometry(variant: str, cell: tuple[int, int], cells_per_block: tuple[int, int],
                 input_size: tuple[int, int], shape: tuple[int, int, int]) -> CellGeometry:
    """The :class:`CellGeometry` of a HOG map of ``shape`` on an ``input_size`` image (closed form)."""
    stride, offset, side = hog_layout(variant, cell, cells_per_block)
    return CellGeometry(tuple(input_size), tuple(shape), (float(stride[0]), float(stride[1])), offset,
                        min(side, max(input_size)))


# ---- helpers -------------------------------------------------------------------------------------
def _support_centre(cell: Tensor, probe: Tensor) -> tuple[float, float] | None:
    """Pixel centre of the receptive field of ``cell`` (N, C) over ``probe``; None if clipped or empty."""
    (grad,) = torch.autograd.grad(cell.abs().sum(), probe, retain_graph=True, allow_unused=True)
    if grad is None:
        return None
    support = grad.abs().sum((0, 1)) > 0
    rows, cols = torch.nonzero(support.any(1)).flatten(), torch.nonzero(support.any(0)).flatten()
    h, w = support.shape
    if not rows.numel() or rows[0] == 0 or cols[0] == 0 or rows[-1] == h - 1 or cols[-1] == w - 1:
        return None
    return (int(rows[0]) + int(rows[-1]) + 1) / 2, (int(cols[0]) + int(cols[-1]) + 1) / 2


def _support_side(phi: Callable[[Tensor], Tensor], images: Tensor) -> int:
    """Receptive-field side of ``phi``'s centre cell from its gradient over four noise images."""
    probe = torch.rand((4,) + tuple(images.shape[1:]), generator=torch.Generator().manual_seed(0)).to(images)
    probe.requires_grad_(True)
    with torch.enable_grad():
        f = phi(probe)
        cell = f[:, :, (f.shape[-2] - 1) // 2, (f.shape[-1] - 1) // 2]
        grad = None
        if cell.requires_grad:
            (grad,) = torch.autograd.grad(cell.abs().sum(), probe, allow_unused=True)
    return _support_extent(None if grad is None else grad.abs().sum(0, keepdim=True))


def _support_extent(grad: Tensor | None) -> int:
    """The side of the bounding box of the non-zero gradient ``(1, C, H, W)``, in pixels (1 if none)."""
    if grad is None:
        return 1
    support = grad[0].abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        return 1
    return max(int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))


def _device_of(phi) -> torch.device:
    """The device of ``phi``'s first parameter or buffer (a Representation: its model's); else the CPU."""
    module = phi if isinstance(phi, nn.Module) else getattr(phi, "module", None)
    if isinstance(module, nn.Module):
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            return tensor.device
    return torch.device("cpu")
