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

from ..bounds import OPTIONS
from . import common
from .preimage_common import examples

METHODS = ("gradient", "deconvnet", "guided")


def register(subparsers) -> None:
    p = subparsers.add_parser("saliency", help="gradient / deconvnet / guided backprop maps",
                              description="Gradient, DeConvNet and guided-backprop maps of a class logit or of a "
                                          "layer's unit, with neuron selectivity and the bottleneck analysis.",
                              epilog=examples("repscope saliency sample:chelsea",
                                              "repscope saliency sample:coffee --method guided --class espresso",
                                              "repscope saliency photo.jpg --layer blocks.5 --unit 56"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="backward rule; repeat for a side-by-side grid (default: all three)")
    p.add_argument("--layer", default="logits", help="layer name (default logits; see 'repscope layers MODEL')")
    p.add_argument("--unit", type=OPTIONS["--unit"], help="channel of --layer (default: the most active one)")
    p.add_argument("--at", choices=["max", "sum"], default="max",
                   help="channel target: the neuron at its maximum (default) or the whole channel summed")
    p.add_argument("--class", dest="class_", metavar="C", help="class index or name (implies --layer logits)")
    p.add_argument("--top-k", type=OPTIONS["--top-k"], default=8, help="units compared for selectivity (default 8)")
    common.add_common_arguments(p)
    common.add_resume_argument(p)
    common.add_executor_arguments(p)
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
    from ..backprop.sweep import saliency_methods
    from ..errors import LayerError
    from ..images import load_images

    methods = list(dict.fromkeys(args.method or METHODS))
    if args.class_ is not None and (args.layer != "logits" or args.unit is not None):
        raise LayerError("--class selects a logit; do not combine it with --layer/--unit (use one or the other).")
    model = common.load_model(args)
    x, names = load_images([args.image], size=model.preprocessing.input_size)
    out = common.output_dir(args)
    unit = _class_index(args.class_, model.class_names) if args.class_ is not None else args.unit
    result = saliency_methods(model, x.to(common.device(args)), out, layer=args.layer, unit=unit, at=args.at,
                              methods=methods, top_k=args.top_k, trials=2, seed=args.seed, image=names[0],
                              resume=args.resume, settings=common.sweep_settings(args), executor=common.executor(args),
                              progress=not args.quiet)
    common.finish(args, result, out, summary(result))
    return result


def summary(result: dict) -> list[str]:
    """The printed summary: the target, then selectivity and bottleneck per method."""
    unit, name = result["unit"], result["class_name"]
    what = f"class {unit}" + (f" ({name})" if name else "") if result["layer"] == "logits" \
        else f"{result['layer']} unit {unit} ({result['at']})"
    lines = [f"{result['image']}: {what}, {result['rectifiers']} rectifiers rewritten"]
    lines += [f"  {m:9s} selectivity {result['selectivity'][m]:+.3f}   bottleneck random "
              f"{_score(result['bottleneck'][m], 'random')} constant {_score(result['bottleneck'][m], 'constant')}"
              for m in result["methods"]]
    return lines


def _score(scores: dict, signal: str) -> str:
    """A bottleneck correlation, or 'undefined' where a map had no variation (no number was measured)."""
    value = scores.get(signal)
    return "undefined (a map without variation)" if value is None else f"{value:+.3f}"
