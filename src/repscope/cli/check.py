"""``repscope check [MODEL]``: the pre-flight check of a model for silent failures."""

from __future__ import annotations

import argparse

from ..checks import check
from . import common
from .models import add_model_argument, named_model


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="pre-flight check of MODEL for silent failures")
    add_model_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    model = named_model(args)
    findings = check(model)
    lines = [str(f) for f in findings] or [f"{model.name}: no problems found"]
    common.finish(args, {"model": model.name, "findings": [f.as_dict() for f in findings]}, None, lines)
