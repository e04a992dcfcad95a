"""``repscope demo [--out DIR] [--quick] [--resume]``: the talk in one command and one page.

Runs the talk's storyline on the embedded EfficientNet-Lite0 (Lite1/Lite2 to compare networks, HOG
for the hand-crafted examples, a random-weight VGG for DeConvNet's switches) through repscope's own
commands into subfolders of DIR, then writes DIR/report.html and prints its path.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the talk's figures in one HTML page (report.html)",
                              description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--out", metavar="DIR", default="repscope-demo", help="output folder (default ./repscope-demo)")
    p.add_argument("--quick", action="store_true", help="fewer iterations and photos, the same sections (~2 min)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted demo; finished stages are kept")
    p.add_argument("--overwrite", action="store_true", help="redo the demo in an existing, non-empty --out")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--quiet", action="store_true", help="print only the report's path")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..report.demo import run_demo

    print(run_demo(args.out, quick=args.quick, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet,
                   device=args.device))
