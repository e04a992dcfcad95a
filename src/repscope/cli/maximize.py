"""``repscope maximize --layer L --unit K [--unit K2 ...] [--iters N]``: images that excite units.

A unit is a channel / class index ``K`` (averaged over space, or its centre cell with
``--spatial center``) or a neuron ``K,I,J``. All units run as one batched optimisation (chunks of
``--batch``). Writes one PNG per unit, ``grid.png``, ``loss.png`` and ``result.json`` (per unit:
``activation``, its ``ratio`` to the largest value over the sample photos, iterations, seconds,
every hyperparameter); see :func:`repscope.preimage.maximize_units`.
"""

from __future__ import annotations

import argparse

from ..bounds import OPTIONS
from ..errors import LayerError
from . import common
from .preimage_common import add_preimage_arguments, examples, preimage_config


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
    parser = subparsers.add_parser(
        "maximize", help="synthesise images that maximise units of a layer",
        description="Synthesise images that excite units of a layer: a channel K, or a neuron K,I,J.",
        epilog=examples("repscope maximize --layer blocks.4 --unit 3 --unit 17",
                        "repscope maximize --layer logits --unit 207 --iters 400 --transfer-to torchvision:resnet18",
                        "repscope maximize --layer blocks.2 --unit 5,10,10 --spatial center", image=False),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", required=True, action=common.Once, help="layer name (logits for classes)")
    parser.add_argument("--unit", action="append", required=True, type=parse_unit, help="K or K,I,J (repeat)")
    parser.add_argument("--spatial", choices=["mean", "center"], default="mean",
                        help="channel units: average over space (default) or the centre cell")
    parser.add_argument("--batch", type=OPTIONS["--batch"], default=16, help="units optimised together (default 16)")
    parser.add_argument("--transfer-to", default=None, metavar="MODEL[,MODEL...]",
                        help="with --layer logits: classify each saved image with these other networks and record "
                             "where its class ranks (repscope.naturalness.transfer_to)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    common.add_resume_argument(parser)
    common.add_executor_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    from ..preimage.sweeps import maximize_units, pick_layers, reference_photos

    model = common.load_model(args)
    (layer,) = pick_layers(model, [args.layer])
    transfer_names = _transfer_names(args, layer)
    reference, names = reference_photos(model, common.device(args))
    out = common.output_dir(args)
    result = maximize_units(model, layer, list(args.unit), out, spatial=args.spatial, reference01=reference,
                            reference_names=names, batch_size=args.batch, config=preimage_config(args),
                            seed=args.seed, resume=args.resume, settings=common.sweep_settings(args),
                            executor=common.executor(args), progress=not args.quiet)
    if transfer_names:
        _add_transfer(result, out, model, transfer_names, common.device(args))
    lines = [f"{layer}:{i['unit']}: activation {i['activation']:.3f}, {i['ratio']:.2f}x the best sample photo"
             + "".join(f"; {n} rank {t['rank']}" for n, t in i.get("transfer", {}).items())
             for i in result["items"].values()]
    common.finish(args, result, out, lines)
    return result


def _transfer_names(args: argparse.Namespace, layer: str) -> list[str]:
    """The ``--transfer-to`` networks; refused unless the units are classes of ``logits``."""
    if not args.transfer_to:
        return []
    if layer != "logits" or not all(isinstance(u, int) for u in args.unit):
        raise LayerError("--transfer-to needs class units of the logits: use --layer logits --unit K.")
    return [n.strip() for n in args.transfer_to.split(",") if n.strip()]


def _add_transfer(result: dict, out, model, names: list[str], device) -> None:
    """Each item gains ``transfer``: {network: {top1, top5, rank}} for its saved PNG (the image a user gets)."""
    from ..images import load_images
    from ..naturalness import transfer_to

    items = list(result["items"].values())
    images, _ = load_images([str(out / item["file"]) for item in items])
    for item, row in zip(items, transfer_to(images, [int(i["unit"]) for i in items], names, source=model,
                                            device=device)):
        item["transfer"] = row
