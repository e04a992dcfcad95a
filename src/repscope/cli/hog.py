"""``repscope hog IMAGE [--hog NAME] [--size S] [--cell-px N]``: draw an image's HOG cells as glyphs.

Each cell of the HOG map (:mod:`repscope.hog`) is drawn as oriented strokes, one per orientation
bin, brighter for a larger (clipped, positive) bin value (:func:`repscope.hog.render_glyphs`).
Writes ``hog.png`` (the glyphs, ``cell_px`` pixels per cell), ``grid.png`` (the image resized to
the glyphs' size, then the glyphs) and ``result.json`` (variant, image size, cells, file).
"""

from __future__ import annotations

import argparse

import torch

from ..bounds import OPTIONS, check_tensor_budget
from . import common
from .preimage_common import default_out_help, examples


def _cell_px(text: str) -> int:
    """``--cell-px``: the glyph tile per cell, 3 pixels at least (a stroke needs a centre), 64 at most."""
    from ..bounds import positive_int

    return positive_int("--cell-px", 3, 64)(text)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hog", help="draw an image's HOG cells as oriented glyphs",
        description="Draw the HOG cells of an image as oriented strokes (one per orientation bin).",
        epilog=examples("repscope hog sample:chelsea", "repscope hog photo.jpg --hog hog:dalal-triggs --size 320",
                        "repscope hog sample:astronaut --cell-px 24 --out glyphs"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", metavar="IMAGE", help="one image file or sample:NAME")
    parser.add_argument("--hog", default="hog", metavar="NAME",
                        help="HOG variant as a model name: hog (UoCTTI), hog:dalal-triggs, hog:uoctti,cell=4, ... "
                             "(default hog)")
    parser.add_argument("--size", type=OPTIONS["--size"], default=224,
                        help="resize (shorter side) and centre-crop the image to SIZE pixels (default 224)")
    parser.add_argument("--cell-px", type=_cell_px, default=16, help="pixels per cell in the picture (default 16)")
    common.add_common_arguments(parser, model=False)
    default_out_help(parser, "repscope-results/hog-IMAGE")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    from ..hog import render_glyphs
    from ..hog.api import parse_hog_name
    from ..images import load_images, save_grid, save_image
    from .preimage_common import check_one_image, run_name

    if not (args.hog == "hog" or args.hog.startswith("hog:")):
        from ..errors import ModelError
        raise ModelError(f"--hog {args.hog}: not a HOG name. Use hog, hog:uoctti or hog:dalal-triggs[,cell=N,...].")
    phi = parse_hog_name(args.hog if args.hog != "hog" else "hog:uoctti")
    check_one_image(args.image)
    x, names = load_images([args.image], size=args.size)
    with torch.no_grad():
        features = phi(x.to(common.device(args)))[0].cpu()
    h, w = features.shape[-2:]
    check_tensor_budget((3, h * args.cell_px, w * args.cell_px), torch.float32, "the glyph picture")
    glyphs = render_glyphs(features, phi, cell_px=args.cell_px)
    if args.out is None:
        args.out = run_name("hog", args.image, [])
    out = common.output_dir(args)
    save_image(glyphs, out / "hog.png")
    photo = torch.nn.functional.interpolate(x, size=glyphs.shape[-2:], mode="bilinear", align_corners=False)
    save_grid(torch.stack([photo[0].clamp(0, 1), glyphs]), out / "grid.png", labels=[names[0], args.hog])
    result = {"command": "hog", "image": names[0], "hog": args.hog, "size": args.size,
              "cells": [int(h), int(w)], "channels": int(features.shape[0]), "cell_px": args.cell_px,
              "file": "hog.png"}
    common.finish(args, result, out, [f"{names[0]}: {h}x{w} HOG cells ({features.shape[0]} channels) drawn in "
                                      f"{out / 'hog.png'}"])
    return result
