"""The layer table: type, output shape, stride and receptive field of every addressable layer.

Shapes come from one forward pass at the model's input size. The stride (input pixels per feature
cell, an int) and the receptive field (measured on a linearised copy of the network, clipped to the
input) come from :mod:`repscope.geometry`, the one home of "where is a feature cell in the image".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import geometry
from .hooks import forward_hooks
from .layers import INPUT, LOGITS, features, layer_names
from .models import Model, as_model


@dataclass
class LayerInfo:
    """One row of the layer table; ``shape`` excludes the batch dimension, sizes are in input pixels."""

    name: str
    type: str
    shape: tuple[int, ...]
    stride: int | None
    receptive_field: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def describe(model: Model | nn.Module, input_size: int | None = None, only: list[str] | None = None,
             receptive_fields: bool = True) -> list[LayerInfo]:
    """The layer table of ``model`` at ``input_size`` (default: the model's), for all layers or ``only`` these."""
    model = as_model(model)
    size = int(input_size or model.preprocessing.input_size)
    modules = dict(model.module.named_modules())
    with torch.no_grad():
        probe = torch.full((1, 3, size, size), 0.5, device=model.device)
        if only is None:
            ran = call_counts(model, probe)
            names = [INPUT] + [n for n in layer_names(model) if n in ran] + [LOGITS]
        else:
            names = list(only)
    cells = geometry.measure(lambda x: features(model, x, names), names, probe, offsets=False)
    spatial = [n for n in names if cells[n].spatial]
    fields = {}
    if receptive_fields and spatial:
        fields = geometry.receptive_fields(model.module, lambda net, x: _raw_outputs(model, net, x, spatial),
                                           (size, size), model.device)
    rows = []
    for name in names:
        cell = cells[name]
        stride = max(1, round(cell.stride[0])) if cell.spatial else None
        kind = "Input" if name == INPUT else ("Output" if name == LOGITS else type(modules[name]).__name__)
        rows.append(LayerInfo(name, kind, cell.shape, stride, fields.get(name, None if cell.spatial else size)))
    return rows


def call_counts(model: Model | nn.Module, images01: torch.Tensor) -> dict[str, int]:
    """How many times each named submodule runs in one forward pass of ``images01`` (unused ones absent)."""
    model = as_model(model)
    counts: dict[str, int] = {}

    def make_hook(name: str):
        def hook(*_):
            counts[name] = counts.get(name, 0) + 1
        return hook

    with forward_hooks([(m, make_hook(n)) for n, m in model.module.named_modules() if n]):
        model(images01)
    return counts


def _raw_outputs(model: Model, net: nn.Module, images01: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Layer outputs of ``net`` (a linearised copy of ``model.module``) without cloning: it modifies nothing in place."""
    probe = Model(model.name, net, model.preprocessing, None)
    if INPUT in names or LOGITS in names:
        return features(probe, images01, names)
    modules = dict(net.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_module, _args, output):
            captured.setdefault(name, output if isinstance(output, torch.Tensor) else output[0])
        return hook

    with forward_hooks([(modules[n], make_hook(n)) for n in names]):
        probe(images01)
    return captured
