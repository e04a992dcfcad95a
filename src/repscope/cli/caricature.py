"""``repscope caricature IMAGE --layer L [--iters N]``: exaggerate what a layer sees in an image.

Writes one PNG per layer, ``grid.png`` (original + caricatures labelled with their gain),
``loss.png`` and ``result.json`` (per layer: ``gain`` = <Φ(x0),Φ(x*)>/‖Φ(x0)‖², iterations,
seconds, every hyperparameter).
"""

from __future__ import annotations

import argparse

from . import common
from .invert import add_preimage_arguments, preimage_config


def register(subparsers) -> None:
    parser = subparsers.add_parser("caricature", help="exaggerate the patterns a layer detects in an image",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("image", help="image file or sample:NAME")
    parser.add_argument("--layer", action="append", required=True, help="layer name (repeat for several)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    import torch

    from ..images import load_images
    from ..layers import Representation
    from ..preimage import caricature
    from ..preimage.outputs import plot_losses, save_images

    model = common.load_model(args)
    size = model.preprocessing.input_size
    x, names = load_images([args.image], size=size if isinstance(size, int) else size[0])
    x = x.to(common.device(args))
    out = common.output_dir(args)
    results, items, pics, labels = [], [], [x], ["original"]
    for layer in args.layer:
        res = caricature(Representation(model, layer), x, config=preimage_config(args), seed=args.seed,
                         quiet=args.quiet)
        res.labels = [layer]
        results.append(res)
        rec = res.records()[0]
        rec.update(layer=layer, unit=None, image=names[0])
        items.append(rec)
        pics.append(res.images01)
        labels.append(f"{layer} x{rec['gain']:.1f}")
        save_images(res.images01, [f"caricature_{layer}"], out)
    from ..images import save_grid

    save_grid(torch.cat(pics), out / "grid.png", labels=labels)
    plot_losses(results, out / "loss.png", title=f"caricature {names[0]}")
    result = {"command": "caricature", "model": model.name, "image": names[0], "items": items,
              "summary": {r["layer"]: round(r["gain"], 3) for r in items}}
    common.finish(args, result, out, [f"{r['layer']}: gain {r['gain']:.2f} ({r['seconds']:.1f} s)" for r in items])
    return result
