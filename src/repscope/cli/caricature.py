"""``repscope caricature IMAGE --layer L [--iters N]``: exaggerate what a layer sees in an image.

Writes one PNG per layer, ``grid.png`` (original + caricatures labelled with their gain),
``loss.png`` and ``result.json`` (per layer: ``gain`` = <Φ(x0),Φ(x*)>/‖Φ(x0)‖², iterations,
seconds, every hyperparameter).
"""

from __future__ import annotations

import argparse

from . import common
from .invert import add_preimage_arguments, layers_or_default, preimage_config, sweep_settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("caricature", help="exaggerate the patterns a layer detects in an image",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("image", help="image file or sample:NAME")
    parser.add_argument("--layer", action="append", help="layer name (repeat for several; HOG: logits)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    common.add_resume_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    from ..images import load_images
    from ..layers import Representation
    from ..preimage import caricature
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
        res = caricature(Representation(model, keys[0]), x, config=config, seed=args.seed, quiet=args.quiet)
        item = dict(res.records()[0], layer=keys[0], unit=None, image=names[0])
        return [(item, res.images01[0], res.data_losses[:, 0])]

    record = run_items(out, sweep_settings(args), layers, compute, resume=args.resume, prefix="caricature_")
    items = list(record.items.values())
    result = finish_items(out, record, title=f"caricature {names[0]}", lead=(x[0], "original"),
                          label=lambda item: f"{item['layer']} x{item['gain']:.1f}",
                          command="caricature", model=model.name, image=names[0],
                          summary={i["layer"]: round(i["gain"], 3) for i in items})
    common.finish(args, result, out, [f"{i['layer']}: gain {i['gain']:.2f} ({i['seconds']:.1f} s)" for i in items])
    return result
