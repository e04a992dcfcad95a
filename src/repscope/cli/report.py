"""``repscope report RESULTS_DIR... [--out FILE]``: one self-contained HTML page from result folders.

Each folder is what a repscope command wrote (``result.json``, ``config.json``, PNGs); a folder of such
folders (``repscope demo --out DIR``) stands for all of them. Prints the page's path.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="one self-contained HTML page from result folders",
                              description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("folders", nargs="+", metavar="RESULTS_DIR", help="folders written by repscope commands")
    p.add_argument("--out", metavar="FILE", help="the page to write (default: report.html here, or inside a demo folder)")
    p.add_argument("--title", default="repscope report", help="the page's title")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..report import build_report

    path = build_report(args.folders, args.out, title=args.title)
    if not args.quiet:
        print(path)
