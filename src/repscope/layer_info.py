"""The layer table: type, output shape, stride and receptive field of every addressable layer.

Shapes come from one forward pass at the model's input size. The stride is input pixels per
feature cell (``input_size / output_height``). The receptive field is measured, not derived from
a formula, so it is right for any graph (residuals, branches, functional ops): on a copy of
the network whose convolution/linear weights are all positive, whose batch normalisations are
identities, run under a function mode in which activations are identities and max-pooling is
average pooling (so the gradient
reaches every pixel of every window), the gradient of the centre cell of a layer with respect to a
positive input is non-zero exactly on its receptive field. It is clipped to the input image.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .hooks import forward_hooks
from .layers import INPUT, LOGITS, features, layer_names
from .models import Model, as_model
from .progress import progress



_STRIDE_PROBE = 256


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
    device = model.device
    modules = dict(model.module.named_modules())
    with torch.no_grad():
        probe = torch.full((1, 3, size, size), 0.5, device=device)
        if only is None:
            ran = call_counts(model, probe)
            names = [INPUT] + [n for n in layer_names(model) if n in ran] + [LOGITS]
        else:
            names = list(only)
        shapes = {n: tuple(t.shape[1:]) for n, t in features(model, probe, names).items()}
        strides = _strides(model, [n for n in names if len(shapes[n]) == 3], shapes, size)
    fields = _receptive_fields(model, [n for n in names if len(shapes[n]) == 3], size) if receptive_fields else {}
    rows = []
    for name in names:
        shape = shapes[name]
        spatial = len(shape) == 3
        stride = strides.get(name) if spatial else None
        kind = "Input" if name == INPUT else ("Output" if name == LOGITS else type(modules[name]).__name__)
        rows.append(LayerInfo(name, kind, shape, stride, fields.get(name, None if spatial else size)))
    return rows


def _strides(model: Model, names: list[str], shapes: dict[str, tuple], size: int) -> dict[str, int]:
    """Input pixels per feature cell: ``Δinput / Δoutput`` between ``size`` and ``size + 256``.

    Taking the difference cancels padding and kernel-size offsets (256 is a multiple of any
    power-of-two stride); where the larger input does not run (fixed-size models), ``size / h``.
    """
    bigger = size + _STRIDE_PROBE
    try:
        with torch.no_grad():
            probe = torch.full((1, 3, bigger, bigger), 0.5, device=model.device)
            grown = {n: t.shape[-2] for n, t in features(model, probe, names).items()}
    except (RuntimeError, ValueError):
        grown = {}
    result = {}
    for name in names:
        delta = grown.get(name, shapes[name][-2]) - shapes[name][-2]
        result[name] = round(_STRIDE_PROBE / delta) if delta > 0 else max(1, round(size / shapes[name][-2]))
    return result


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


class _Linearised(TorchFunctionMode):
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


def _linearised_copy(module: nn.Module) -> nn.Module:
    """A float32 copy with positive averaging weights and identity normalisations (run it under _Linearised)."""
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


def _receptive_fields(model: Model, names: list[str], size: int) -> dict[str, int]:
    """Receptive field side (pixels) of the centre cell of each spatial layer in ``names``.

    Layers that return the very same tensor (identities, in-place activations) share one backward pass.
    """
    if not names:
        return {}
    net = _linearised_copy(model.module)
    device = model.device
    probe = Model(model.name, net, model.preprocessing, None)
    generator = torch.Generator().manual_seed(0)
    x = (0.25 + 0.5 * torch.rand(1, 3, size, size, generator=generator)).to(device).requires_grad_(True)
    outputs = _raw_outputs(probe, x, names)
    by_tensor: dict[int, int] = {}
    result = {}
    unique = {id(t): t for t in outputs.values()}
    for i, (key, out) in enumerate(progress(unique.items(), total=len(unique), desc="receptive fields")):
        h, w = out.shape[-2:]
        target = out[0, :, (h - 1) // 2, (w - 1) // 2].abs().sum()
        grad = None
        if target.requires_grad:
            (grad,) = torch.autograd.grad(target, x, retain_graph=i < len(unique) - 1, allow_unused=True)
        by_tensor[key] = _support_extent(grad)
    for name, out in outputs.items():
        result[name] = by_tensor[id(out)]
    return result


def _raw_outputs(model: Model, images01: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Layer outputs without cloning (the linearised copy modifies nothing in place)."""
    if INPUT in names or LOGITS in names:
        with _Linearised():
            return features(model, images01, names)
    modules = dict(model.module.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_module, _args, output):
            captured.setdefault(name, output if isinstance(output, torch.Tensor) else output[0])
        return hook

    with forward_hooks([(modules[n], make_hook(n)) for n in names]), _Linearised():
        model(images01)
    return captured


def _support_extent(grad: torch.Tensor | None) -> int:
    """The side of the bounding box of the non-zero gradient, in pixels (1 if none)."""
    if grad is None:
        return 1
    support = grad[0].abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        return 1
    return max(int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
