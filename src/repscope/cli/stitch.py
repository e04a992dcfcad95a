"""``repscope stitch --from MODEL:LAYER --to MODEL:LAYER``: is Φ_B ≈ E Φ_A? (Lenc & Vedaldi's Franken-network)

``--layers matched`` with ``--from MODEL --to MODEL`` sweeps depth-matched stage pairs (same stride, closest
relative depth) and draws ``stitch.png`` (agreement of the naive / ridge / task stitches and CKA against
depth). Each finished pair is recorded in ``result.json`` at once (``--resume`` skips it); ``config.json``
beside it. ``--json`` prints ``{"pairs": [{"from", "to", "reference", "naive", "ridge", "task", "cka"}, ...]}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


from .. import io
from ..bounds import OPTIONS
from ..crops import crop_data
from ..errors import LayerError, ModelError, RepscopeError
from ..layers import LOGITS, get_module
from ..models import Model, load
from ..stitching import FITS, stitch
from ..sweep import SweepRecord
from . import common

PLOT_FILE = "stitch.png"
_FAMILIES = ("torchvision", "timm", "hog")


def register(subparsers) -> None:
    p = subparsers.add_parser("stitch", help="stitch network A into network B and measure the equivalence",
                              description="Fit E with Φ_B(x) ≈ E Φ_A(x) (naive, ridge regression, task-trained "
                                          "through the rest of B) and report top-1 agreement with B, held-out "
                                          "error and CKA (Lenc & Vedaldi).")
    p.add_argument("--from", dest="source", required=True, metavar="MODEL:LAYER",
                   help="network A and its layer (efficientnet_lite0:blocks.3); MODEL alone with --layers matched")
    p.add_argument("--to", dest="target", required=True, metavar="MODEL:LAYER", help="network B and its layer")
    p.add_argument("--layers", choices=["matched"], help="sweep depth-matched stage pairs of the two models")
    p.add_argument("--fit", dest="fit_kind", choices=FITS, default="both", help="ridge, task or both (default both)")
    p.add_argument("--steps", type=OPTIONS["--steps"], default=200, help="task-training steps (Adam; default 200)")
    p.add_argument("--lr", type=OPTIONS["--lr"], default=1e-4, help="task-training step size (Adam; default 1e-4)")
    p.add_argument("--kernel", type=OPTIONS["--kernel"], default=1, help="spatial support k of E (odd; default 1)")
    p.add_argument("--images", nargs="+", metavar="SPEC",
                   help="image files, folders (a folder of ImageNet class subfolders gives labels) or sample:NAME")
    p.add_argument("--fit-crops", type=OPTIONS["--fit-crops"], default=96, help="crops to fit E (default 96)")
    p.add_argument("--test-crops", type=OPTIONS["--test-crops"], default=48, help="held-out crops to measure (default 48)")
    p.add_argument("--size", type=OPTIONS["--size"], default=129, help="crop side in pixels (default 129)")
    p.add_argument("--batch-size", type=OPTIONS["--batch-size"], default=16, help="crops per batch (default 16)")
    p.add_argument("--random-init", choices=["from", "to"], help="give network A ('from') or B ('to') random weights")
    common.add_common_arguments(p, model=False)
    common.add_resume_argument(p)
    p.set_defaults(run=run)


def parse_spec(spec: str, option: str, need_layer: bool, random_init: bool = False,
               device=None, seed: int = 0) -> tuple[Model, str, str]:
    """``MODEL:LAYER`` → (model, model name, layer); HOG needs no layer (its output, ``logits``).

    Random weights (``random_init``) are drawn with ``seed`` in a fork of torch's global generator,
    so the caller's random state is left as it was.
    """
    name, layer = spec, None
    if ":" in spec:
        head, tail = spec.rsplit(":", 1)
        if head not in _FAMILIES and not (tail and "=" in tail) and not (head.startswith("hog") and "," in tail):
            name, layer = head, tail
    if name.startswith("hog"):
        layer = layer or LOGITS
    if need_layer and not layer:
        raise RepscopeError(f"{option} '{spec}' names no layer. Use {option} MODEL:LAYER (e.g. "
                            "efficientnet_lite0:blocks.3), or --layers matched to sweep stages.")
    if not need_layer and layer and not name.startswith("hog"):
        raise RepscopeError(f"{option} '{spec}' names a layer, but --layers matched picks them. Give {option} MODEL.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = load(name, device=device, random_init=random_init)
    if layer and layer != LOGITS:
        get_module(model, layer)
    return model, name, layer or ""


def matched_layers(model_a: Model, model_b: Model) -> list[tuple[str, str]]:
    """Depth-matched pairs of main stages: for each stage of A, B's stage of equal stride closest in relative depth."""
    return [(a, b) for a, b, _ in _matched(model_a, model_b)]


def _matched(model_a: Model, model_b: Model) -> list[tuple[str, str, tuple[int, int]]]:
    """:func:`matched_layers` with the two strides of each pair."""
    sa, sb = _stages(model_a), _stages(model_b)
    if not sa or not sb:
        raise LayerError("no spatial main stages to match. Name the layers with MODEL:LAYER instead.")
    pairs = []
    for i, (name, stride) in enumerate(sa):
        depth = i / max(len(sa) - 1, 1)
        same = [(j, n) for j, (n, s) in enumerate(sb) if s == stride] or list(enumerate(n for n, _ in sb))
        j, match = min(same, key=lambda jn: abs(jn[0] / max(len(sb) - 1, 1) - depth))
        pairs.append((name, match, (stride, sb[j][1])))
    return pairs


def _stages(model: Model) -> list[tuple[str, int]]:
    """The main stages (as ``repscope equivariance`` picks them) that give feature maps, without
    normalisation, activation or pooling layers: ``[(name, stride)]``."""
    from ..layer_info import describe
    from ..stages import stage_layers

    names = stage_layers(model)
    rows = {r.name: r for r in describe(model, only=names, receptive_fields=False)}
    skip = ("Norm", "Act", "ReLU", "Pool", "Dropout", "Identity")
    return [(n, rows[n].stride) for n in names
            if n in rows and len(rows[n].shape) == 3 and not any(k in rows[n].type for k in skip)]


def run(args: argparse.Namespace) -> dict:
    matched = args.layers == "matched"
    dev = common.device(args)
    model_a, name_a, layer_a = parse_spec(args.source, "--from", not matched, args.random_init == "from", dev, args.seed)
    model_b, name_b, layer_b = parse_spec(args.target, "--to", not matched, args.random_init == "to", dev, args.seed)
    if name_b.startswith("hog"):
        raise ModelError(f"--to '{name_b}' is not a classifier; stitching measures agreement with B's classes. "
                         "Use a classification network for --to.")
    pairs = _matched(model_a, model_b) if matched else [(layer_a, layer_b, None)]
    out = common.output_dir(args)
    fit, test = crop_data(args.images, n_fit=args.fit_crops, n_test=args.test_crops, size=args.size,
                          seed=args.seed, batch_size=args.batch_size)
    settings = {k: getattr(args, k) for k in ("source", "target", "layers", "fit_kind", "steps", "lr", "kernel",
                                              "images", "fit_crops", "test_crops", "size", "batch_size",
                                              "random_init", "seed")}
    record = SweepRecord(out, settings, resume=args.resume)
    for la, lb, strides in pairs:
        key = f"{name_a}:{la}->{name_b}:{lb}"
        if record.done(key):
            continue
        row = stitch(model_a, la, model_b, lb, fit=fit, test=test, kernel=args.kernel, fit_kind=args.fit_kind,
                     steps=args.steps, lr=args.lr, seed=args.seed, names=(name_a, name_b), strides=strides,
                     progress=not args.quiet)
        record.add(key, row.as_dict())
    rows = [record.items[f"{name_a}:{la}->{name_b}:{lb}"] for la, lb, _ in pairs]
    if len(rows) > 1:
        plot(rows, out / PLOT_FILE, title=f"{name_a} → {name_b}")
    result = record.finish(pairs=rows, fit_images=[str(s) for s in fit.sources],
                           test_images=[str(s) for s in test.sources])
    common.finish(args, result, out, summary(rows))
    return result


def summary(rows: list[dict]) -> list[str]:
    """One line per pair: agreement of each stitch, ridge error and CKA."""
    lines = [f"{'from':<28}{'to':<28}{'naive':>7}{'ridge':>7}{'task':>7}{'err':>8}{'CKA':>7}{'dCKA':>7}"]
    for r in rows:
        task = f"{r['task']['agreement']:>7.3f}" if r.get("task") else f"{'-':>7}"
        lines.append(f"{r['from']:<28}{r['to']:<28}{r['naive']['agreement']:>7.3f}{r['ridge']['agreement']:>7.3f}"
                     f"{task}{r['ridge']['error']:>8.3f}{r['cka']['linear']:>7.3f}{r['cka']['debiased']:>7.3f}")
        if "accuracy" in r["reference"]:
            acc = {v: r[v]["accuracy"] for v in ("naive", "ridge", "task") if r.get(v)}
            lines.append(f"{'':<28}accuracy vs labels: B {r['reference']['accuracy']:.3f}, "
                         + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    return lines


def _pair_label(row: dict) -> str:
    a, b = row["from"].rsplit(":", 1)[1], row["to"].rsplit(":", 1)[1]
    return a if a == b else f"{a}→{b}"


def plot(rows: list[dict], path: Path, title: str = "") -> Path:
    """Agreement (left) and CKA (right) against depth, one line per stitch; written atomically."""
    from matplotlib.figure import Figure

    depth = list(range(len(rows)))
    fig = Figure(figsize=(11, 4))
    ax, ax2 = fig.subplots(1, 2)
    for v in ("naive", "ridge", "task"):
        if all(r.get(v) for r in rows):
            ax.plot(depth, [r[v]["agreement"] for r in rows], marker="o", label=v)
    ax.set(ylabel="top-1 agreement with B", title="stitched network", ylim=(-0.02, 1.02))
    for k in ("linear", "debiased"):
        ax2.plot(depth, [r["cka"][k] for r in rows], marker="o", label=f"CKA ({k})")
    ax2.plot(depth, [1 - r["ridge"]["error"] for r in rows], marker="s", ls="--", label="1 − ridge error")
    ax2.set(ylabel="similarity of Φ_A and Φ_B", title="similarity", ylim=(-0.05, 1.05))
    for a in (ax, ax2):
        a.set_xticks(depth)
        a.set_xticklabels([_pair_label(r) for r in rows],
                          rotation=45, ha="right", fontsize=8)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
