"""``repscope invert IMAGE --layer L [--layer L2 ...] [--iters N]``: reconstruct an image from a layer.

Writes one PNG per layer, ``grid.png`` (original + one pre-image per layer, labelled with the
error), ``loss.png`` and ``result.json`` (per layer: ``error``, iterations, seconds, every
hyperparameter). The pre-image options below are shared by ``maximize`` and ``caricature``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..errors import LayerError, RepscopeError
from . import common


def add_preimage_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the pre-image energy and optimiser (see ``repscope.preimage.PreimageConfig``)."""
    g = parser.add_argument_group("pre-image")
    g.add_argument("--iters", type=int, default=200, help="iterations (default 200)")
    g.add_argument("--optimizer", choices=["momentum", "adam"], default="momentum")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the paper's rule)")
    g.add_argument("--beta", type=float, default=2.0, help="TV exponent: 2 smooth, 1 spiky")
    g.add_argument("--tv-weight", type=float, default=None, help="lambda_TV (default (6.5/sigma)^beta)")
    g.add_argument("--alpha-weight", type=float, default=0.0, help="lambda_alpha (default 0; paper: sigma^-6 = 3.8e-12)")
    g.add_argument("--data-weight", type=float, default=None, help="weight C of the data term (default: by stride)")
    g.add_argument("--jitter", type=int, default=None, help="max translation in pixels (default stride/4)")
    g.add_argument("--bound", type=float, default=None, help="radius B of the pixel colour ball, 0-255 units (paper: 160)")
    g.add_argument("--pyramid", type=int, default=None,
                   help="coarse levels of the canvas (default: by image size, 5 at 224; 0: pixels, as in the paper)")


def preimage_config(args: argparse.Namespace, **defaults: Any):
    """The :class:`PreimageConfig` the options describe."""
    from ..preimage import PreimageConfig

    for option in ("iters", "lr", "beta", "tv_weight", "alpha_weight", "data_weight", "jitter", "bound", "pyramid"):
        value = getattr(args, option)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise RepscopeError(f"--{option.replace('_', '-')} must be a finite number >= 0, got {value}.")
    if args.iters < 1:
        raise RepscopeError(f"--iters must be at least 1, got {args.iters}. Use e.g. --iters 200.")
    return PreimageConfig(
        iters=args.iters, optimizer=args.optimizer, lr=args.lr, beta=args.beta, lambda_tv=args.tv_weight,
        lambda_alpha=args.alpha_weight, data_weight=args.data_weight, jitter=args.jitter, bound=args.bound,
        pyramid=args.pyramid, **defaults,
    )


def sweep_settings(args: argparse.Namespace) -> dict:
    """The options that determine a sweep's results (what ``--resume`` must find unchanged)."""
    ignored = {"run", "json", "quiet", "debug", "overwrite", "resume", "out", "device", "command"}
    return {k: v for k, v in vars(args).items() if k not in ignored}


def layers_or_default(args: argparse.Namespace, model) -> list[str]:
    """``--layer`` values; for HOG models (a single output) ``logits`` when none is given."""
    if args.layer:
        return list(args.layer)
    if model.name.startswith("hog"):
        return ["logits"]
    raise LayerError(f"name a layer with --layer (e.g. --layer blocks.3). Run 'repscope layers {model.name}'.")


def register_per_layer(subparsers, command: str, helptext: str, run) -> None:
    """The parser of a per-layer pre-image command on one image (``invert``, ``caricature``)."""
    parser = subparsers.add_parser(command, help=helptext, description=helptext)
    parser.add_argument("image", help="image file or sample:NAME")
    parser.add_argument("--layer", action="append", help="layer name (repeat for several; HOG: logits)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    common.add_resume_argument(parser)
    parser.set_defaults(run=run)


def run_per_layer(args: argparse.Namespace, command: str, method, metric: str, label: str) -> dict:
    """Run ``method(Φ_layer, image)`` for each ``--layer`` as a resumable sweep; ``metric`` is summarised,
    ``label`` formats a grid label from the metric value (e.g. ``"{:.2f}"``)."""
    from ..images import load_images
    from ..layers import Representation
    from ..preimage.runs import finish_items, run_items

    model = common.load_model(args)
    layers = layers_or_default(args, model)
    for layer in layers:
        Representation(model, layer)  # unknown names fail before any work
    x, names = load_images([args.image], size=model.preprocessing.input_size)
    x = x.to(common.device(args))
    out = common.output_dir(args)
    config = preimage_config(args)

    def compute(_start: int, keys: list[str]):
        res = method(Representation(model, keys[0]), x, config=config, seed=args.seed, quiet=args.quiet)
        item = dict(res.records()[0], layer=keys[0], unit=None, image=names[0])
        return [(item, res.images01[0], res.data_losses[:, 0])]

    record = run_items(out, sweep_settings(args), layers, compute, resume=args.resume, prefix=f"{command}_")
    items = list(record.items.values())
    result = finish_items(out, record, title=f"{command} {names[0]}", lead=(x[0], "original"),
                          label=lambda item: f"{item['layer']} {label.format(item[metric])}",
                          command=command, model=model.name, image=names[0],
                          summary={item["layer"]: round(item[metric], 4) for item in items})
    common.finish(args, result, out,
                  [f"{i['layer']}: {metric} {i[metric]:.3f} ({i['seconds']:.1f} s)" for i in items])
    return result


def register(subparsers) -> None:
    register_per_layer(subparsers, "invert", "reconstruct an image from a layer's representation", run)


def run(args: argparse.Namespace) -> dict:
    from ..preimage import invert

    return run_per_layer(args, "invert", invert, "error", "{:.2f}")
