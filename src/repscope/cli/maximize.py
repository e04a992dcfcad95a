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
from .invert import add_preimage_arguments, preimage_config, sweep_settings

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
    parser.add_argument("--layer", required=True, action=common.Once, help="layer name (logits for classes)")
    parser.add_argument("--unit", action="append", required=True, type=parse_unit, help="K or K,I,J (repeat)")
    parser.add_argument("--spatial", choices=["mean", "center"], default="mean",
                        help="channel units: average over space or the centre cell")
    parser.add_argument("--batch", type=int, default=16, help="units optimised together")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    common.add_resume_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    from ..images import load_images
    from ..layers import Representation
    from ..preimage import maximize
    from ..preimage.methods import unit_label
    from ..preimage.runs import finish_items, run_items

    model = common.load_model(args)
    phi = Representation(model, args.layer)
    side = model.preprocessing.input_size
    device = common.device(args)
    reference, ref_names = load_images([f"sample:{n}" for n in REFERENCE_PHOTOS], size=side)
    reference = reference.to(device)
    out = common.output_dir(args)
    config = preimage_config(args)
    units = list(args.unit)

    def compute(start: int, keys: list[str]):
        res = maximize(phi, units[start:start + len(keys)], size=(side, side), spatial=args.spatial,
                       reference01=reference, config=config, seed=args.seed + start, quiet=args.quiet)
        items = [dict(rec, layer=args.layer, unit=key) for key, rec in zip(keys, res.records())]
        return [(item, res.images01[i], res.data_losses[:, i]) for i, item in enumerate(items)]

    keys = [unit_label(u) for u in units]
    record = run_items(out, sweep_settings(args), keys, compute, resume=args.resume, chunk_size=args.batch,
                       prefix=f"maximize_{args.layer}_")
    items = list(record.items.values())
    result = finish_items(out, record, title=f"maximize {args.layer}",
                          label=lambda item: f"{item['unit']} x{item['ratio']:.1f}",
                          command="maximize", model=model.name, layer=args.layer, reference_images=ref_names,
                          summary={i["unit"]: {"activation": round(i["activation"], 4), "ratio": round(i["ratio"], 3)}
                                   for i in items})
    lines = [f"{args.layer}:{i['unit']}: activation {i['activation']:.3f}, {i['ratio']:.2f}x the best sample photo"
             for i in items]
    common.finish(args, result, out, lines)
    return result
