"""``repscope equivariance --transform T [--layer L ...] [--images DIR] [--fit ridge|task|both]``: equivariance per layer.

Writes ``result.json`` (one row per layer: error and agreement for each variant), ``config.json`` and
``equivariance.png`` (error and agreement against depth, one line per variant, like the talk's
"vertical flips" figure). ``--fit task`` (or ``both``: the task map starts from the ridge one, so ridge
is always reported) also trains Ŵ through the rest of the network (:mod:`repscope.equivariance_task`)
and reports it as the variant ``task`` ("learned (task)") beside the ridge ``learned``.
"""

from __future__ import annotations

import argparse

from ..bounds import OPTIONS
from ..crops import crop_data
from ..equivariance import VARIANTS, equivariance_layers
from ..equivariance_task import TASK, equivariance_task_layers, task_plot
from ..errors import RangeError, RepscopeError
from ..plots import equivariance_plot
from ..regression import DEFAULT_ALPHAS
from ..stages import stage_layers
from ..transforms import parse_transform
from . import common

#: the default ``--layer`` values (the choice lives in :func:`repscope.stages.stage_layers`)
default_layers = stage_layers

PLOT_FILE = "equivariance.png"
FITS = ("ridge", "task", "both")


def fit_kind(value: str) -> str:
    """``--fit``: the map fitter, ``ridge``, ``task`` or ``both`` (a number names ``--fit-crops``)."""
    if value in FITS:
        return value
    hint = f" (the number of fit crops is --fit-crops {value})" if value.strip().isdigit() else ""
    raise RangeError(f"must be one of {', '.join(FITS)}{hint}, got {value!r}")


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
    p.add_argument("--fit", dest="fit_kind", type=fit_kind, default="ridge", metavar="{ridge,task,both}",
                   help="how Ŵ is fitted: ridge regression (default), or also trained on the task through the rest "
                        "of the network (task, both: reported as 'learned (task)' beside ridge)")
    p.add_argument("--fit-crops", type=OPTIONS["--fit-crops"], default=96, help="crops to fit M_g (default 96)")
    p.add_argument("--test", type=OPTIONS["--test"], default=48, help="number of held-out crops to measure (default 48)")
    p.add_argument("--size", type=OPTIONS["--size"], help="crop side in pixels (default 129 = 64·2+1 for networks, so stride-2 "
                                            "stages stay centred; 128 for HOG, a multiple of the cell)")
    p.add_argument("--kernel", type=OPTIONS["--kernel"], default=1, help="spatial support k of the channel map W (default 1)")
    p.add_argument("--margin", type=OPTIONS["--margin"], default=0, help="border cells left out of the error (default 0)")
    p.add_argument("--batch-size", type=OPTIONS["--batch-size"], default=16, help="crops per batch (default 16)")
    p.add_argument("--no-agreement", action="store_true", help="skip the top-1 agreement through the network")
    p.add_argument("--steps", type=OPTIONS["--steps"], default=200, help="task-training steps (Adam; default 200)")
    p.add_argument("--lr", type=OPTIONS["--lr"], default=1e-4, help="task-training step size (Adam; default 1e-4)")
    common.add_common_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    transform = parse_transform(args.transform)
    model = common.load_model(args)
    layers = args.layer or stage_layers(model)
    is_hog = str(args.model).startswith("hog")
    agreement = not args.no_agreement and not is_hog
    task = args.fit_kind in ("task", "both")
    if task and not agreement:
        raise RepscopeError(f"--fit {args.fit_kind} trains Ŵ through the rest of the network, which "
                            + ("HOG does not have" if is_hog else "--no-agreement skips") + ". Use --fit ridge.")
    size = args.size or (128 if is_hog else 129)
    out = common.output_dir(args)
    fit, test = crop_data(args.images, n_fit=args.fit_crops, n_test=args.test, size=size, seed=args.seed,
                          batch_size=args.batch_size)
    shared = dict(fit=fit, test=test, kernel=args.kernel, margin=args.margin, alphas=DEFAULT_ALPHAS,
                  progress=not args.quiet)
    if task:
        rows = [row for row, _ in equivariance_task_layers(model, transform, layers, steps=args.steps, lr=args.lr,
                                                           seed=args.seed, **shared)]
    else:
        rows = equivariance_layers(model, transform, layers, agreement=agreement, **shared)
    result = {"model": args.model, "transform": transform.name, "fit": args.fit_kind, "kernel": args.kernel,
              "margin": args.margin, "size": size, "fit_images": [str(s) for s in fit.sources],
              "test_images": [str(s) for s in test.sources], "layers": [r.as_dict() for r in rows]}
    if task:
        result.update(steps=args.steps, lr=args.lr)
    plot(rows, out / PLOT_FILE, title=f"{args.model}: {transform.name}")
    common.finish(args, result, out, summary(rows))


def summary(rows) -> list[str]:
    """A text table: one line per layer, errors then agreements; with a task map, its agreement
    (``agr:task``) and the compensation errors of the ridge and task Ŵ (``cmp:ridge``, ``cmp:task``)."""
    head = f"{'layer':<16}{'stride':>7}  " + " ".join(f"{'err:' + v[:5]:>10}" for v in VARIANTS)
    agree = rows and rows[0].agreement is not None
    task = bool(rows) and rows[0].task is not None
    shown = ("uncompensated",) + VARIANTS[1:] + ((TASK,) if task else ())
    if agree:
        head += "  " + " ".join(f"{'agr:' + v[:5]:>10}" for v in shown)
    if task:
        head += "  " + f"{'cmp:ridge':>10} {'cmp:task':>10}"
    lines = [head]
    for r in rows:
        line = f"{r.layer:<16}{r.stride:>7g}  " + " ".join(f"{r.error[v]:>10.4f}" for v in VARIANTS)
        if agree:
            line += "  " + " ".join(f"{r.agreement[v]:>10.3f}" for v in shown)
        if task:
            line += "  " + f"{r.compensation_error['learned']:>10.4f} {r.compensation_error[TASK]:>10.4f}"
        lines.append(line)
        if r.accuracy is not None:
            lines.append(f"{'':<16}accuracy vs labels: " + ", ".join(f"{k} {v:.3f}" for k, v in r.accuracy.items()))
    return lines


def plot(rows, path, title: str = ""):
    """``equivariance.png``: :func:`repscope.plots.equivariance_plot` of every variant, or with a task map
    :func:`repscope.equivariance_task.task_plot` (ridge and task Ŵ side by side)."""
    if rows and rows[0].task is not None:
        return task_plot(rows, path, title=title)
    return equivariance_plot(rows, VARIANTS, path, title=title)
