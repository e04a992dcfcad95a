"""``repscope maximize --layer L --unit K [--unit K2 ...] [--iters N]``: images that excite units.

A unit is a channel / class index ``K`` (averaged over space, or its centre cell with
``--spatial center``) or a neuron ``K,I,J``. All units run as one batched optimisation (chunks of
``--batch``). Writes one PNG per unit, ``grid.png``, ``loss.png`` and ``result.json`` (per unit:
``activation``, its ``ratio`` to the largest value over the sample photos, iterations, seconds,
every hyperparameter).
"""

from __future__ import annotations

import argparse

from ..errors import LayerError
from . import common
from .invert import add_preimage_arguments, preimage_config

#: photos whose largest activation normalises the objective (Z) and the reported ratio
REFERENCE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "china", "flower")


def parse_unit(text: str) -> int | tuple[int, int, int]:
    """``"12"`` -> 12; ``"12,3,4"`` -> (12, 3, 4)."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise LayerError(f"bad unit '{text}'; use a channel index K or a neuron K,I,J.") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 3:
        return tuple(parts)
    raise LayerError(f"bad unit '{text}'; use a channel index K or a neuron K,I,J.")


def register(subparsers) -> None:
    parser = subparsers.add_parser("maximize", help="synthesise images that maximise units of a layer",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--layer", required=True, help="layer name (logits for classes)")
    parser.add_argument("--unit", action="append", required=True, type=parse_unit, help="K or K,I,J (repeat)")
    parser.add_argument("--spatial", choices=["mean", "center"], default="mean",
                        help="channel units: average over space or the centre cell")
    parser.add_argument("--batch", type=int, default=16, help="units optimised together")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    from ..images import load_images
    from ..preimage import maximize_units
    from ..preimage.outputs import plot_losses, save_images

    model = common.load_model(args)
    size = model.preprocessing.input_size
    side = size if isinstance(size, int) else size[0]
    device = common.device(args)
    reference, ref_names = load_images([f"sample:{n}" for n in REFERENCE_PHOTOS], size=side)
    out = common.output_dir(args)
    sweep = maximize_units(model, args.layer, args.unit, size=(side, side), spatial=args.spatial,
                           reference01=reference.to(device), batch_size=args.batch,
                           config=preimage_config(args), seed=args.seed, quiet=args.quiet)
    save_images(sweep.images01, [f"maximize_{lbl}" for lbl in sweep.labels], out)
    sweep.labels = [f"{r['unit']} x{r['ratio']:.1f}" for r in sweep.records]
    sweep.save_grid(out / "grid.png")
    plot_losses(sweep.results, out / "loss.png", title=f"maximize {args.layer}")
    result = {"command": "maximize", "model": model.name, "layer": args.layer, "reference_images": ref_names,
              "items": sweep.records,
              "summary": {r["unit"]: {"activation": round(r["activation"], 4), "ratio": round(r["ratio"], 3)}
                          for r in sweep.records}}
    lines = [f"{args.layer}:{r['unit']}: activation {r['activation']:.3f}, {r['ratio']:.2f}x the best sample photo"
             for r in sweep.records]
    common.finish(args, result, out, lines)
    return result
