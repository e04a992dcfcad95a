"""``repscope similarity --model A --model B``: minibatch CKA between the main stages of two networks.

Streams crops of the images (the sample photos by default) through both networks once and accumulates
minibatch linear CKA (Nguyen et al. 2021; :class:`repscope.similarity.CKAMatrix`) for every pair of
stages, features flattened per image: memory independent of the number of crops. Writes ``cka.png``
(the heat-map), ``result.json`` (``{"models", "layers_a", "layers_b", "cka": [[...]]}``) and ``config.json``.
One ``--model`` compares a network with itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import io
from ..bounds import OPTIONS
from ..crops import Crops
from ..errors import RepscopeError
from ..layers import features
from ..models import load
from ..similarity import CKAMatrix
from . import common

PLOT_FILE = "cka.png"


def register(subparsers) -> None:
    p = subparsers.add_parser("similarity", help="CKA matrix between the main stages of two networks",
                              description="Minibatch linear CKA (Kornblith et al. 2019; Nguyen et al. 2021) "
                                          "between every main stage of network A and of network B.")
    p.add_argument("--model", action="append", metavar="MODEL",
                   help="network A, then network B (give it twice; once compares A with itself)")
    p.add_argument("--layer-a", action="append", metavar="L", help="layers of A (default: the main stages)")
    p.add_argument("--layer-b", action="append", metavar="L", help="layers of B (default: the main stages)")
    p.add_argument("--images", nargs="+", metavar="SPEC", help="image files, folders or sample:NAME (default: samples)")
    p.add_argument("--crops", type=OPTIONS["--crops"], default=64, help="number of crops (default 64)")
    p.add_argument("--size", type=OPTIONS["--size"], default=129, help="crop side in pixels (default 129)")
    p.add_argument("--batch-size", type=OPTIONS["--batch-size"], default=16, help="crops per minibatch, at least 4 (default 16)")
    common.add_common_arguments(p, model=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    from ..images import NATURAL_SAMPLES, expand_specs
    from .stitch import _stages

    names = args.model or ["efficientnet_lite0"]
    if len(names) > 2:
        raise RepscopeError(f"--model given {len(names)} times; similarity compares two networks. "
                            "Give it at most twice.")
    if args.batch_size < 4 or args.crops < 4:
        raise RepscopeError(f"--batch-size {args.batch_size} / --crops {args.crops}: minibatch CKA needs at least "
                            "4 of each. Use 16 and 64.")
    names = names * 2 if len(names) == 1 else names
    dev = common.device(args)
    model_a, model_b = (load(n, device=dev) for n in names)
    layers_a = args.layer_a or [n for n, _ in _stages(model_a)]
    layers_b = args.layer_b or [n for n, _ in _stages(model_b)]
    out = common.output_dir(args)
    specs = expand_specs(args.images) if args.images else [f"sample:{n}" for n in NATURAL_SAMPLES]
    crops = Crops(specs, args.crops, args.size, seed=args.seed, batch_size=args.batch_size)
    matrix = CKAMatrix(layers_a, layers_b)
    from ..progress import progress

    used = 0
    with torch.no_grad():
        for x, _ in progress(crops, total=-(-len(crops) // crops.batch_size), desc="cka", quiet=args.quiet):
            if len(x) < 4:  # a last batch of fewer than 4 crops has no unbiased HSIC: left out
                continue
            x, used = x.to(dev), used + len(x)
            matrix.update(features(model_a, x, layers_a), features(model_b, x, layers_b))
    values = matrix.value()
    result = {"models": names, "layers_a": layers_a, "layers_b": layers_b, "crops": used,
              "batch_size": args.batch_size, "size": args.size, "cka": values.tolist()}
    plot(values, layers_a, layers_b, names, out / PLOT_FILE)
    lines = [f"{'':<14}" + "".join(f"{b[-9:]:>10}" for b in layers_b)]
    lines += [f"{a:<14}" + "".join(f"{v:>10.3f}" for v in row) for a, row in zip(layers_a, values.tolist())]
    common.finish(args, result, out, lines)
    return result


def plot(values: torch.Tensor, layers_a, layers_b, names, path: Path) -> Path:
    """The CKA matrix as a heat-map (rows: A's stages, columns: B's), values written in the cells."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 0.6 * len(layers_b), 1.0 + 0.5 * len(layers_a)))
    ax = fig.subplots()
    image = ax.imshow(values.numpy(), vmin=0, vmax=1, cmap="magma", origin="lower")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = float(values[i, j])
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v > 0.6 else "white")
    ax.set_xticks(range(len(layers_b)), layers_b, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers_a)), layers_a, fontsize=8)
    ax.set(xlabel=names[1], ylabel=names[0], title="minibatch linear CKA")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
