"""``repscope saliency IMAGE --method {gradient,deconvnet,guided} [--layer L --unit K | --class C]``.

Backpropagation visualisations of a class logit (default: the predicted class) or of a channel /
neuron of a layer. Several ``--method`` values give a side-by-side grid. Writes, per method,
``saliency_METHOD.png`` (signed RGB), ``heatmap_METHOD.png`` (max over channels of |map|),
``overlay_METHOD.png``, ``units_METHOD.png`` (the maps of the top-K units), and ``grid.png``
(rows: methods; columns: image, signed, heatmap, overlay); ``result.json`` carries
``selectivity`` (mean pairwise correlation of the top-K units' maps, per method) and
``bottleneck`` (correlation of the target's map with the maps from a random / constant top signal).
"""

from __future__ import annotations

import argparse

from . import common

METHODS = ("gradient", "deconvnet", "guided")


def register(subparsers) -> None:
    p = subparsers.add_parser("saliency", help="gradient / deconvnet / guided backprop maps",
                              description="Gradient, DeConvNet and guided-backprop maps of a class logit or of a "
                                          "layer's unit, with neuron selectivity and the bottleneck analysis.")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="backward rule; repeat for a side-by-side grid (default: all three)")
    p.add_argument("--layer", default="logits", help="layer name (default logits; see 'repscope layers MODEL')")
    p.add_argument("--unit", type=int, help="channel of --layer (default: the most active one)")
    p.add_argument("--at", choices=["max", "sum"], default="max",
                   help="channel target: the neuron at its maximum (default) or the whole channel summed")
    p.add_argument("--class", dest="class_", metavar="C", help="class index or name (implies --layer logits)")
    p.add_argument("--top-k", type=int, default=8, help="units compared for selectivity (default 8)")
    common.add_common_arguments(p)
    p.set_defaults(run=run)


def _class_index(spec: str, class_names: list[str] | None) -> int:
    from ..errors import LayerError, unknown

    if spec.lstrip("-").isdigit():
        return int(spec)
    names = [n.lower() for n in class_names or []]
    if spec.lower() in names:
        return names.index(spec.lower())
    raise LayerError(unknown("class", spec, class_names or [], "Give a class index or an exact class name."))


def run(args: argparse.Namespace) -> dict:
    import torch

    from .. import backprop as bp
    from ..errors import LayerError
    from ..images import load_images, save_grid, save_image

    methods = list(dict.fromkeys(args.method or METHODS))
    if args.class_ is not None and (args.layer != "logits" or args.unit is not None):
        raise LayerError("--class selects a logit; do not combine it with --layer/--unit (use one or the other).")
    common.seed(args)
    model = common.load_model(args)
    x, names = load_images([args.image], size=model.preprocessing.input_size)
    x = x.to(common.device(args))
    out = common.output_dir(args)

    unit = _class_index(args.class_, model.class_names) if args.class_ is not None else args.unit
    target = bp.Target(args.layer, unit, args.at)
    maps, rows, labels, values, rectifiers = {}, [], [], {}, {}
    for m in methods:
        res = bp.backward_map(model, x, target, m)
        unit, maps[m] = int(res.units[0]), res.maps
        values[m], rectifiers[m] = float(res.values[0]), res.rectifiers
        target = bp.Target(args.layer, unit, args.at)  # same unit for every method
        signed, heat = bp.signed_rgb(res.maps), bp.colorize(bp.heatmap(res.maps))
        over = bp.overlay(x, res.maps)
        save_image(signed[0], out / f"saliency_{m}.png")
        save_image(heat[0], out / f"heatmap_{m}.png")
        save_image(over[0], out / f"overlay_{m}.png")
        rows += [x[0].cpu(), signed[0].cpu(), heat[0].cpu(), over[0].cpu()]
        labels += [names[0], f"{m} signed", f"{m} |map|", f"{m} overlay"]
    save_grid(torch.stack(rows), out / "grid.png", labels=labels, ncols=4)

    sel = bp.selectivity(model, x, args.layer, k=args.top_k, methods=methods, at=args.at)
    for m in methods:
        save_grid(bp.signed_rgb(sel.maps[m]), out / f"units_{m}.png", labels=[f"unit {k}" for k in sel.channels])
    bott = bp.bottleneck(model, x, args.layer, unit=unit, at=args.at, methods=methods, trials=2, seed=args.seed)

    class_name = None
    if args.layer == "logits" and model.class_names and 0 <= unit < len(model.class_names):
        class_name = model.class_names[unit]
    result = {
        "command": "saliency", "model": model.name, "image": names[0], "layer": args.layer, "unit": unit,
        "class_name": class_name, "at": args.at if args.layer != "logits" else None, "methods": methods,
        "value": values[methods[0]], "rectifiers": rectifiers[methods[0]],
        "selectivity": {m: round(v, 4) for m, v in sel.selectivity.items()},
        "selectivity_units": sel.channels,
        "bottleneck": {m: {s: round(v, 4) for s, v in d.items()} for m, d in bott.correlation.items()},
    }
    what = f"class {unit}" + (f" ({class_name})" if class_name else "") if args.layer == "logits" \
        else f"{args.layer} unit {unit} ({args.at})"
    lines = [f"{names[0]}: {what}, {rectifiers[methods[0]]} rectifiers rewritten"]
    lines += [f"  {m:9s} selectivity {sel.selectivity[m]:+.3f}   bottleneck random "
              f"{bott.correlation[m]['random']:+.3f} constant {bott.correlation[m]['constant']:+.3f}"
              for m in methods]
    common.finish(args, result, out, lines)
    return result
