"""``repscope invert IMAGE --layer L [--layer L2 ...] [--iters N]``: reconstruct an image from a layer.

Writes one PNG per layer, ``grid.png`` (original + one pre-image per layer, labelled with the
error), ``loss.png`` and ``result.json`` (per layer: ``error``, iterations, seconds, every
hyperparameter). The pre-image options below are shared by ``maximize`` and ``caricature``.
"""

from __future__ import annotations

import argparse
from typing import Any

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


def preimage_config(args: argparse.Namespace, **defaults: Any):
    """The :class:`PreimageConfig` the options describe."""
    from ..preimage import PreimageConfig

    return PreimageConfig(
        iters=args.iters, optimizer=args.optimizer, lr=args.lr, beta=args.beta, lambda_tv=args.tv_weight,
        lambda_alpha=args.alpha_weight, data_weight=args.data_weight, jitter=args.jitter, bound=args.bound,
        **defaults,
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser("invert", help="reconstruct an image from a layer's representation",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("image", help="image file or sample:NAME")
    parser.add_argument("--layer", action="append", required=True, help="layer name (repeat for several)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    import torch

    from ..images import load_images
    from ..preimage import invert_layers
    from ..preimage.outputs import plot_losses, save_images

    model = common.load_model(args)
    size = model.preprocessing.input_size
    x, names = load_images([args.image], size=size if isinstance(size, int) else size[0])
    x = x.to(common.device(args))
    out = common.output_dir(args)
    sweep = invert_layers(model, x, args.layer, config=preimage_config(args), seed=args.seed, quiet=args.quiet)
    save_images(sweep.images01, [f"invert_{r['layer']}" for r in sweep.records], out)
    sweep.images01 = torch.cat([x.to(sweep.images01), sweep.images01])
    sweep.labels = ["original"] + sweep.labels
    sweep.save_grid(out / "grid.png")
    plot_losses(sweep.results, out / "loss.png", title=f"invert {names[0]}")
    items = [dict(r, image=names[0]) for r in sweep.records]
    result = {"command": "invert", "model": model.name, "image": names[0], "items": items,
              "summary": {r["layer"]: round(r["error"], 4) for r in items}}
    common.finish(args, result, out, [f"{r['layer']}: error {r['error']:.3f} ({r['seconds']:.1f} s)" for r in items])
    return result
