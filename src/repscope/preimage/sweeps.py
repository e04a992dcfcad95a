"""Sweeps: one image inverted at many layers (the talk's conv1…fc8 strip), many units of one layer
(the activation-maximisation grids), each returned with labels ready for a grid.

Units of one layer run as batched optimisations (``batch_size`` units at a time, the only limit
being memory); layers run one after another, each batched over the images, because every layer has
its own truncated network and jitter (stride/4). Formulas: :mod:`repscope.preimage.engine`.

Example:
    >>> from repscope import models                                        # doctest: +SKIP
    >>> from repscope.preimage import invert_layers
    >>> model = models.load("efficientnet_lite0")                          # doctest: +SKIP
    >>> sweep = invert_layers(model, x, ["blocks.0", "blocks.3"])          # doctest: +SKIP
    >>> sweep.save_grid("strip.png")                                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..layers import Representation
from ..models import Model, as_model
from .engine import PreimageConfig, PreimageResult
from .methods import invert, maximize, unit_label
from .objectives import Unit

__all__ = ["SweepResult", "invert_layers", "maximize_units"]


@dataclass
class SweepResult:
    """Images of a sweep with one label and one JSON-able record per image.

    Attributes:
        images01: (K, 3, H, W) in [0, 1], in sweep order.
        labels: K labels (layer, unit, image).
        records: K dicts: layer, unit, metrics, iterations, seconds, hyperparameters.
        results: the underlying :class:`PreimageResult` of each batched run.
    """

    images01: Tensor
    labels: list[str]
    records: list[dict[str, Any]]
    results: list[PreimageResult]

    def save_grid(self, path: str | os.PathLike, ncols: int | None = None) -> Path:
        """Write the labelled grid PNG (atomically) and return its path."""
        from ..images import save_grid

        return save_grid(self.images01, path, labels=self.labels, ncols=ncols)


def invert_layers(
    model: Model | nn.Module,
    images01: Tensor,
    layers: Sequence[str],
    *,
    iters: int | None = None,
    config: PreimageConfig | None = None,
    seed: int = 0,
    quiet: bool = True,
) -> SweepResult:
    """Invert ``images01`` (N, 3, H, W) at each layer; result order: layer-major, then image.

    Returns:
        :class:`SweepResult` with N·len(layers) images; each record has ``layer``, ``image`` and ``error``.
    """
    model = as_model(model)
    images, labels, records, results = [], [], [], []
    for layer in layers:
        res = invert(Representation(model, layer), images01, iters=iters, config=config, seed=seed, quiet=quiet)
        results.append(res)
        images.append(res.images01)
        for i, rec in enumerate(res.records()):
            label = f"{layer} {rec['error']:.2f}" if images01.shape[0] == 1 else f"{layer} #{i} {rec['error']:.2f}"
            rec.update(label=label, layer=layer, image=i, unit=None)
            records.append(rec)
            labels.append(label)
    return SweepResult(torch.cat(images), labels, records, results)


def maximize_units(
    model: Model | nn.Module,
    layer: str,
    units: Sequence[Unit],
    *,
    size: tuple[int, int] | None = None,
    spatial: str = "mean",
    reference01: Tensor | None = None,
    batch_size: int = 16,
    leak: float | None = 0.05,
    iters: int | None = None,
    config: PreimageConfig | None = None,
    seed: int = 0,
    quiet: bool = True,
) -> SweepResult:
    """Maximise each unit of ``layer``, ``batch_size`` units per batched run.

    Args:
        size: (H, W); default the model's input size.
        reference01: photos (M, 3, H, W) giving Z and the ``ratio`` metric (see :func:`maximize`).

    Returns:
        :class:`SweepResult`; records carry ``layer``, ``unit``, ``activation`` (and ``ratio``).
    """
    model = as_model(model)
    phi = Representation(model, layer)
    s = model.preprocessing.input_size
    size = size or (s, s)
    units = list(units)
    images, labels, records, results = [], [], [], []
    for start in range(0, len(units), max(1, batch_size)):
        chunk = units[start : start + batch_size]
        res = maximize(phi, chunk, size=size, spatial=spatial, reference01=reference01, leak=leak, iters=iters,
                       config=config, seed=seed + start, quiet=quiet)
        results.append(res)
        images.append(res.images01)
        for u, rec in zip(chunk, res.records()):
            rec.update(label=f"{layer}:{unit_label(u)}", layer=layer, unit=unit_label(u))
            records.append(rec)
            labels.append(rec["label"])
    return SweepResult(torch.cat(images), labels, records, results)
