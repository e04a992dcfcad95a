"""What the pre-image commands (``invert``, ``caricature``, ``maximize``) share: their options, the
configuration they describe, and the per-layer command."""

from __future__ import annotations

import argparse
import math

from ..bounds import OPTIONS
from ..errors import RepscopeError
from . import common


def add_preimage_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the pre-image energy and optimiser (see ``repscope.preimage.PreimageConfig``)."""
    g = parser.add_argument_group("pre-image")
    g.add_argument("--iters", type=OPTIONS["--iters"], default=200, help="iterations (default 200)")
    g.add_argument("--optimizer", choices=["momentum", "adam"], default="momentum")
    g.add_argument("--lr", type=OPTIONS["--lr"], default=None, help="learning rate (default: the paper's rule)")
    g.add_argument("--beta", type=OPTIONS["--beta"], default=2.0, help="TV exponent: 2 smooth, 1 spiky")
    g.add_argument("--tv-weight", type=OPTIONS["--tv-weight"], default=None, help="lambda_TV (default (6.5/sigma)^beta)")
    g.add_argument("--alpha-weight", type=OPTIONS["--alpha-weight"], default=0.0, help="lambda_alpha (default 0; paper: sigma^-6 = 3.8e-12)")
    g.add_argument("--data-weight", type=OPTIONS["--data-weight"], default=None, help="weight C of the data term (default: by stride)")
    g.add_argument("--jitter", type=OPTIONS["--jitter"], default=None, help="max translation in pixels (default stride/4)")
    g.add_argument("--bound", type=OPTIONS["--bound"], default=None, help="radius B of the pixel colour ball, 0-255 units (paper: 160)")
    g.add_argument("--pyramid", type=OPTIONS["--pyramid"], default=None,
                   help="coarse levels of the canvas (default: by image size, 5 at 224; 0: pixels, as in the paper)")


def preimage_config(args: argparse.Namespace):
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
        pyramid=args.pyramid,
    )


def register_per_layer(subparsers, command: str, helptext: str, run) -> None:
    """The parser of a per-layer pre-image command on one image (``invert``, ``caricature``)."""
    parser = subparsers.add_parser(command, help=helptext, description=helptext)
    parser.add_argument("image", help="image file or sample:NAME")
    parser.add_argument("--layer", action="append", help="layer name (repeat for several; HOG: logits)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    common.add_resume_argument(parser)
    common.add_executor_arguments(parser)
    parser.set_defaults(run=run)


def run_per_layer(args: argparse.Namespace, method: str) -> dict:
    """``repscope.preimage.invert_layers`` with ``method`` for each ``--layer``; prints one line per layer."""
    from ..images import load_images
    from ..preimage.sweeps import PER_LAYER, invert_layers, pick_layers

    model = common.load_model(args)
    layers = pick_layers(model, args.layer)
    config = preimage_config(args)
    x, names = load_images([args.image], size=model.preprocessing.input_size)
    out = common.output_dir(args)
    result = invert_layers(model, x.to(common.device(args)), layers, out, method=method, config=config,
                           seed=args.seed, image=names[0], resume=args.resume, settings=common.sweep_settings(args),
                           executor=common.executor(args), progress=not args.quiet)
    metric = PER_LAYER[method][1]
    common.finish(args, result, out, [f"{i['layer']}: {metric} {i[metric]:.3f} ({i['seconds']:.1f} s)"
                                      for i in result["items"].values()])
    return result
