"""Equivalence of two representations by stitching: the "Franken-network" of Lenc & Vedaldi.

Lenc & Vedaldi, "Understanding Image Representations by Measuring Their Equivariance and
Equivalence", CVPR 2015 / IJCV 2018. Φ_A (network A up to layer L_A) and Φ_B are *equivalent* when
a simple map E carries one onto the other, ``Φ_B(x) ≈ E Φ_A(x)``. The stitched network

    x  →  Φ_A(x)  →  r(·)  →  E = k×k conv with bias  →  ψ_B  →  logits

runs A up to L_A, resamples the map to B's grid (``r``: area averaging when A's grid is finer — its
stride is smaller — bilinear interpolation when it is coarser, nothing when the grids match), applies
E (``(C_B, C_A, k, k)`` weight and ``(C_B,)`` bias; a linear layer for vectors) and then ψ_B, network
B after L_B (:func:`repscope.layers.rest_of_network`). If the stitched network classifies as B does,
the two representations carry the same information up to E. Three stitches are compared:

- ``naive``: a fixed E. The identity when ``C_A = C_B``, otherwise the fixed projection
  ``E[j, ⌊j·C_A / C_B⌋] = 1`` (channel axis resampled by nearest neighbour; centre tap, no bias).
- ``ridge`` (direct matching, Csiszárik et al. 2021): E by streaming ridge regression of Φ_B on r(Φ_A)
  per spatial position (:class:`repscope.regression.StreamingRidge`), λ chosen on held-out photos of
  the fit stream (as :mod:`repscope.equivariance` does); memory independent of the number of images.
- ``task`` (task matching): E started from the ridge solution and trained through the frozen ψ_B by
  :func:`repscope.training.train_map`, on B's own soft predictions (KL) or on labels (cross-entropy).

Reported on held-out photos (:func:`repscope.crops.crop_data`): ``agreement``, the fraction whose
top-1 class equals B's (and ``accuracy`` against labels when given); ``error`` =
Σ‖Φ_B − E r(Φ_A)‖² / Σ‖Φ_B‖² (every cell); ``cka``: linear and debiased CKA of Φ_A and Φ_B flattened
per image (:mod:`repscope.similarity`).

Example:
    >>> from repscope import models                                             # doctest: +SKIP
    >>> from repscope.crops import crop_data                                    # doctest: +SKIP
    >>> a, b = models.load("efficientnet_lite0"), models.load("efficientnet_lite1")  # doctest: +SKIP
    >>> fit, test = crop_data(n_fit=96, n_test=48, size=129)                    # doctest: +SKIP
    >>> row = stitch(a, "blocks.3", b, "blocks.3", fit=fit, test=test, fit_kind="both")  # doctest: +SKIP
    >>> row.ridge["agreement"], row.task["agreement"], row.cka["linear"]        # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .crops import Crops, validation_sources
from .errors import ShapeError
from .layers import LOGITS, features, rest_of_network
from .models import Model, as_model, module_device
from .regression import DEFAULT_ALPHAS, StreamingRidge, select_ridge, stack_neighbours, to_rows
from .similarity import linear_cka

FITS = ("ridge", "task", "both")
STITCH_ALPHAS = (1e-9, 1e-7) + DEFAULT_ALPHAS  # a self-stitch needs λ far below every channel's variance


def resample_mode(stride_a: float | None, stride_b: float | None) -> str:
    """``"area"`` when A's grid is finer than B's (smaller stride), ``"bilinear"`` when coarser, else ``"none"``."""
    if stride_a is None or stride_b is None or stride_a == stride_b:
        return "none"
    return "area" if stride_a < stride_b else "bilinear"


def resample(features_a: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``(N, C, h_a, w_a)`` → ``(N, C, *size)`` by area averaging or bilinear interpolation; vectors unchanged."""
    if features_a.dim() != 4 or tuple(features_a.shape[-2:]) == tuple(size):
        return features_a
    if mode == "area":
        return F.interpolate(features_a, size=size, mode="area")
    return F.interpolate(features_a, size=size, mode="bilinear", align_corners=False)


class Stitch(nn.Module):
    """E: resample Φ_A to B's grid, then a k×k convolution with bias (a linear layer for vectors).

    Args:
        in_channels, out_channels: C_A and C_B. kernel: odd k. mode: ``"area"``, ``"bilinear"`` or ``"none"``.
        spatial: features are maps ``(N, C, h, w)`` (else vectors ``(N, C)``).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int = 1, mode: str = "none",
                 spatial: bool = True):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0 or (kernel > 1 and not spatial):
            raise ShapeError(f"--kernel must be an odd k ≥ 1 (1 for vector features), got {kernel}.")
        self.kernel, self.mode, self.spatial = kernel, mode, spatial
        self.map = (nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2) if spatial
                    else nn.Linear(in_channels, out_channels))

    def forward(self, features_a: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """``(N, C_A, h_a, w_a)`` → ``(N, C_B, *size)`` (``size`` defaults to A's grid)."""
        x = resample(features_a, size, self.mode) if size is not None else features_a
        return self.map(x)

    @property
    def matrix(self) -> tuple[Tensor, Tensor]:
        """``(weight (C_B, C_A·k·k), bias (C_B,))`` in the layout of :func:`~repscope.regression.stack_neighbours`."""
        return self.map.weight.detach().reshape(self.map.weight.shape[0], -1), self.map.bias.detach()

    def set_matrix(self, weight: Tensor, bias: Tensor) -> Stitch:
        """Load ``weight (C_B, C_A·k·k)`` and ``bias (C_B,)`` (e.g. a ridge solution); returns ``self``."""
        with torch.no_grad():
            self.map.weight.copy_(weight.reshape(self.map.weight.shape).to(self.map.weight))
            self.map.bias.copy_(bias.to(self.map.bias))
        return self


def naive_matrix(c_a: int, c_b: int, kernel: int = 1) -> tuple[Tensor, Tensor]:
    """The fixed naive stitch: ``E[j, ⌊j·C_A/C_B⌋] = 1`` at the centre tap (identity when C_A = C_B), zero bias."""
    weight = torch.zeros(c_b, c_a, kernel * kernel, dtype=torch.float64)
    weight[torch.arange(c_b), (torch.arange(c_b) * c_a) // c_b, (kernel * kernel) // 2] = 1.0
    return weight.reshape(c_b, -1), torch.zeros(c_b, dtype=torch.float64)


class StitchedNetwork(nn.Module):
    """images01 ``(N, 3, H, W)`` → logits: A up to ``layer_a``, the :class:`Stitch`, B after ``layer_b``.

    B's grid at L_B for an input size is measured once (a truncated forward of B) and cached.
    """

    def __init__(self, model_a, layer_a: str, model_b, layer_b: str, stitch: Stitch):
        super().__init__()
        self.model_a, self.model_b = as_model(model_a), as_model(model_b)
        self.layer_a, self.layer_b, self.stitch = layer_a, layer_b, stitch
        self._psi = rest_of_network(self.model_b, layer_b)
        self._grids: dict[tuple[int, int], tuple[int, int] | None] = {}

    def grid_b(self, images01: Tensor) -> tuple[int, int] | None:
        """B's feature grid ``(h_b, w_b)`` at L_B for these images' size (None for vectors)."""
        key = tuple(images01.shape[-2:])
        if key not in self._grids:
            with torch.no_grad():
                fb = features(self.model_b, images01[:1], [self.layer_b])[self.layer_b]
            self._grids[key] = tuple(fb.shape[-2:]) if fb.dim() == 4 else None
        return self._grids[key]

    def features_a(self, images01: Tensor) -> Tensor:
        return features(self.model_a, images01, [self.layer_a])[self.layer_a]

    def head(self, images01: Tensor, features_a: Tensor) -> Tensor:
        """ψ_B(E r(Φ_A)) given Φ_A already computed: logits ``(N, K)``."""
        return self._psi(images01, self.stitch(features_a, self.grid_b(images01)))

    def forward(self, images01: Tensor) -> Tensor:
        return self.head(images01, self.features_a(images01))


@dataclass
class StitchResult:
    """One stitched pair, every number on held-out photos.

    Attributes:
        from_, to: ``"MODEL:LAYER"`` of A and B. shape_a, shape_b: feature shapes at the crop size.
        stride_a, stride_b: layer strides (None if unknown). resample: ``"area"``, ``"bilinear"``, ``"none"``.
        kernel: k. lam: ridge λ. reference: B alone (``agreement`` 1.0; ``accuracy`` with labels).
        naive, ridge, task: ``{"agreement", "error"[, "accuracy"]}`` (task None when not fitted; it also
            holds ``steps`` and ``held_out_loss`` start/end). cka: ``{"linear", "debiased"}``.
        n_fit, n_test: crops used.
    """

    from_: str
    to: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    stride_a: float | None
    stride_b: float | None
    resample: str
    kernel: int
    lam: float
    reference: dict
    naive: dict
    ridge: dict
    task: dict | None
    cka: dict
    n_fit: int = 0
    n_test: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        return {"from": d.pop("from_"), **d}


# ---- engine -------------------------------------------------------------------------------------
MAX_REGRESSION_WIDTH = 4096


def stitch(model_a, layer_a: str, model_b, layer_b: str, *, fit: Crops, test: Crops, kernel: int = 1,
           fit_kind: str = "both", steps: int = 200, lr: float = 1e-4, seed: int = 0,
           alphas: Sequence[float] = STITCH_ALPHAS, names: tuple[str, str] | None = None,
           strides: tuple[float | None, float | None] | None = None, progress: bool = False) -> StitchResult:
    """Stitch A at ``layer_a`` into B at ``layer_b``: naive, ridge and (optionally) task-trained E.

    Args:
        model_a, model_b: :class:`~repscope.models.Model` or ``nn.Module`` (B must be a classifier).
        layer_a, layer_b: layer names (``blocks.3``, ``logits``).
        fit, test: crop streams split by photo (:func:`~repscope.crops.crop_data`); labelled streams
            give ``accuracy`` and a cross-entropy task loss.
        kernel: k of E. fit_kind: ``"ridge"``, ``"task"`` or ``"both"`` (task is always started from ridge,
            so ridge is always reported). steps, lr: task training (Adam). seed: batch order.
        alphas: relative ridge strengths tried on held-out photos of the fit stream.
        names: display names of A and B (default the models' names).
        strides: the two layers' strides if already known (default :func:`layer_stride`).

    Returns:
        a :class:`StitchResult`.
    """
    if fit_kind not in FITS:
        raise ShapeError(f"unknown fit '{fit_kind}'. Use one of {', '.join(FITS)}.")
    model_a, model_b = as_model(model_a), as_model(model_b)
    names = names or (model_a.name, model_b.name)
    device = module_device(model_b.module)
    val_sources = validation_sources(fit)  # the fit stream's photos for λ and early stopping
    want_task = fit_kind in ("task", "both")
    state = _ridge_pass(model_a, layer_a, model_b, layer_b, fit, val_sources, kernel, device, want_task, progress,
                        strides)
    lam = select_ridge(state["train"], state["val"], alphas)[0] if state["val"].n else state["train"].lambdas(alphas)[0]
    ridge_w, ridge_b = state["train"].merge(state["val"]).solve(lam)
    spatial = state["spatial"]
    c_a, c_b = state["widths"]
    mode = state["mode"]
    maps = {"naive": naive_matrix(c_a, c_b, kernel) if spatial else naive_matrix(c_a, c_b, 1),
            "ridge": (ridge_w, ridge_b)}
    nets = {v: _network(model_a, layer_a, model_b, layer_b, c_a, c_b, kernel, mode, spatial, w, b, device)
            for v, (w, b) in maps.items()}
    task_info = None
    if want_task:
        nets["task"] = _network(model_a, layer_a, model_b, layer_b, c_a, c_b, kernel, mode, spatial,
                                ridge_w, ridge_b, device)
        task_info = _train_task(nets["task"], state["batches"], steps=steps, lr=lr, seed=seed, progress=progress)
        maps["task"] = nets["task"].stitch.matrix
    measured = _test_pass(nets, model_a, layer_a, model_b, layer_b, test, kernel, device, progress)
    rows = {}
    for v in nets:
        rows[v] = {"agreement": measured["hits"][v] / max(measured["n"], 1),
                   "error": measured["acc"].residual(*maps[v]) / max(measured["acc"].total(), 1e-30)}
        if measured["labelled"]:
            rows[v]["accuracy"] = measured["correct"][v] / max(measured["n"], 1)
    if task_info is not None:
        rows["task"].update(task_info)
    reference = {"agreement": 1.0}
    if measured["labelled"]:
        reference["accuracy"] = measured["correct"]["reference"] / max(measured["n"], 1)
    return StitchResult(f"{names[0]}:{layer_a}", f"{names[1]}:{layer_b}", state["shapes"][0], state["shapes"][1],
                        *state["strides"], mode, kernel, float(lam), reference, rows["naive"], rows["ridge"],
                        rows.get("task"), measured["cka"], state["n"], measured["n"])


def layer_stride(model: Model, layer: str) -> float | None:
    """The layer's stride (input pixels per cell, rounded to whole pixels) at the model's input size, from
    :func:`repscope.geometry.cell_geometry`; None for vectors or where it cannot be measured.

    The output of a network that knows its geometry in closed form (HOG: its cell size) is asked directly;
    every other layer is measured through its :class:`~repscope.layers.Representation`.
    """
    from .geometry import cell_geometry
    from .layers import Representation

    own = model.module if layer == LOGITS and callable(getattr(model.module, "cell_geometry", None)) else None
    try:
        phi = own if own is not None else Representation(model, layer)
        cells = cell_geometry(phi, model.preprocessing.input_size, offset=False)
    except Exception:  # noqa: BLE001 - an exotic module without a layer table: resample by measured size
        return None
    return float(max(1, round(cells.stride[0]))) if cells.spatial else None


def _ridge_pass(model_a, layer_a, model_b, layer_b, fit: Crops, val_sources: set[int], kernel: int, device,
                want_task: bool, progress: bool, strides=None) -> dict:
    """One pass over the fit stream: ridge statistics (train / λ-validation photos) and, for the task,
    the batches with B's logits (or labels)."""
    from .progress import progress as bar

    state: dict = {"n": 0, "batches": ([], [])}
    with torch.no_grad():
        for x, owners in bar(fit, total=-(-len(fit) // fit.batch_size), desc="ridge", quiet=not progress):
            x = x.to(device)
            fa = features(model_a, x, [layer_a])[layer_a]
            out_b = features(model_b, x, [layer_b] + ([LOGITS] if want_task else []))
            fb = out_b[layer_b]
            if "train" not in state:
                _start(state, model_a, layer_a, model_b, layer_b, fa, fb, kernel, strides)
            rows_a, rows_b = _rows(fa, fb, state["mode"], kernel)
            per_cell = rows_a.shape[0] // len(x)
            is_val = torch.tensor([int(o) in val_sources for o in owners], device=x.device)
            for part, sel in (("train", ~is_val), ("val", is_val)):
                if sel.any():
                    cells = sel.repeat_interleave(per_cell)
                    state[part].update(rows_a[cells], rows_b[cells])
            if want_task:
                target = out_b[LOGITS] if fit.labels is None else \
                    torch.tensor([fit.labels[int(o)] for o in owners], device=x.device)
                for part, sel in ((0, ~is_val), (1, is_val)):
                    if sel.any():
                        state["batches"][part].append((x[sel], target[sel]))
            state["n"] += len(x)
    if "train" not in state:
        raise ShapeError("the fit stream is empty. Use more images or a larger fit count.")
    if state["train"].n == 0:
        state["train"], state["val"] = state["val"], state["train"]
    return state


def _start(state: dict, model_a, layer_a, model_b, layer_b, fa: Tensor, fb: Tensor, kernel: int,
           strides=None) -> None:
    """Check the two feature shapes and set up the accumulators (first batch)."""
    if fa.dim() not in (2, 4) or fb.dim() not in (2, 4) or fa.dim() != fb.dim():
        raise ShapeError(f"cannot stitch {tuple(fa.shape[1:])} into {tuple(fb.shape[1:])}: both layers must give "
                         "feature maps (N, C, h, w) or both vectors (N, D). Pick layers of the same kind.")
    spatial = fa.dim() == 4
    if not spatial and kernel != 1:
        raise ShapeError("--kernel > 1 needs feature maps; these layers give vectors. Use --kernel 1.")
    c_a, c_b = fa.shape[1], fb.shape[1]
    if c_a * kernel * kernel > MAX_REGRESSION_WIDTH:
        raise ShapeError(f"a {kernel}x{kernel} stitch on {c_a} channels has {c_a * kernel * kernel} inputs "
                         f"(over {MAX_REGRESSION_WIDTH}). Use --kernel 1 or an earlier layer.")
    if strides is None:
        strides = (layer_stride(model_a, layer_a), layer_stride(model_b, layer_b)) if spatial else (None, None)
    mode = resample_mode(*strides) if spatial else "none"
    if spatial and None in strides:  # a stride unknown: the finer measured grid is the one with more cells
        mode = resample_mode(1.0 / fa.shape[-2], 1.0 / fb.shape[-2])
    state.update(spatial=spatial, widths=(c_a, c_b), strides=strides, shapes=(tuple(fa.shape[1:]), tuple(fb.shape[1:])),
                 mode=mode,
                 train=StreamingRidge(c_a * kernel * kernel, c_b, device=fa.device),
                 val=StreamingRidge(c_a * kernel * kernel, c_b, device=fa.device))


def _rows(fa: Tensor, fb: Tensor, mode: str, kernel: int) -> tuple[Tensor, Tensor]:
    """Regression rows: ``stack_neighbours(r(Φ_A), k)`` and Φ_B, one row per cell of B's grid."""
    if fa.dim() == 2:
        return fa, fb
    ra = stack_neighbours(resample(fa, tuple(fb.shape[-2:]), mode if mode != "none" else "bilinear"), kernel)
    return to_rows(ra), to_rows(fb)


def _network(model_a, layer_a, model_b, layer_b, c_a, c_b, kernel, mode, spatial, weight, bias, device):
    s = Stitch(c_a, c_b, kernel=kernel, mode=mode if mode != "none" else "bilinear", spatial=spatial)
    return StitchedNetwork(model_a, layer_a, model_b, layer_b, s.set_matrix(weight, bias).to(device))


def _train_task(net: StitchedNetwork, batches, *, steps: int, lr: float, seed: int, progress: bool) -> dict:
    """Train the stitch through frozen ψ_B (:func:`repscope.training.train_map`); returns the task's numbers."""
    from .training import train_map

    fit, held_out = batches
    if not held_out:  # too few photos for a λ split: hold out the last fit batch for early stopping
        fit, held_out = fit[:-1], fit[-1:]

    def student(x: Tensor) -> Tensor:
        with torch.no_grad():
            fa = net.features_a(x)
        return net.head(x, fa)

    result = train_map(net.stitch, student, fit, held_out, frozen=[net.model_a.module, net.model_b.module],
                       steps=steps, lr=lr, seed=seed, progress=progress)
    return {"steps": result.steps, "best_step": result.best_step, "loss": result.loss,
            "held_out_loss": [result.held_out_loss[0], min(result.held_out_loss)]}


def _test_pass(nets: dict, model_a, layer_a, model_b, layer_b, test: Crops, kernel: int, device,
               progress: bool) -> dict:
    """Agreement (and accuracy) of every stitch, the held-out regression statistics, and CKA."""
    from .progress import progress as bar

    hits = dict.fromkeys(nets, 0)
    correct = dict.fromkeys(list(nets) + ["reference"], 0)
    labelled = test.labels is not None
    acc, flat_a, flat_b, n = None, [], [], 0
    mode = next(iter(nets.values())).stitch.mode
    with torch.no_grad():
        for x, owners in bar(test, total=-(-len(test) // test.batch_size), desc="measure", quiet=not progress):
            x = x.to(device)
            fa = features(model_a, x, [layer_a])[layer_a]
            out_b = features(model_b, x, [layer_b, LOGITS])
            fb, reference = out_b[layer_b], out_b[LOGITS].argmax(1)
            rows_a, rows_b = _rows(fa, fb, mode, kernel)
            acc = acc or StreamingRidge(rows_a.shape[1], rows_b.shape[1], device=rows_a.device)
            acc.update(rows_a, rows_b)
            flat_a.append(fa.reshape(len(x), -1).float().cpu())
            flat_b.append(fb.reshape(len(x), -1).float().cpu())
            truth = torch.tensor([test.labels[int(o)] for o in owners], device=x.device) if labelled else None
            if labelled:
                correct["reference"] += int((reference == truth).sum())
            for v, net in nets.items():
                predicted = net.head(x, fa).argmax(1)
                hits[v] += int((predicted == reference).sum())
                if labelled:
                    correct[v] += int((predicted == truth).sum())
            n += len(x)
    if acc is None or n < 4:
        raise ShapeError(f"the held-out stream has {n} crops; CKA and agreement need at least 4. Raise the test count.")
    xa, xb = torch.cat(flat_a), torch.cat(flat_b)
    cka = {"linear": linear_cka(xa, xb), "debiased": linear_cka(xa, xb, debiased=True)}
    return {"hits": hits, "correct": correct, "labelled": labelled, "acc": acc, "n": n, "cka": cka}
