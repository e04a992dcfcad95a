"""Equivariance and invariance of a representation, measured per layer (Lenc & Vedaldi).

Lenc & Vedaldi, "Understanding Image Representations by Measuring Their Equivariance and
Equivalence", CVPR 2015 / IJCV 2018. A representation Φ is *equivariant* to an image transform g
when a simple map M_g predicts Φ(g x) from Φ(x), and *invariant* when M_g is the identity. For a
feature map, M_g is the same geometric transform g' on the map's grid (through the layer's stride,
:mod:`repscope.transforms`) after a channel map W (1×1, or k×k with ``kernel=k``)::

    Φ(g x) ≈ M_g Φ(x) = g'(W Φ(x))

The grid of g' (stride ``s`` and offset ``o`` of each layer) is measured at the crop size by
:func:`repscope.geometry.measure`: from the gradient support of two neighbouring cells (their
receptive fields); where receptive fields are clipped by the crop, the stride from growing the input
(``Δpixels / Δcells``; ``H / h`` for adaptive pooling) and a map centred on the image are assumed.
Crops of ``64·j + 1`` pixels keep "same"-padded networks centred.

``error`` (held-out images, valid cells only)::

    error = Σ ‖Φ(g x) − M_g Φ(x)‖² / Σ ‖Φ(g x)‖²

for four maps: ``invariant`` (M_g = I, no warp), ``warp`` (W = I), ``permutation`` (W the channel
permutation maximising the correlation, by ``scipy.optimize.linear_sum_assignment``) and ``learned``
(W by streaming ridge regression, :mod:`repscope.regression`, λ chosen on held-out photos of the fit set).

``agreement``: ψ is the rest of the network after the layer. Compensated features
Ŵ g'⁻¹ Φ(g x), with Ŵ fitted to map them back to Φ(x), go through ψ; agreement is the fraction of
held-out images whose top-1 class equals that of ψ(Φ(x)). ``uncompensated`` (= ``invariant``) feeds
ψ(Φ(g x)) unchanged. ψ is the model run with a forward hook on the layer that replaces its output
(exact for chain-like networks; skip paths that jump over the layer see g x).

Data stream: fitting never holds more than one batch of features (memory independent of the number of
images, time linear in it). The default data are the shipped sample photos expanded into seeded
random crops and rescales, split into fit and held-out sets *by source photo* (:func:`crop_data`).

Example:
    >>> from repscope.crops import crop_data
    >>> from repscope.equivariance import equivariance
    >>> from repscope.hog import hog_from_name
    >>> fit, test = crop_data(n_fit=16, n_test=8, size=64)      # sample photos, split by photo
    >>> phi = hog_from_name("hog:dalal-triggs,orientations=8,cell=8")
    >>> row = equivariance(phi, "rot90", fit=fit, test=test, margin=1)
    >>> row.error["permutation"] < 0.05 < row.error["invariant"]  # rot90 permutes 8 unsigned bins
    True
    >>> from repscope import models                                # doctest: +SKIP
    >>> fit, test = crop_data(n_fit=96, n_test=48, size=129)       # doctest: +SKIP
    >>> rows = equivariance_layers(models.load("efficientnet_lite0"), "vflip", ["blocks.0", "blocks.1"],
    ...                            fit=fit, test=test)              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ShapeError
from .crops import Crops
from .layers import features, rest_of_network
from .models import as_model, module_device
from .regression import DEFAULT_ALPHAS, StreamingRidge, apply_map, select_ridge, stack_neighbours, to_rows
from .geometry import CellGeometry, measure
from .transforms import Transform, parse_transform

VARIANTS = ("invariant", "warp", "permutation", "learned")
MAX_REGRESSION_WIDTH = 4096

Extract = Callable[[Tensor], dict[str, Tensor]]
Psi = Callable[[Tensor, Tensor], Tensor]


@dataclass
class LayerEquivariance:
    """Equivariance of one layer under one transform (every number on held-out images).

    Attributes:
        layer: layer name. shape: feature shape ``(C, h, w)`` or ``(D,)`` at the crop size.
        stride: input pixels per cell used for g'. transform: the transform's name.
        error: ``{variant: error}`` for :data:`VARIANTS`.
        agreement: ``{variant: top-1 agreement}`` plus ``"uncompensated"``; None without ψ.
        accuracy: with labelled held-out images, top-1 accuracy ``{"original": ψ(Φ(x)), "uncompensated":
            ψ(Φ(gx)), variant: compensated}``; else None.
        lam: λ of the learned forward map. permutation: best channel permutation, ``W[j] = Φ[perm[j]]``.
        offset: measured pixel centre ``(o_y, o_x)`` of cell (0, 0)'s receptive field used by g', or None
            where the map is assumed centred on the image (vectors; receptive fields wider than the crop).
        n_fit, n_test: images used to fit and to measure.
    """

    layer: str
    shape: tuple[int, ...]
    stride: float
    transform: str
    error: dict[str, float]
    agreement: dict[str, float] | None
    lam: float
    permutation: list[int] = field(repr=False)
    n_fit: int = 0
    n_test: int = 0
    offset: tuple[float, float] | None = None
    accuracy: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# ---- engine -------------------------------------------------------------------------------------
def equivariance_layers(model, transform: str | Transform, layers: Sequence[str], *, fit: Crops, test: Crops,
                        kernel: int = 1, margin: int = 0, agreement: bool = True,
                        alphas: Sequence[float] = DEFAULT_ALPHAS, progress: bool = False) -> list[LayerEquivariance]:
    """Measure equivariance of several layers of ``model`` (one forward pass per batch for all of them).

    Args:
        model: a :class:`~repscope.models.Model` or ``nn.Module``.
        transform: a :class:`~repscope.transforms.Transform` or its name (``"vflip"``, ``"rot:45"``).
        layers: layer names (``blocks.1``, ``logits``).
        fit, test: image streams (:func:`crop_data`).
        kernel: spatial support ``k`` of the channel map W (odd). margin: border cells ignored.
        agreement: also measure top-1 agreement through ψ (needs a classifier).
        alphas: relative ridge strengths tried, λ = α · trace(C_xx) / d (see :mod:`repscope.regression`);
            the one with the lowest error on held-out photos of the fit stream is used.
        progress: show a progress bar.

    Returns:
        one :class:`LayerEquivariance` per layer, in order.
    """
    model = as_model(model)
    names = list(dict.fromkeys(layers))
    psis = {n: rest_of_network(model, n) for n in names} if agreement else None
    return _measure(lambda x: features(model, x, names), parse_transform(transform), names, fit, test,
                    kernel=kernel, margin=margin, alphas=alphas, psis=psis,
                    classify=model if agreement else None, owner=model, progress=progress)


def equivariance(representation: Callable[[Tensor], Tensor], transform: str | Transform, *, fit: Crops,
                 test: Crops, kernel: int = 1, margin: int = 0, agreement: bool = True,
                 alphas: Sequence[float] = DEFAULT_ALPHAS, progress: bool = False) -> LayerEquivariance:
    """Measure equivariance of one representation Φ (a layer's ``Representation``, HOG, any callable).

    Agreement is measured when Φ has ``model`` and ``layer`` attributes (a
    :class:`~repscope.layers.Representation`) and ``agreement`` is true. The grid of g' is measured
    at the crop size (:func:`repscope.geometry.measure`). Other arguments as in :func:`equivariance_layers`.
    """
    name = getattr(representation, "layer", type(representation).__name__)
    has_psi = agreement and hasattr(representation, "model") and hasattr(representation, "layer")
    psis = {name: rest_of_network(representation.model, name)} if has_psi else None
    return _measure(lambda x: {name: representation(x)}, parse_transform(transform), [name], fit, test,
                    kernel=kernel, margin=margin, alphas=alphas, psis=psis,
                    classify=representation.model if has_psi else None,
                    owner=getattr(representation, "model", representation), progress=progress)[0]


@dataclass
class _Fits:
    fwd: tuple[StreamingRidge, StreamingRidge]  # (train, val) for g'(W Φ(x)) ≈ Φ(gx)
    bwd: tuple[StreamingRidge, StreamingRidge]  # (train, val) for Ŵ g'⁻¹ Φ(gx) ≈ Φ(x)
    shape: tuple[int, ...]
    stride: float
    offset: tuple[float, float] | None = None  # pixel centre of cell 0's receptive field; None: centred
    image_size: tuple[int, int] | None = None


def _measure(extract: Extract, g: Transform, names: list[str], fit: Crops, test: Crops, *, kernel: int,
             margin: int, alphas, psis: dict[str, Psi] | None, classify, owner, progress: bool
             ) -> list[LayerEquivariance]:
    from .progress import progress as bar

    ginv = g.inverse()
    device = _device_of(classify if classify is not None else owner)
    fits: dict[str, _Fits] = {}
    val_sources = _validation_sources(fit)
    n_fit = 0
    with torch.no_grad():
        for x, owners in bar(fit, total=-(-len(fit) // fit.batch_size), desc="fit", quiet=not progress):
            x = x.to(device)
            feats_x, feats_gx = _pair(extract, x, g(x))
            is_val = torch.tensor([int(o) in val_sources for o in owners]) if val_sources else \
                (torch.arange(n_fit, n_fit + len(x)) % 4 == 3)
            n_fit += len(x)
            for name in names:
                fx, fgx = feats_x[name], feats_gx[name]
                if name not in fits:
                    if not fits:
                        cells = measure(extract, names, x)
                    fits[name] = _new_fits(fx, kernel, cells[name])
                for part, sel in ((0, ~is_val), (1, is_val)):
                    if sel.any():
                        sel = sel.to(fx.device)
                        _accumulate(fits[name], part, fx[sel], fgx[sel], g, ginv, kernel, margin)
        maps = {name: _solve(f, kernel, alphas) for name, f in fits.items()}
        sums = {name: dict.fromkeys(VARIANTS, 0.0) | {"total": 0.0} for name in names}
        hits = {name: dict.fromkeys(VARIANTS[1:] + ("uncompensated",), 0) for name in names}
        correct = {name: dict.fromkeys(("original", "uncompensated") + VARIANTS[1:], 0) for name in names}
        labelled = psis is not None and test.labels is not None
        n_test = 0
        for x, owners in bar(test, total=-(-len(test) // test.batch_size), desc="measure", quiet=not progress):
            x = x.to(device)
            gx = g(x)
            feats_x, feats_gx = _pair(extract, x, gx)
            n_test += len(x)
            if psis is not None:
                reference = classify(x).argmax(1)
                shifted = classify(gx).argmax(1)
            if labelled:
                truth = torch.tensor([test.labels[int(o)] for o in owners], device=reference.device)
            for name in names:
                fx, fgx = feats_x[name], feats_gx[name]
                _errors(sums[name], maps[name], fits[name], fx, fgx, g, kernel, margin)
                if psis is not None:
                    hits[name]["uncompensated"] += int((shifted == reference).sum())
                    if labelled:
                        correct[name]["original"] += int((reference == truth).sum())
                        correct[name]["uncompensated"] += int((shifted == truth).sum())
                    for variant, comp in _compensated(maps[name], fits[name], fgx, ginv, kernel).items():
                        predicted = psis[name](gx, comp).argmax(1)
                        hits[name][variant] += int((predicted == reference).sum())
                        if labelled:
                            correct[name][variant] += int((predicted == truth).sum())
    rows = []
    for name in names:
        s, m = sums[name], maps[name]
        error = {v: s[v] / max(s["total"], 1e-30) for v in VARIANTS}
        agree = None
        if psis is not None:
            agree = {v: hits[name][v] / max(n_test, 1) for v in hits[name]}
            agree = {"invariant": agree["uncompensated"], **agree}
        accuracy = {v: c / max(n_test, 1) for v, c in correct[name].items()} if labelled else None
        rows.append(LayerEquivariance(name, fits[name].shape, fits[name].stride, g.name, error, agree,
                                      m["lam"], m["perm"].tolist(), n_fit, n_test, fits[name].offset, accuracy))
    return rows


def _pair(extract: Extract, x: Tensor, gx: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Φ(x) and Φ(g x) from one forward pass."""
    both = extract(torch.cat([x, gx]))
    return ({k: v[: len(x)] for k, v in both.items()}, {k: v[len(x):] for k, v in both.items()})


def _new_fits(fx: Tensor, kernel: int, cells: CellGeometry) -> _Fits:
    if fx.dim() not in (2, 4):
        raise ShapeError(f"features must be (N, C, h, w) or (N, D), got {tuple(fx.shape)}. Pick another layer.")
    if fx.dim() == 2 and kernel != 1:
        raise ShapeError("kernel > 1 needs spatial features; this layer gives vectors. Use kernel=1.")
    c = fx.shape[1]
    width = c * kernel * kernel
    if width > MAX_REGRESSION_WIDTH:
        raise ShapeError(f"a {kernel}x{kernel} map on {c} channels has {width} inputs (over {MAX_REGRESSION_WIDTH}). "
                         "Use kernel=1 for this layer.")
    stride = cells.scalar_stride() if cells.spatial else 1.0
    acc = lambda: StreamingRidge(width, c, device=fx.device)  # noqa: E731
    return _Fits((acc(), acc()), (acc(), acc()), tuple(fx.shape[1:]), float(stride), cells.offset, cells.input_size)


def _warp(t: Transform, f: Tensor, fits: _Fits, margin: int = 0) -> tuple[Tensor, Tensor]:
    image_size = fits.image_size if fits.offset is not None else None
    out, mask = t.warp(f, stride=fits.stride, offset=fits.offset, image_size=image_size)
    return out, _erode(mask, margin) if f.dim() == 4 else mask


def _accumulate(fits: _Fits, part: int, fx, fgx, g, ginv, kernel, margin) -> None:
    pred, mask = _warp(g, stack_neighbours(fx, kernel), fits, margin)
    _check_same(pred, fgx)
    fits.fwd[part].update(to_rows(pred, mask), to_rows(fgx, mask))
    back, mask = _warp(ginv, fgx, fits, margin)
    fits.bwd[part].update(to_rows(stack_neighbours(back, kernel), mask), to_rows(fx, mask))


def _solve(fits: _Fits, kernel: int, alphas) -> dict:
    from scipy.optimize import linear_sum_assignment

    out = {}
    for key, (train, val) in (("fwd", fits.fwd), ("bwd", fits.bwd)):
        lam = select_ridge(train, val, alphas)[0] if val.n and train.n else train.merge(val).lambdas(alphas)[0]
        merged = train.merge(val)
        out[key] = merged.solve(lam)
        centre = _centre_taps(fits.shape[0], kernel)
        corr = merged.correlation()[centre].cpu().numpy()  # (C_in, C_out)
        rows, cols = linear_sum_assignment(-corr)
        perm = torch.empty(len(cols), dtype=torch.long)
        perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
        out[key + "_perm"] = perm
        if key == "fwd":
            out["lam"] = float(lam)
    out["perm"] = out["fwd_perm"]
    return out


def _centre_taps(channels: int, kernel: int) -> Tensor:
    return torch.arange(channels) * kernel * kernel + (kernel * kernel) // 2


def _errors(sums: dict, maps: dict, fits: _Fits, fx, fgx, g, kernel, margin) -> None:
    pred, mask = _warp(g, stack_neighbours(fx, kernel), fits, margin)
    _check_same(pred, fgx)
    target = to_rows(fgx, mask).double()
    rows = to_rows(pred, mask).double()
    warped = rows[:, _centre_taps(fits.shape[0], kernel).to(rows.device)]
    w, b = maps["fwd"]
    preds = {"invariant": to_rows(fx, mask).double(), "warp": warped,
             "permutation": warped[:, maps["fwd_perm"].to(rows.device)], "learned": rows @ w.T.to(rows) + b.to(rows)}
    sums["total"] += float((target ** 2).sum())
    for v, p in preds.items():
        sums[v] += float(((target - p) ** 2).sum())


def _compensated(maps: dict, fits: _Fits, fgx: Tensor, ginv: Transform, kernel: int) -> dict[str, Tensor]:
    """Φ(gx) mapped back towards Φ(x) by each variant (cells with no source are 0 before W)."""
    back, _ = _warp(ginv, fgx, fits)
    w, b = maps["bwd"]
    return {"warp": back, "permutation": back[:, maps["bwd_perm"].to(back.device)],
            "learned": apply_map(back, w, b, kernel)}


def _check_same(pred: Tensor, fgx: Tensor) -> None:
    if pred.shape[2:] != fgx.shape[2:]:
        raise ShapeError(f"the warped map {tuple(pred.shape[2:])} does not match Φ(gx) {tuple(fgx.shape[2:])}; "
                         "use square images for 90° rotations.")


def _erode(mask: Tensor, margin: int) -> Tensor:
    """Drop cells within ``margin`` cells of an invalid cell or of the map border."""
    if margin <= 0:
        return mask
    bad = F.pad((~mask).float()[None, None], (margin,) * 4, value=1.0)
    return F.max_pool2d(bad, 2 * margin + 1, stride=1)[0, 0] < 0.5


def _validation_sources(fit: Crops) -> set[int]:
    """Source photos of the fit stream held out to choose λ (every 4th, when there are at least 3)."""
    k = len(fit.sources)
    return {i for i in range(k) if i % 4 == 3} or ({k - 1} if k >= 3 else set())


def _device_of(obj) -> torch.device:
    """The device of a Model or nn.Module (:func:`~repscope.models.module_device`); CPU for other callables."""
    module = getattr(obj, "module", obj)
    return module_device(module) if isinstance(module, nn.Module) else torch.device("cpu")

