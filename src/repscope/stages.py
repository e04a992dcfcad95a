"""The main stages of a network: the default layers of the per-layer analyses.

A network's stages are its top-level children, with sequential containers (``nn.Sequential``,
``nn.ModuleList``) opened one level (EfficientNet's ``blocks.0`` … ``blocks.6``), the last child
(the classifier) left out. A representation without stages (HOG, a bare operator) has one layer,
its output, addressed as ``logits``.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential()
    >>> net.add_module("stem", nn.Conv2d(3, 8, 3))
    >>> net.add_module("blocks", nn.Sequential(nn.ReLU(), nn.ReLU()))
    >>> net.add_module("head", nn.Linear(8, 2))
    >>> stage_layers(net)
    ['stem', 'blocks.0', 'blocks.1']
    >>> stage_layers(nn.Identity())
    ['logits']
"""

from __future__ import annotations

from torch import nn

__all__ = ["stage_layers"]


def stage_layers(model) -> list[str]:
    """The main stages of ``model`` (a :class:`~repscope.models.Model` or an ``nn.Module``), in forward order."""
    module = getattr(model, "module", model)
    names = []
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child):
            names += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            names.append(name)
    return names[:-1] if len(names) > 1 else ["logits"]
