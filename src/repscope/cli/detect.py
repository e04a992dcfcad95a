"""``repscope detect``: train, evaluate and run region detectors (R-CNN, SPP, Fast R-CNN).

    repscope detect train --method rcnn|fast-rcnn|spp|wsddn --data synthetic|DIR [--layer L] --out DIR
    repscope detect eval (--head DIR | --imagenet) --data synthetic|DIR [--out DIR]
    repscope detect IMAGE... (--head DIR | --imagenet) [--out DIR]

``train`` writes ``head.safetensors`` + ``config.json`` (the detector) and ``result.json``; ``eval``
writes ``result.json`` (AP per class, mAP, CorLoc), ``pr.png`` and ``config.json``; on images,
``NAME_detections.png`` (labelled boxes), ``boxes.json``, ``result.json`` and ``config.json``.
"""

from __future__ import annotations

import argparse
import math

from .. import io
from ..bounds import positive_int
from ..errors import RepscopeError
from ..images import load_image
from . import common

DEFAULT_LAYER = "blocks.6"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect", help="region detectors: R-CNN, SPP, Fast R-CNN (train / eval / IMAGE...)",
        description="'detect train' trains a head, 'detect eval' measures AP, 'detect IMAGE...' draws detections.")
    p.add_argument("target", nargs="+", metavar="train|eval|IMAGE",
                   help="'train', 'eval', or image files / sample:NAME")
    p.add_argument("--method", choices=("fast-rcnn", "spp", "rcnn", "wsddn"), default="fast-rcnn",
                   help="train: the head (default fast-rcnn; wsddn learns from image labels only)")
    p.add_argument("--streams", type=int, choices=(1, 2), default=2,
                   help="train wsddn: two streams (default) or the classification stream alone")
    p.add_argument("--spatial", action="store_true", help="train wsddn: add the spatial regulariser")
    p.add_argument("--data", default="synthetic", help="train/eval: 'synthetic' (embedded) or a VOC-format folder")
    p.add_argument("--layer", default=DEFAULT_LAYER, help=f"train: trunk layer (default {DEFAULT_LAYER})")
    p.add_argument("--head", metavar="DIR", help="eval/images: a folder written by 'detect train'")
    p.add_argument("--imagenet", action="store_true", help="eval/images: score regions with the ImageNet classifier")
    p.add_argument("--imagenet-method", choices=("spp", "rcnn"), default="spp",
                   help="with --imagenet: pool regions from one trunk map (spp, default) or warp crops (rcnn)")
    p.add_argument("--proposal-method", choices=("grid", "ss-fast", "ss-quality"),
                   help="proposals (default: the head's, else ss-fast)")
    p.add_argument("--proposals", type=positive_int("--proposals", 1, 100_000),
                   help="at most N proposals per image (default: the head's, else 200)")
    p.add_argument("--trunk-size", type=positive_int("--trunk-size", 16, 4096), default=448,
                   help="train: shorter image side for the trunk (default 448)")
    p.add_argument("--iters", type=positive_int("--iters", 1, 1_000_000), default=600,
                   help="train (fast-rcnn/spp): steps (default 600)")
    p.add_argument("--images", type=positive_int("--images", 1, 1_000_000),
                   help="train/eval: use the first N images of the split")
    p.add_argument("--split", help="eval: split to measure (default test); train: split to fit (default train)")
    p.add_argument("--scene-size", type=positive_int("--scene-size", 32, 4096), default=224,
                   help="synthetic scenes' side in pixels (default 224)")
    p.add_argument("--no-box-regression", action="store_true", help="eval/images: keep the proposals' boxes")
    p.add_argument("--top", type=positive_int("--top", 1, 10_000), default=10,
                   help="images: boxes drawn per image (default 10)")
    common.add_common_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    mode = args.target[0]
    if mode in ("train", "eval") and len(args.target) > 1:
        raise RepscopeError(f"'detect {mode}' takes no image arguments (got {' '.join(args.target[1:])}). "
                            "Use --data for the images.")
    {"train": run_train, "eval": run_eval}.get(mode, run_images)(args)


def _data(args, split: str, classes=None):
    from ..detection.data import load_data
    return load_data(args.data, args.split or split, n=args.images, size=args.scene_size, seed=args.seed,
                     classes=classes)


def _detector(args, classes=None):
    from ..detection.detector import Detector, imagenet_detector
    if bool(args.head) == bool(args.imagenet):
        raise RepscopeError("give exactly one of --head DIR (a trained detector) or --imagenet.")
    model = common.load_model(args)
    if args.imagenet:
        sizes = [224, 336, 448, 672] if args.imagenet_method == "spp" else None
        det = imagenet_detector(model, classes=classes, method=f"imagenet-{args.imagenet_method}", trunk_size=sizes,
                                proposals=args.proposal_method or "ss-fast", limit=args.proposals or 200)
    else:
        det = Detector.load(args.head, model)
    if args.proposal_method:
        det.config.proposals = args.proposal_method
    if args.proposals:
        det.config.limit = args.proposals
    return det


def run_train(args: argparse.Namespace) -> None:
    from ..detection.train import train_detector
    out = common.output_dir(args)
    model = common.load_model(args)
    train = _data(args, "train")
    det = train_detector(args.method, model, args.layer, train, trunk_size=args.trunk_size,
                         proposals=args.proposal_method or "ss-fast", limit=args.proposals or 200, iters=args.iters,
                         seed=args.seed, quiet=args.quiet, streams=args.streams, spatial=args.spatial)
    det.save(out)
    result = {"method": args.method, "model": args.model, "layer": args.layer, "data": train.name,
              "images": len(train), "classes": list(train.classes), "run": common.config(args)}
    io.write_json(out / "result.json", result)
    common.finish(args, result, None, [f"trained {args.method} on {len(train)} images of {train.name}; "
                                       f"detector written to {out}/"])


def _clean(value):
    """NaN (a class without ground truth) as null, for JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def run_eval(args: argparse.Namespace) -> None:
    from ..detection.detector import evaluate_detector, head_classes
    from ..detection.plots import plot_pr
    from ..detection.rcnn import IMAGENET_NOTE, restrict_to_imagenet
    out = common.output_dir(args)
    classes = head_classes(args.head) if args.head and args.data != "synthetic" else None
    data = _data(args, "test", classes=classes)
    if args.imagenet:
        data = restrict_to_imagenet(data)
    det = _detector(args, classes=list(data.classes))
    result = evaluate_detector(det, data, box_regression=False if args.no_box_regression else None, quiet=args.quiet)
    plot_pr(result["curves"], data.classes, result["ap"], out / "pr.png",
            title=f"{det.config.method} on {data.name}: mAP {result['map']:.3f}")
    result = _clean({**{k: v for k, v in result.items() if k != "curves"}, "method": det.config.method,
                     "data": data.name, "images": len(data)})
    if args.imagenet:
        result["note"] = IMAGENET_NOTE
    lines = [f"{'class':<14}{'AP(11pt)':>10}{'AP(all)':>10}{'CorLoc':>9}"]
    for name, a, b, c in zip(data.classes, result["ap"], result["ap_all"], result["corloc"]["corloc"]):
        lines.append(f"{name:<14}" + "".join(f"{'-' if v is None else f'{v:.3f}':>{w}}" for v, w in
                                             ((a, 10), (b, 10), (c, 9))))
    lines.append(f"{'mean':<14}{result['map']:>10.3f}{result['map_all']:>10.3f}{result['corloc']['mean']:>9.3f}"
                 f"   ({result['seconds_per_image']:.2f} s/image)")
    common.finish(args, result, out, lines)


def run_images(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..detection.plots import draw_detections
    out = common.output_dir(args)
    images = [(spec, load_image(spec)) for spec in args.target]
    det = _detector(args)
    result, lines = [], []
    for spec, image in images:
        found = det.detect(image, box_regression=False if args.no_box_regression else None)
        rows = found.as_dict(det.config.classes)[:max(args.top, 1) * 10]
        stem = Path(spec.split(":", 1)[-1]).stem
        draw_detections(image, found, det.config.classes, out / f"{stem}_detections.png", top=args.top)
        result.append({"image": spec, "detections": rows})
        lines.append(spec + "".join(f"\n  {r['score']:.3f}  {r['class']}  {r['box']}" for r in rows[:3]))
    io.write_json(out / "boxes.json", result)
    common.finish(args, {"method": det.config.method, "images": result}, out, lines)
