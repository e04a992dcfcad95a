"""Backpropagation visualisations: gradient, DeConvNet and guided backprop on any model.

``rule(method)`` installs the backward rule for every rectifier (:mod:`.rules`);
``saliency(model, images01, target, method)`` computes the signed maps (:mod:`.saliency`);
``selectivity`` and ``bottleneck`` measure neuron selectivity and the bottleneck (:mod:`.analysis`);
:mod:`.render` turns maps into images.

Example:
    >>> import torch, torchvision
    >>> import repscope.backprop as bp
    >>> net = torchvision.models.alexnet(weights=None).eval()
    >>> maps = bp.saliency(net, torch.rand(1, 3, 224, 224), bp.Target.class_(7), "deconvnet")
"""

from .analysis import BottleneckResult, SelectivityResult, bottleneck, correlation_matrix, selectivity
from .render import colorize, heatmap, overlay, signed_rgb
from .rules import METHODS, RuleMode, rule
from .saliency import BackwardMap, Target, backward_map, saliency

__all__ = [
    "METHODS", "rule", "RuleMode",
    "Target", "saliency", "backward_map", "BackwardMap",
    "selectivity", "bottleneck", "correlation_matrix", "SelectivityResult", "BottleneckResult",
    "signed_rgb", "heatmap", "colorize", "overlay",
]
