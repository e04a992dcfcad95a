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
held-out images whose top-1 class equals that of ψ(Φ(x)). ``compensation_error`` is Ŵ's own error,
Σ ‖Φ(x) − Ŵ g'⁻¹ Φ(g x)‖² / Σ ‖Φ(x)‖² (valid cells), for the ridge Ŵ and any further map a fitter
adds (``FittedMaps.extra``: e.g. ``task``, Ŵ trained through ψ by :mod:`repscope.equivariance_task`). ``uncompensated`` (= ``invariant``) feeds
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

from .channel_maps import ChannelMap, best_permutation, centre_taps
from .crops import Crops, validation_sources
from .errors import ShapeError
from .geometry import CellGeometry, measure
from .layers import features, rest_of_network
from .models import as_model, module_device
from .regression import DEFAULT_ALPHAS, StreamingRidge, select_ridge, stack_neighbours, to_rows
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
        compensation_error: ``{"learned": e, extra map: e}`` with
            ``e = Σ ‖Φ(x) − Ŵ g'⁻¹ Φ(g x)‖² / Σ ‖Φ(x)‖²`` of each compensating map Ŵ.
        task: the task training's numbers when a fitter trained a map (:mod:`repscope.equivariance_task`).
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
    compensation_error: dict[str, float] | None = None
    task: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# ---- the fitted maps: what the fit pass hands to the evaluation pass ------------------------------
@dataclass(frozen=True)
class FittedMaps:
    """The channel maps of one layer (each direction), fitted on the fit stream.

    Attributes:
        learned: W with ``g'(W Φ(x)) ≈ Φ(g x)`` (the ``learned`` error).
        learned_back: Ŵ with ``Ŵ g'⁻¹ Φ(g x) ≈ Φ(x)`` (the ``learned`` agreement: compensated features go through ψ).
        permutation, permutation_back: channel permutations ``W[j] = Φ[perm[j]]`` of either direction.
        lam: λ of ``learned`` (None where the fitter has none).
        extra: further compensating maps Ŵ, ``{variant name: map}``, each reported as a variant of its own
            (agreement, accuracy, compensation error), e.g. ``{"task": Ŵ trained on the task}``.
    """

    learned: ChannelMap
    learned_back: ChannelMap
    permutation: Tensor
    permutation_back: Tensor
    lam: float | None = None
    extra: dict[str, ChannelMap] = field(default_factory=dict)


@dataclass
class LayerFit:
    """Fit-pass state of one layer: where its cells are, and the ridge statistics of both directions.

    ``forward`` / ``backward`` are ``(train, val)`` accumulators of ``g'(W Φ(x)) ≈ Φ(g x)`` and of
    ``Ŵ g'⁻¹ Φ(g x) ≈ Φ(x)``; ``val`` holds the rows of the fit stream's held-out photos (for λ).
    """

    cells: CellGeometry
    forward: tuple[StreamingRidge, StreamingRidge]
    backward: tuple[StreamingRidge, StreamingRidge]

    @property
    def stride(self) -> float:
        return self.cells.scalar_stride() if self.cells.spatial else 1.0

    def warp(self, t: Transform, f: Tensor, margin: int = 0) -> tuple[Tensor, Tensor]:
        """g' (or g'⁻¹) on the layer's grid; the mask loses ``margin`` cells next to invalid ones."""
        image_size = self.cells.input_size if self.cells.offset is not None else None
        out, mask = t.warp(f, stride=self.stride, offset=self.cells.offset, image_size=image_size)
        return out, _erode(mask, margin) if f.dim() == 4 else mask


#: ``fitter(layer name, its LayerFit) -> FittedMaps``; the default is :func:`ridge_maps`.
Fitter = Callable[[str, LayerFit], FittedMaps]


@dataclass(frozen=True)
class _Options:
    kernel: int
    margin: int
    alphas: tuple[float, ...]
    progress: bool
    device: torch.device


@dataclass(frozen=True)
class _Agreement:
    """ψ per layer and the whole classifier, for top-1 agreement (and accuracy with labels)."""

    psis: dict[str, Psi]
    classify: Callable[[Tensor], Tensor]


# ---- engine -------------------------------------------------------------------------------------
def equivariance_layers(model, transform: str | Transform, layers: Sequence[str], *, fit: Crops, test: Crops,
                        kernel: int = 1, margin: int = 0, agreement: bool = True,
                        alphas: Sequence[float] = DEFAULT_ALPHAS, progress: bool = False,
                        fitter: Fitter | None = None) -> list[LayerEquivariance]:
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
        fitter: ``(layer name, LayerFit) -> FittedMaps``, the maps the evaluation pass applies
            (default: :func:`ridge_maps`; e.g. :mod:`repscope.equivariance_task` trains Ŵ on the task).

    Returns:
        one :class:`LayerEquivariance` per layer, in order.
    """
    model = as_model(model)
    names = list(dict.fromkeys(layers))
    psi = _Agreement({n: rest_of_network(model, n) for n in names}, model) if agreement else None
    options = _Options(kernel, margin, tuple(alphas), progress, _device_of(model))
    return _measure(lambda x: features(model, x, names), parse_transform(transform), names, fit, test, options, psi,
                    fitter)


def equivariance(representation: Callable[[Tensor], Tensor], transform: str | Transform, *, fit: Crops,
                 test: Crops, kernel: int = 1, margin: int = 0, agreement: bool = True,
                 alphas: Sequence[float] = DEFAULT_ALPHAS, progress: bool = False,
                 fitter: Fitter | None = None) -> LayerEquivariance:
    """Measure equivariance of one representation Φ (a layer's ``Representation``, HOG, any callable).

    Agreement is measured when Φ has ``model`` and ``layer`` attributes (a
    :class:`~repscope.layers.Representation`) and ``agreement`` is true. The grid of g' is measured
    at the crop size (:func:`repscope.geometry.measure`). Other arguments as in :func:`equivariance_layers`.
    """
    name = getattr(representation, "layer", type(representation).__name__)
    has_psi = agreement and hasattr(representation, "model") and hasattr(representation, "layer")
    psi = _Agreement({name: rest_of_network(representation.model, name)}, representation.model) if has_psi else None
    options = _Options(kernel, margin, tuple(alphas), progress, _device_of(getattr(representation, "model",
                                                                                   representation)))
    return _measure(lambda x: {name: representation(x)}, parse_transform(transform), [name], fit, test, options,
                    psi, fitter)[0]


def _measure(extract: Extract, g: Transform, names: list[str], fit: Crops, test: Crops, options: _Options,
             psi: _Agreement | None, fitter: Fitter | None = None) -> list[LayerEquivariance]:
    """Fit pass (statistics of every layer), the maps, then the evaluation pass on held-out images."""
    layers, n_fit = _fit_pass(extract, g, names, fit, options)
    fitter = fitter or (lambda name, layer: ridge_maps(layer, options.kernel, options.alphas))
    maps = {name: fitter(name, layer) for name, layer in layers.items()}
    tallies, n_test = _evaluation_pass(extract, g, layers, maps, test, options, psi)
    rows = []
    for name in names:
        layer, tally = layers[name], tallies[name]
        rows.append(LayerEquivariance(name, layer.cells.shape, layer.stride, g.name, tally.errors(),
                                      tally.agreement(n_test) if psi is not None else None, maps[name].lam,
                                      maps[name].permutation.tolist(), n_fit, n_test, layer.cells.offset,
                                      tally.accuracy(n_test) if psi is not None and test.labels is not None else None,
                                      tally.compensation_errors()))
    return rows


# ---- pass 1: fit --------------------------------------------------------------------------------
def _fit_pass(extract: Extract, g: Transform, names: list[str], fit: Crops, options: _Options
              ) -> tuple[dict[str, LayerFit], int]:
    """Stream the fit images once, accumulating both directions' ridge statistics for every layer."""
    from .progress import progress as bar

    ginv = g.inverse()
    layers: dict[str, LayerFit] = {}
    val_sources = validation_sources(fit)
    n_fit = 0
    with torch.no_grad():
        for x, owners in bar(fit, total=-(-len(fit) // fit.batch_size), desc="fit", quiet=not options.progress):
            x = x.to(options.device)
            feats_x, feats_gx = _pair(extract, x, g(x))
            is_val = torch.tensor([int(o) in val_sources for o in owners]) if val_sources else \
                (torch.arange(n_fit, n_fit + len(x)) % 4 == 3)
            n_fit += len(x)
            if not layers:  # first batch: where every layer's cells are, at the crop size
                cells = measure(extract, names, x)
                layers = {name: _new_layer_fit(feats_x[name], cells[name], options.kernel) for name in names}
            for name, layer in layers.items():
                fx, fgx = feats_x[name], feats_gx[name]
                for part, sel in ((0, ~is_val), (1, is_val)):
                    if sel.any():
                        sel = sel.to(fx.device)
                        _accumulate(layer, part, fx[sel], fgx[sel], g, ginv, options)
    return layers, n_fit


def _new_layer_fit(fx: Tensor, cells: CellGeometry, kernel: int) -> LayerFit:
    if fx.dim() not in (2, 4):
        raise ShapeError(f"features must be (N, C, h, w) or (N, D), got {tuple(fx.shape)}. Pick another layer.")
    if fx.dim() == 2 and kernel != 1:
        raise ShapeError("kernel > 1 needs spatial features; this layer gives vectors. Use kernel=1.")
    c = fx.shape[1]
    width = c * kernel * kernel
    if width > MAX_REGRESSION_WIDTH:
        raise ShapeError(f"a {kernel}x{kernel} map on {c} channels has {width} inputs (over {MAX_REGRESSION_WIDTH}). "
                         "Use kernel=1 for this layer.")
    if cells.spatial:
        cells.scalar_stride()  # refuses non-square strides before any fitting
    acc = lambda: StreamingRidge(width, c, device=fx.device)  # noqa: E731
    return LayerFit(cells, (acc(), acc()), (acc(), acc()))


def _accumulate(layer: LayerFit, part: int, fx: Tensor, fgx: Tensor, g: Transform, ginv: Transform,
                options: _Options) -> None:
    """Add one batch's rows: forward ``g'(stack(Φ(x))) -> Φ(g x)``, backward ``stack(g'⁻¹ Φ(g x)) -> Φ(x)``."""
    pred, mask = layer.warp(g, stack_neighbours(fx, options.kernel), options.margin)
    _check_same(pred, fgx)
    layer.forward[part].update(to_rows(pred, mask), to_rows(fgx, mask))
    back, mask = layer.warp(ginv, fgx, options.margin)
    layer.backward[part].update(to_rows(stack_neighbours(back, options.kernel), mask), to_rows(fx, mask))


def ridge_maps(layer: LayerFit, kernel: int, alphas: Sequence[float]) -> FittedMaps:
    """The default fitter: ridge W and Ŵ (λ chosen on the fit stream's held-out photos), and the
    channel permutations maximising the correlation (``scipy.optimize.linear_sum_assignment``)."""
    learned, perms, lams = [], [], []
    for train, val in (layer.forward, layer.backward):
        lam = select_ridge(train, val, alphas)[0] if val.n and train.n else train.merge(val).lambdas(alphas)[0]
        merged = train.merge(val)
        learned.append(ChannelMap.from_rows(*merged.solve(lam), kernel))
        perms.append(best_permutation(merged, layer.cells.shape[0], kernel))
        lams.append(float(lam))
    return FittedMaps(learned[0], learned[1], perms[0], perms[1], lams[0])


# ---- pass 2: evaluate ---------------------------------------------------------------------------
@dataclass
class _Tally:
    """Sums over the held-out images of one layer."""

    squared: dict[str, float] = field(default_factory=lambda: dict.fromkeys(VARIANTS, 0.0))
    total: float = 0.0
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VARIANTS[1:] + ("uncompensated",), 0))
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("original", "uncompensated")
                                                                          + VARIANTS[1:], 0))
    back_squared: dict[str, float] = field(default_factory=dict)
    back_total: float = 0.0

    def errors(self) -> dict[str, float]:
        """``error = Σ ‖Φ(g x) − M_g Φ(x)‖² / Σ ‖Φ(g x)‖²`` per variant."""
        return {v: self.squared[v] / max(self.total, 1e-30) for v in VARIANTS}

    def compensation_errors(self) -> dict[str, float]:
        """``Σ ‖Φ(x) − Ŵ g'⁻¹ Φ(g x)‖² / Σ ‖Φ(x)‖²`` per compensating map (``learned`` and the extra ones)."""
        return {v: e / max(self.back_total, 1e-30) for v, e in self.back_squared.items()}

    def agreement(self, n_test: int) -> dict[str, float]:
        agree = {v: h / max(n_test, 1) for v, h in self.hits.items()}
        return {"invariant": agree["uncompensated"], **agree}

    def accuracy(self, n_test: int) -> dict[str, float]:
        return {v: c / max(n_test, 1) for v, c in self.correct.items()}


def _evaluation_pass(extract: Extract, g: Transform, layers: dict[str, LayerFit], maps: dict[str, FittedMaps],
                     test: Crops, options: _Options, psi: _Agreement | None) -> tuple[dict[str, _Tally], int]:
    """Stream the held-out images once: errors of every variant, and agreement through ψ."""
    from .progress import progress as bar

    ginv = g.inverse()
    tallies = {name: _Tally() for name in layers}
    n_test = 0
    with torch.no_grad():
        for x, owners in bar(test, total=-(-len(test) // test.batch_size), desc="measure", quiet=not options.progress):
            x = x.to(options.device)
            gx = g(x)
            feats_x, feats_gx = _pair(extract, x, gx)
            n_test += len(x)
            for name, layer in layers.items():
                _add_errors(tallies[name], layer, maps[name], feats_x[name], feats_gx[name], g, options)
            if psi is not None:
                truth = None if test.labels is None else [test.labels[int(o)] for o in owners]
                _add_agreement(tallies, layers, maps, psi, x, gx, feats_gx, ginv, truth)
    return tallies, n_test


def _add_errors(tally: _Tally, layer: LayerFit, maps: FittedMaps, fx: Tensor, fgx: Tensor, g: Transform,
                options: _Options) -> None:
    """Add ``‖Φ(g x) − M_g Φ(x)‖²`` (valid cells) of every variant, and ``‖Φ(g x)‖²``, for one batch."""
    pred, mask = layer.warp(g, stack_neighbours(fx, options.kernel), options.margin)
    _check_same(pred, fgx)
    target = to_rows(fgx, mask).double()
    rows = to_rows(pred, mask).double()  # g'(stack(Φ(x))): every k×k tap, warped
    warped = rows[:, centre_taps(layer.cells.shape[0], options.kernel).to(rows.device)]  # g' Φ(x)
    predictions = {"invariant": to_rows(fx, mask).double(),  # M_g = I
                   "warp": warped,  # M_g = g'
                   "permutation": warped[:, maps.permutation.to(rows.device)],  # M_g = g' ∘ P
                   "learned": maps.learned.on_rows(rows)}  # M_g = g' ∘ W
    tally.total += float((target ** 2).sum())
    for variant, p in predictions.items():
        tally.squared[variant] += float(((target - p) ** 2).sum())
    _add_compensation_errors(tally, layer, maps, fx, fgx, g.inverse(), options)


def _add_compensation_errors(tally: _Tally, layer: LayerFit, maps: FittedMaps, fx: Tensor, fgx: Tensor,
                             ginv: Transform, options: _Options) -> None:
    """Add ``‖Φ(x) − Ŵ g'⁻¹ Φ(g x)‖²`` (valid cells) of each compensating map, and ``‖Φ(x)‖²``, for one batch."""
    back, mask = layer.warp(ginv, fgx, options.margin)
    rows = to_rows(stack_neighbours(back, options.kernel), mask).double()
    target = to_rows(fx, mask).double()
    tally.back_total += float((target ** 2).sum())
    for variant, w in {"learned": maps.learned_back, **maps.extra}.items():
        tally.back_squared[variant] = tally.back_squared.get(variant, 0.0) + float(((target - w.on_rows(rows)) ** 2).sum())


def _add_agreement(tallies: dict[str, _Tally], layers: dict[str, LayerFit], maps: dict[str, FittedMaps],
                   psi: _Agreement, x: Tensor, gx: Tensor, feats_gx: dict[str, Tensor], ginv: Transform,
                   truth: list[int] | None) -> None:
    """Top-1 agreement with ψ(Φ(x)) of ψ(Φ(g x)) (uncompensated) and of ψ(M⁻¹ Φ(g x)) per variant."""
    reference = psi.classify(x).argmax(1)
    shifted = psi.classify(gx).argmax(1)
    truth = None if truth is None else torch.tensor(truth, device=reference.device)
    for name, layer in layers.items():
        tally = tallies[name]
        tally.hits["uncompensated"] += int((shifted == reference).sum())
        if truth is not None:
            tally.correct["original"] += int((reference == truth).sum())
            tally.correct["uncompensated"] += int((shifted == truth).sum())
        for variant, comp in _compensated(layer, maps[name], feats_gx[name], ginv).items():
            predicted = psi.psis[name](gx, comp).argmax(1)
            tally.hits[variant] = tally.hits.get(variant, 0) + int((predicted == reference).sum())
            if truth is not None:
                tally.correct[variant] = tally.correct.get(variant, 0) + int((predicted == truth).sum())


def _compensated(layer: LayerFit, maps: FittedMaps, fgx: Tensor, ginv: Transform) -> dict[str, Tensor]:
    """Φ(gx) mapped back towards Φ(x) by each variant and extra map (cells with no source are 0 before W)."""
    back, _ = layer.warp(ginv, fgx)
    return {"warp": back, "permutation": back[:, maps.permutation_back.to(back.device)],
            "learned": maps.learned_back(back), **{v: w(back) for v, w in maps.extra.items()}}


# ---- helpers ------------------------------------------------------------------------------------
def _pair(extract: Extract, x: Tensor, gx: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Φ(x) and Φ(g x) from one forward pass."""
    both = extract(torch.cat([x, gx]))
    return ({k: v[: len(x)] for k, v in both.items()}, {k: v[len(x):] for k, v in both.items()})


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


def _device_of(obj) -> torch.device:
    """The device of a Model or nn.Module (:func:`~repscope.models.module_device`); CPU for other callables."""
    module = getattr(obj, "module", obj)
    return module_device(module) if isinstance(module, nn.Module) else torch.device("cpu")
