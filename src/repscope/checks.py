"""Pre-flight check: the silent failures that make visualisations wrong, found before any analysis.

``check(model)`` runs one forward pass on shipped sample photos and reports:

* ``inplace``: in-place activations (a captured value could be overwritten later);
* ``reused``: modules called more than once in one forward (a layer name would mean several tensors);
* ``functional-rectifier``: rectifiers applied as functions (``F.relu``, ``torch.relu``) rather than modules,
  which module-walking tools (e.g. Captum's guided backprop) silently miss;
* ``train-mode``: BatchNorm / Dropout left in training mode;
* ``input-range``: the input statistics reaching the first BatchNorm disagree with its running statistics,
  i.e. the preprocessing (value range, mean/std) does not match what the network was trained with.

Each :class:`Finding` names the layer and what repscope does about it. The forward passes run in
eval mode (flags restored after), so the check changes no running statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .hooks import forward_hooks
from .layer_info import call_counts
from .models import Model, as_model, evaluating
from .rectifiers import parse_rectifier

RECTIFIER_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)
#: Median |log(batch variance / running variance)| at the first BatchNorm beyond which the input range
#: is flagged (a factor of about 2.5). Measured on lite0 with four sample photos: 0.51 with the right
#: preprocessing, 1.79 with inputs in [0, 1] instead of [-1, 1], 1.20 with ImageNet mean/std instead.
LOG_VARIANCE_RATIO_LIMIT = 0.9


@dataclass
class Finding:
    """One problem: ``kind`` (see module doc), the ``layer`` it is at, and what repscope does about it."""

    kind: str
    layer: str
    detail: str
    action: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.kind}] {self.layer}: {self.detail} -> {self.action}"


class _RectifierRecorder(TorchFunctionMode):
    """Records, for each rectifier call, the innermost module running at that moment."""

    def __init__(self, stack: list[tuple[str, nn.Module]]):
        super().__init__()
        self.stack = stack
        self.functional: dict[str, str] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if parse_rectifier(func, args, kwargs) is not None:
            name, module = self.stack[-1] if self.stack else ("<model>", None)
            if not isinstance(module, RECTIFIER_MODULES):
                self.functional.setdefault(name, getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def _sample_batch(size: int, device: torch.device) -> torch.Tensor:
    from .images import load_images
    batch, _ = load_images(["sample:chelsea", "sample:coffee", "sample:astronaut", "sample:rocket"], size=size)
    return batch.to(device)


def check(model: Model | nn.Module, images01: torch.Tensor | None = None) -> list[Finding]:
    """Run the pre-flight check on ``model``; ``images01`` defaults to four sample photos at the input size."""
    model = as_model(model)
    module = model.module
    if images01 is None:
        images01 = _sample_batch(model.preprocessing.input_size, model.device)
    findings: list[Finding] = []
    for name, sub in module.named_modules():
        if getattr(sub, "inplace", False) is True:
            findings.append(Finding("inplace", name or "<model>", f"{type(sub).__name__}(inplace=True)",
                                    "captured features are cloned before later in-place ops; backprop rules "
                                    "replace in-place rectifiers by out-of-place ones"))
        if sub.training and isinstance(sub, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            findings.append(Finding("train-mode", name or "<model>", f"{type(sub).__name__} is in training mode",
                                    "call model.eval() (repscope.models.load does); results would depend on the batch"))
    with torch.no_grad(), evaluating(module):
        for name, count in call_counts(model, images01).items():
            if count > 1:
                findings.append(Finding("reused", name, f"called {count} times in one forward pass",
                                        "the layer name refers to its first call only"))
        findings += _functional_rectifiers(model, images01)
        findings += _input_range(model, images01)
    return findings


def _functional_rectifiers(model: Model, images01: torch.Tensor) -> list[Finding]:
    stack: list[tuple[str, nn.Module]] = []

    def enter(name: str):
        def hook(sub, _args) -> None:
            stack.append((name or "<model>", sub))
        return hook

    def leave(_sub, _args, _output) -> None:
        stack.pop()

    modules = list(model.module.named_modules())
    hooks = forward_hooks(after=[(sub, leave) for _, sub in modules], before=[(sub, enter(n)) for n, sub in modules])
    recorder = _RectifierRecorder(stack)
    with hooks, recorder:
        model(images01)
    return [Finding("functional-rectifier", layer, f"{func} applied as a function inside this module",
                    "repscope's backprop rules intercept it at the operator level; it has no layer name "
                    "of its own, so address the enclosing module")
            for layer, func in recorder.functional.items()]


def _input_range(model: Model, images01: torch.Tensor) -> list[Finding]:
    """Compare the statistics entering the first BatchNorm with its running statistics."""
    first: dict[str, object] = {}

    def make_hook(name: str):
        def hook(sub, args):
            if "name" not in first:
                x = args[0].detach().float()
                dims = [d for d in range(x.dim()) if d != 1]
                first.update(name=name, var=x.var(dim=dims), mean=x.mean(dim=dims), module=sub)
        return hook

    norms = [(n, m) for n, m in model.module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats and m.running_var is not None]
    if not norms:
        return []
    with forward_hooks(before=[(m, make_hook(n)) for n, m in norms]):
        model(images01)
    if "name" not in first:
        return []
    running_var = first["module"].running_var.float().clamp_min(1e-8)
    untrained = bool((running_var == 1).all() and (first["module"].running_mean == 0).all())
    log_ratio = (first["var"].clamp_min(1e-12) / running_var).log()
    if untrained or float(log_ratio.abs().median()) <= LOG_VARIANCE_RATIO_LIMIT:
        return []
    ratio = float(log_ratio.median().exp())
    mean, std = model.preprocessing.mean, model.preprocessing.std
    return [Finding("input-range", first["name"],
                    f"input variance is {ratio:.3g}x the running variance of the first BatchNorm "
                    f"(preprocessing mean={mean}, std={std})",
                    "the preprocessing probably does not match training; pass the right mean/std to "
                    "repscope.models.wrap (e.g. ImageNet mean/std, or 0.5/0.5 for inputs in [-1, 1])")]
