"""``repscope classify IMAGE... [--top K]``: the model's top-K classes for each image."""

from __future__ import annotations

import argparse

import torch

from ..classify import classify
from ..images import load_images
from . import common


def register(subparsers) -> None:
    p = subparsers.add_parser("classify", help="top-K ImageNet classes of images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or sample:NAME")
    p.add_argument("--top", type=int, default=5, help="number of classes per image (default 5)")
    common.add_common_arguments(p, out=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    model = common.load_model(args)
    batch, names = load_images(args.images, size=model.preprocessing.input_size)
    with torch.no_grad():
        tops = classify(model, batch.to(model.device), top=args.top)
    result = [{"image": name, "top": top} for name, top in zip(names, tops)]
    lines = []
    for item in result:
        lines.append(item["image"])
        lines += [f"  {t['index']:>4}  {t['prob']:.3f}  {t['name']}" for t in item["top"]]
    common.finish(args, result, None, lines)
