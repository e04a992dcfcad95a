"""``repscope equivariance --transform T [--layer L ...] [--images DIR]``: equivariance per layer.

Writes ``result.json`` (one row per layer: error and agreement for each variant), ``config.json`` and
``equivariance.png`` (error and agreement against depth, one line per variant, like the talk's
"vertical flips" figure).
"""

from __future__ import annotations

import argparse

from ..bounds import OPTIONS
from ..crops import crop_data
from ..equivariance import VARIANTS, equivariance_layers
from ..plots import equivariance_plot
from ..regression import DEFAULT_ALPHAS
from ..stages import stage_layers
from ..transforms import parse_transform
from . import common

#: the default ``--layer`` values (the choice lives in :func:`repscope.stages.stage_layers`)
default_layers = stage_layers

PLOT_FILE = "equivariance.png"


def register(subparsers) -> None:
    p = subparsers.add_parser("equivariance", help="equivariance / invariance of layers to an image transform",
                              description="Fit M_g with Φ(gx) ≈ g'(W Φ(x)) per layer (Lenc & Vedaldi) and report "
                                          "held-out error and top-1 agreement for the variants "
                                          + ", ".join(VARIANTS) + ".")
    p.add_argument("--transform", required=True, metavar="T",
                   help="hflip, vflip, rot90, rot180, rot:DEG (rot45), scale:S, shift:DX,DY; compose with '+'")
    p.add_argument("--layer", action="append", metavar="L", help="layer name (repeatable; default: the main stages)")
    p.add_argument("--images", nargs="+", metavar="SPEC",
                   help="image files, folders or sample:NAME to crop from (default: the sample photos)")
    p.add_argument("--fit", type=OPTIONS["--fit"], default=96, help="number of crops to fit M_g (default 96)")
    p.add_argument("--test", type=OPTIONS["--test"], default=48, help="number of held-out crops to measure (default 48)")
    p.add_argument("--size", type=OPTIONS["--size"], help="crop side in pixels (default 129 = 64·2+1 for networks, so stride-2 "
                                            "stages stay centred; 128 for HOG, a multiple of the cell)")
    p.add_argument("--kernel", type=OPTIONS["--kernel"], default=1, help="spatial support k of the channel map W (default 1)")
    p.add_argument("--margin", type=OPTIONS["--margin"], default=0, help="border cells left out of the error (default 0)")
    p.add_argument("--batch-size", type=OPTIONS["--batch-size"], default=16, help="crops per batch (default 16)")
    p.add_argument("--no-agreement", action="store_true", help="skip the top-1 agreement through the network")
    common.add_common_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    transform = parse_transform(args.transform)
    model = common.load_model(args)
    layers = args.layer or stage_layers(model)
    is_hog = str(args.model).startswith("hog")
    agreement = not args.no_agreement and not is_hog
    size = args.size or (128 if is_hog else 129)
    out = common.output_dir(args)
    fit, test = crop_data(args.images, n_fit=args.fit, n_test=args.test, size=size, seed=args.seed,
                          batch_size=args.batch_size)
    rows = equivariance_layers(model, transform, layers, fit=fit, test=test, kernel=args.kernel,
                               margin=args.margin, agreement=agreement, alphas=DEFAULT_ALPHAS,
                               progress=not args.quiet)
    result = {"model": args.model, "transform": transform.name, "kernel": args.kernel, "margin": args.margin,
              "size": size, "fit_images": [str(s) for s in fit.sources],
              "test_images": [str(s) for s in test.sources], "layers": [r.as_dict() for r in rows]}
    plot(rows, out / PLOT_FILE, title=f"{args.model}: {transform.name}")
    common.finish(args, result, out, summary(rows))


def summary(rows) -> list[str]:
    """A text table: one line per layer, errors then agreements."""
    head = f"{'layer':<16}{'stride':>7}  " + " ".join(f"{'err:' + v[:5]:>10}" for v in VARIANTS)
    agree = rows and rows[0].agreement is not None
    if agree:
        head += "  " + " ".join(f"{'agr:' + v[:5]:>10}" for v in ("uncompensated",) + VARIANTS[1:])
    lines = [head]
    for r in rows:
        line = f"{r.layer:<16}{r.stride:>7g}  " + " ".join(f"{r.error[v]:>10.4f}" for v in VARIANTS)
        if agree:
            line += "  " + " ".join(f"{r.agreement[v]:>10.3f}" for v in ("uncompensated",) + VARIANTS[1:])
        lines.append(line)
        if r.accuracy is not None:
            lines.append(f"{'':<16}accuracy vs labels: " + ", ".join(f"{k} {v:.3f}" for k, v in r.accuracy.items()))
    return lines


def plot(rows, path, title: str = ""):
    """``equivariance.png``: :func:`repscope.plots.equivariance_plot` of every variant."""
    return equivariance_plot(rows, VARIANTS, path, title=title)
