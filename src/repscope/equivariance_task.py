"""Equivariance maps learned on the task: the talk's "Compensated TF, learned" column.

Lenc & Vedaldi learn the compensating map of a transform g "with a discriminative goal": instead of
regressing Φ(x) on g'⁻¹ Φ(g x) (:func:`repscope.equivariance.ridge_maps`), Ŵ is trained so that the
frozen rest of the network ψ classifies the compensated features as the network classifies x::

    minimise  KL( softmax(f(x)) ‖ softmax(ψ(g x, Ŵ g'⁻¹ Φ(g x))) )      (or cross-entropy on labels)

Ŵ (a k×k convolution with bias) starts from the ridge solution and is trained by the one task trainer,
:func:`repscope.training.train_map` (Adam, early stopping on the fit stream's held-out photos, seeded);
the network's weights never change. The evaluation is :mod:`repscope.equivariance`'s own, with the
task-trained Ŵ in place of the ridge one: the ``learned`` agreement (and accuracy) then measures the
task-learned map; the ``learned`` error (forward map W) is the ridge one.

Example:
    >>> from repscope import models                                              # doctest: +SKIP
    >>> from repscope.crops import crop_data                                     # doctest: +SKIP
    >>> fit, test = crop_data(n_fit=96, n_test=48, size=129)                     # doctest: +SKIP
    >>> rows = equivariance_task_layers(models.load("efficientnet_lite0"), "vflip", ["blocks.1"],
    ...                                 fit=fit, test=test, steps=200)          # doctest: +SKIP
    >>> row, task = rows[0]; row.agreement["learned"], task["held_out_loss"]     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .channel_maps import ChannelMap
from .crops import Crops
from .equivariance import (FittedMaps, LayerEquivariance, LayerFit, _Agreement, _device_of, _measure, _Options,
                           _validation_sources, ridge_maps)
from .layers import LOGITS, features, rest_of_network
from .models import as_model
from .regression import DEFAULT_ALPHAS
from .transforms import Transform, parse_transform
from .training import train_map


def equivariance_task_layers(model, transform: str | Transform, layers: Sequence[str], *, fit: Crops,
                             test: Crops, kernel: int = 1, margin: int = 0,
                             alphas: Sequence[float] = DEFAULT_ALPHAS, steps: int = 200, lr: float = 1e-4,
                             seed: int = 0, progress: bool = False) -> list[tuple[LayerEquivariance, dict]]:
    """Equivariance per layer with Ŵ trained on the task; returns ``[(row, task numbers), ...]``.

    Args as in :func:`repscope.equivariance.equivariance_layers` (agreement is always measured), plus
    ``steps``, ``lr``, ``seed`` of the task training. The task numbers are ``steps``, ``best_step``,
    ``loss`` (``"kl"`` or ``"ce"``) and ``held_out_loss`` ``[start (ridge Ŵ), best]``.
    """
    model = as_model(model)
    names = list(dict.fromkeys(layers))
    g = parse_transform(transform)
    psi = _Agreement({n: rest_of_network(model, n) for n in names}, model)
    options = _Options(kernel, margin, tuple(alphas), progress, _device_of(model))
    batches = _task_batches(model, g, fit, options.device)
    infos: dict[str, dict] = {}

    def fitter(name: str, layer: LayerFit) -> FittedMaps:
        maps = ridge_maps(layer, kernel, alphas)
        trained, infos[name] = _train_back(model, name, layer, maps.learned_back, g.inverse(), batches,
                                           psi.psis[name], steps=steps, lr=lr, seed=seed, progress=progress)
        return FittedMaps(maps.learned, trained, maps.permutation, maps.permutation_back, maps.lam)

    rows = _measure(lambda x: features(model, x, names), g, names, fit, test, options, psi, fitter)
    return [(row, infos[row.layer]) for row in rows]


def _task_batches(model, g: Transform, fit: Crops, device) -> tuple[list, list]:
    """``([(g x, target)], [(g x, target)])`` for training and early stopping (the fit stream's λ photos);
    the target is the network's logits on x, or the label with a labelled stream."""
    val_sources = _validation_sources(fit)
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
