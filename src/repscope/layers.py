"""Layers by name, and the truncated forward pass that every engine uses.

A layer is addressed by its ``named_modules()`` name (``blocks.3``, ``features.10``) or by the
aliases ``input`` (the normalised network input) and ``logits`` (the network output).
:func:`features` captures the outputs of the requested layers with forward hooks and stops the
forward pass as soon as the last of them has been computed, so later layers never run. Captured
values are cloned when later operations could modify them in place, and stay on the autograd graph.

Example:
    >>> from repscope import models, images, layers            # doctest: +SKIP
    >>> model = models.load("efficientnet_lite0")              # doctest: +SKIP
    >>> x, _ = images.load_images("sample:chelsea", size=224)  # doctest: +SKIP
    >>> feats = layers.features(model, x, ["blocks.1", "blocks.3"])   # doctest: +SKIP
    >>> phi = layers.Representation(model, "blocks.3")         # Φ: images01 -> (N, 40, 28, 28)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .errors import LayerError, unknown
from .geometry import CellGeometry, cell_geometry
from .hooks import forward_hooks
from .models import Model, as_model

INPUT, LOGITS = "input", "logits"


class _StopForward(Exception):
    """Raised from a hook once every requested layer has been captured."""


def layer_names(model: Model | nn.Module) -> list[str]:
    """Every addressable layer: ``input``, each named submodule in definition order, ``logits``."""
    module = as_model(model).module
    return [INPUT] + [name for name, _ in module.named_modules() if name] + [LOGITS]


def get_module(model: Model | nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; :class:`LayerError` naming the three closest names if none."""
    module = as_model(model).module
    try:
        found = module.get_submodule(name) if name else None
    except AttributeError:
        found = None
    if found is None:
        raise LayerError(unknown("layer", name, layer_names(model), "Run 'repscope layers MODEL' for the list."))
    return found


def _check_layer_names(model: Model, names: Sequence[str]) -> None:
    for name in names:
        if name not in (INPUT, LOGITS):
            get_module(model, name)


def _as_tensor_output(name: str, output: object) -> torch.Tensor:
    """A module's output as one tensor (the first tensor of a tuple/list output)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise LayerError(f"layer '{name}' returns {type(output).__name__}, not a tensor. Pick one of its submodules.")


def check_images(images01: torch.Tensor, model: Model | nn.Module | None = None) -> None:
    """The one image-batch check, :func:`repscope.images.check_images`, with ``model``'s dtype and device
    (a finite float ``(N, 3, H, W)`` batch, in the model's dtype, on its device, not meta): the same
    :class:`~repscope.errors.ShapeError` as ``Model.__call__``. ``model`` None / without tensors: no dtype/device."""
    from .images import check_images as check
    from .models import module_device, module_dtype

    module = model.module if isinstance(model, Model) else model if isinstance(model, nn.Module) else None
    has_tensors = module is not None and any(True for _ in (*module.parameters(), *module.buffers()))
    check(images01, dtype=module_dtype(module) if has_tensors else None,
          device=module_device(module) if has_tensors else None)


def features(model: Model | nn.Module, images01: torch.Tensor, layers: str | Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` for ``images01`` ``(N, 3, H, W)`` in [0, 1], computing nothing after the last one.

    Args:
        model: a :class:`~repscope.models.Model` (or bare ``nn.Module``, identity preprocessing).
        images01: the image batch; gradients flow back to it if it requires grad.
        layers: one name or several (module names, ``input``, ``logits``).

    Returns:
        ``{name: tensor}``; module outputs are from the module's first call in the forward pass.
    """
    model = as_model(model)
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise LayerError("no layer requested. Name at least one layer (see 'repscope layers MODEL').")
    _check_layer_names(model, names)
    check_images(images01, model)
    inputs = model.preprocessing.normalize(images01)
    captured: dict[str, torch.Tensor] = {}
    pending = {n for n in names if n not in (INPUT, LOGITS)}
    stop_early = LOGITS not in names
    if INPUT in names:
        captured[INPUT] = inputs.clone() if pending or not stop_early else inputs
    if not pending and stop_early:
        return captured

    def make_hook(name: str):
        def hook(_module: nn.Module, _args: tuple, output: object) -> None:
            if name in captured:
                return
            tensor = _as_tensor_output(name, output)
            pending.discard(name)
            last = stop_early and not pending
            captured[name] = tensor if last else tensor.clone()
            if last:
                raise _StopForward
        return hook

    try:
        with forward_hooks([(model.module.get_submodule(n), make_hook(n)) for n in pending]):
            output = model.module(inputs)
        if LOGITS in names:
            captured[LOGITS] = _as_tensor_output(LOGITS, output)
    except _StopForward:
        pass
    missing = [n for n in names if n not in captured]
    if missing:
        raise LayerError(f"layer(s) {', '.join(missing)} never ran in the forward pass. Pick layers that are used.")
    return {n: captured[n] for n in names}


def rest_of_network(model: Model | nn.Module, layer: str
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """ψ for ``layer``: ``psi(images01, features) -> logits``, the model with the layer's output replaced.

    The replacement is a forward hook returning ``features``; it is removed when the call returns,
    even after an exception. ``images01`` feeds everything before the layer (and skip paths around it).
    """
    model = as_model(model)
    if layer == LOGITS:
        return lambda images01, feats: feats
    if layer == INPUT:
        return lambda images01, feats: model.module(feats)
    module = get_module(model, layer)

    def psi(images01: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        with forward_hooks([(module, lambda _m, _a, _o: feats)]):
            return model(images01)

    return psi


class Representation(nn.Module):
    """Φ: images ``(N, 3, H, W)`` in [0, 1] -> the output of one layer, by a truncated forward pass.

    Attributes:
        model: the :class:`~repscope.models.Model`.
        layer: the layer name.
        stride: input pixels per feature cell at the model's input size (``None`` for vectors).
        receptive_field: side in pixels of one feature cell's receptive field (clipped to the input).
        Both are measured by :func:`repscope.geometry.cell_geometry` (which also gives the offset).
    """

    def __init__(self, model: Model | nn.Module, layer: str):
        super().__init__()
        model = as_model(model)
        if layer not in (INPUT, LOGITS):
            get_module(model, layer)
        self.model = model
        self.net = model.module
        self.layer = layer
        self._cells: dict[bool, CellGeometry] = {}

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return features(self.model, images01, [self.layer])[self.layer]

    def _geometry(self, receptive_field: bool) -> CellGeometry:
        """The cells' geometry at the model's input size, measured once (the receptive field only if asked)."""
        if receptive_field not in self._cells:
            self._cells[receptive_field] = cell_geometry(self, self.model.preprocessing.input_size, offset=False,
                                                         receptive_field=receptive_field)
        return self._cells[receptive_field]

    @property
    def stride(self) -> int | None:
        cells = self._geometry(receptive_field=False)
        return max(1, round(cells.stride[0])) if cells.spatial else None

    @property
    def receptive_field(self) -> int | None:
        return self._geometry(receptive_field=True).receptive_field

    def extra_repr(self) -> str:
        return f"model={self.model.name!r}, layer={self.layer!r}"


def representation(model: Model | nn.Module, layer: str) -> Representation:
    """Shorthand for :class:`Representation` ``(model, layer)``."""
    return Representation(model, layer)
