"""Equivariance maps learned on the task: the talk's "Compensated TF, learned" column.

Lenc & Vedaldi learn the compensating map of a transform g "with a discriminative goal": instead of
regressing Φ(x) on g'⁻¹ Φ(g x) (:func:`repscope.equivariance.ridge_maps`), Ŵ is trained so that the
frozen rest of the network ψ classifies the compensated features as the network classifies x::

    minimise  KL( softmax(f(x)) ‖ softmax(ψ(g x, Ŵ g'⁻¹ Φ(g x))) )      (or cross-entropy on labels)

Ŵ (a k×k convolution with bias) starts from the ridge solution and is trained by the one task trainer,
:func:`repscope.training.train_map` (Adam, early stopping on the fit stream's held-out photos, seeded);
the network's weights never change. The trainer is a fitter plugged into
:func:`repscope.equivariance.equivariance_layers` (``fitter=``): it returns the ridge maps with the
task-trained Ŵ added as the extra variant ``task`` (:data:`TASK`), so the evaluation pass reports it next
to the regression-learned map: ``agreement["task"]``, ``accuracy["task"]`` with labels, and
``compensation_error["task"]`` = Σ ‖Φ(x) − Ŵ g'⁻¹ Φ(g x)‖² / Σ ‖Φ(x)‖² beside ``["learned"]`` (ridge Ŵ);
every ridge number is unchanged (the forward ``error`` has no task variant: only Ŵ is trained).

Example:
    >>> from repscope import models                                              # doctest: +SKIP
    >>> from repscope.crops import crop_data                                     # doctest: +SKIP
    >>> fit, test = crop_data(n_fit=96, n_test=48, size=129)                     # doctest: +SKIP
    >>> rows = equivariance_task_layers(models.load("efficientnet_lite0"), "vflip", ["blocks.1"],
    ...                                 fit=fit, test=test, steps=200)          # doctest: +SKIP
    >>> row, task = rows[0]; row.agreement["task"], task["held_out_loss"]         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from .channel_maps import ChannelMap
from .crops import Crops, validation_sources
from .equivariance import FittedMaps, LayerEquivariance, LayerFit, equivariance_layers, ridge_maps
from .layers import LOGITS, features, rest_of_network
from .models import as_model, module_device
from .regression import DEFAULT_ALPHAS
from .training import train_map
from .transforms import Transform, parse_transform

#: the name of the task-trained variant in the rows (``agreement``, ``accuracy``, ``compensation_error``)
TASK = "task"


def equivariance_task_layers(model, transform: str | Transform, layers: Sequence[str], *, fit: Crops,
                             test: Crops, kernel: int = 1, margin: int = 0,
                             alphas: Sequence[float] = DEFAULT_ALPHAS, steps: int = 200, lr: float = 1e-4,
                             seed: int = 0, progress: bool = False) -> list[tuple[LayerEquivariance, dict]]:
    """Equivariance per layer with Ŵ also trained on the task; returns ``[(row, task numbers), ...]``.

    Args as in :func:`repscope.equivariance.equivariance_layers` (agreement is always measured), plus
    ``steps``, ``lr``, ``seed`` of the task training. Each row carries the ridge variants and ``task``;
    the task numbers (also ``row.task``) are ``steps``, ``best_step``, ``loss`` (``"kl"`` or ``"ce"``) and
    ``held_out_loss`` ``[start (ridge Ŵ), best]`` on the fit stream's held-out photos.
    """
    model = as_model(model)
    g = parse_transform(transform)
    batches = _task_batches(model, g, fit, module_device(model.module))
    infos: dict[str, dict] = {}

    def fitter(name: str, layer: LayerFit) -> FittedMaps:
        maps = ridge_maps(layer, kernel, alphas)
        trained, infos[name] = _train_back(model, name, layer, maps.learned_back, g.inverse(), batches,
                                           rest_of_network(model, name), steps=steps, lr=lr, seed=seed,
                                           progress=progress)
        return replace(maps, extra={**maps.extra, TASK: trained})

    rows = equivariance_layers(model, g, layers, fit=fit, test=test, kernel=kernel, margin=margin, agreement=True,
                               alphas=alphas, progress=progress, fitter=fitter)
    for row in rows:
        row.task = infos[row.layer]
    return [(row, infos[row.layer]) for row in rows]


def _task_batches(model, g: Transform, fit: Crops, device) -> tuple[list, list]:
    """``([(g x, target)], [(g x, target)])`` for training and early stopping (the fit stream's λ photos);
    the target is the network's logits on x, or the label with a labelled stream."""
    val_sources = validation_sources(fit)
    out: tuple[list, list] = ([], [])
    with torch.no_grad():
        for index, (x, owners) in enumerate(fit):
            x = x.to(device)
            target = model(x) if fit.labels is None else torch.tensor([fit.labels[int(o)] for o in owners],
                                                                      device=device)
            is_val = torch.tensor([int(o) in val_sources for o in owners], device=device) if val_sources else \
                torch.full((len(x),), index % 4 == 3, device=device)
            gx = g(x)
            for part, sel in ((0, ~is_val), (1, is_val)):
                if sel.any():
                    out[part].append((gx[sel], target[sel]))
    if not out[1]:  # too few photos for a split: hold out the last training batch
        out = (out[0][:-1], out[0][-1:])
    return out


def _train_back(model, name: str, layer: LayerFit, start: ChannelMap, ginv: Transform, batches, psi, *,
                steps: int, lr: float, seed: int, progress: bool) -> tuple[ChannelMap, dict]:
    """Train Ŵ (started at ``start``) through ψ on ``batches``; returns the trained map and the task numbers."""
    c_out, c_in, k, _ = start.weight.shape
    spatial = name != LOGITS and start.weight.dim() == 4 and layer.cells.spatial
    module = nn.Conv2d(c_in, c_out, k, padding=k // 2) if spatial else nn.Linear(c_in, c_out)
    with torch.no_grad():
        module.weight.copy_(start.weight.reshape(module.weight.shape).to(module.weight))
        module.bias.copy_(start.bias.to(module.bias) if start.bias is not None else torch.zeros(c_out))
    device = batches[0][0][0].device
    module = module.to(device)

    def student(gx: Tensor) -> Tensor:
        with torch.no_grad():
            back, _ = layer.warp(ginv, features(model, gx, [name])[name])
        return psi(gx, module(back))

    result = train_map(module, student, batches[0], batches[1], frozen=[model.module], steps=steps, lr=lr,
                       seed=seed, progress=progress)
    trained = ChannelMap(module.weight.detach().reshape(c_out, c_in, k, k), module.bias.detach())
    return trained, {"steps": result.steps, "best_step": result.best_step, "loss": result.loss,
                     "held_out_loss": [result.held_out_loss[0], min(result.held_out_loss)]}


def task_plot(rows: Sequence[LayerEquivariance], path, title: str = ""):
    """``equivariance.png`` with the task column: errors (left) and top-1 agreement (right) against depth.

    Left: the forward error Σ‖Φ(gx) − M_g Φ(x)‖² / Σ‖Φ(gx)‖² of every variant (solid) and the compensation
    error Σ‖Φ(x) − Ŵ g'⁻¹ Φ(gx)‖² / Σ‖Φ(x)‖² of the ridge and task-trained Ŵ (dashed). Right: agreement of
    ψ(Φ(gx)) (uncompensated) and of each compensated map, ``learned (ridge)`` beside ``learned (task)``.
    Drawn on a :class:`matplotlib.figure.Figure` and written atomically; returns the path.
    """
    from matplotlib.figure import Figure

    from .equivariance import VARIANTS
    from .io import atomic_path

    depth = list(range(len(rows)))
    fig = Figure(figsize=(11, 4))
    err, agr = fig.subplots(1, 2)
    for v in VARIANTS:
        err.plot(depth, [r.error[v] for r in rows], marker="o", label="learned (ridge)" if v == "learned" else v)
    for v, label in (("learned", "Ŵ ridge, compensation"), (TASK, "Ŵ task, compensation")):
        err.plot(depth, [r.compensation_error[v] for r in rows], marker="s", ls="--", label=label)
    err.set(ylabel="error (held-out)", title="error: M_g forward (solid), Ŵ back (dashed)")
    for v, label in (("uncompensated", "uncompensated"), ("warp", "warp"), ("permutation", "permutation"),
                     ("learned", "learned (ridge)"), (TASK, "learned (task)")):
        agr.plot(depth, [r.agreement[v] for r in rows], marker="o", label=label)
    agr.set(ylabel="top-1 agreement with ψ(Φ(x))", title="compensated agreement", ylim=(-0.02, 1.02))
    for a in (err, agr):
        a.set_xticks(depth)
        a.set_xticklabels([r.layer for r in rows], rotation=45, ha="right", fontsize=8)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
