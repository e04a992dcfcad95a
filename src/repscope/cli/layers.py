"""``repscope layers [MODEL]``: every addressable layer, with its output shape, stride and receptive field."""

from __future__ import annotations

import argparse

from ..layer_info import describe
from . import common
from .models import add_model_argument, named_model


def register(subparsers) -> None:
    p = subparsers.add_parser("layers", help="list every addressable layer of MODEL")
    add_model_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    model = named_model(args)
    rows = [r.as_dict() for r in describe(model)]
    lines = [f"{'layer':<32} {'type':<22} {'output shape':<18} {'stride':>6} {'rf':>5}"]
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        lines.append(f"{r['name']:<32} {r['type']:<22} {shape:<18} {r['stride'] or '-':>6} "
                     f"{r['receptive_field'] or '-':>5}")
    common.finish(args, {"model": model.name, "input_size": model.preprocessing.input_size, "layers": rows},
                  None, lines)
