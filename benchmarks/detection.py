"""Detection cost and accuracy, measured side by side in one run.

    python benchmarks/detection.py                 # R-CNN vs Fast R-CNN seconds per image, 500 and 2000 proposals
    python benchmarks/detection.py --map           # + mAP of every head on the synthetic test split

Timing: the same EfficientNet-Lite0 trunk (up to ``--layer``), one photo (sample:chelsea, 451x300),
``N`` seeded random boxes (the cost does not depend on where they are). R-CNN warps each box to
224x224 and runs the trunk on it (batches of 32), then pools and applies linear scorers; Fast R-CNN
runs the trunk once on the image (shorter side 448) and pools each box for the two-fc head. Both use
untrained heads of the trained shapes: the cost is the same. Proposal generation is not timed.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import repscope
from repscope.detection import data as ddata
from repscope.detection.detector import Detector, DetectorConfig, build_head, evaluate_detector, imagenet_detector
from repscope.detection.rcnn import restrict_to_imagenet
from repscope.detection.train import cache_trunk, train_fast_rcnn, train_rcnn
from repscope.images import load_image
from repscope.layers import Representation
from repscope.memory import retain_freed_memory


def random_boxes(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
    wh = (0.1 + torch.rand(n, 2, generator=g) * 0.3) * torch.tensor([width, height])
    return torch.cat([xy, (xy + wh).minimum(torch.tensor([width, height]))], 1)


def timing(model, layer: str, counts: list[int], repeats: int) -> list[dict]:
    image = load_image("sample:chelsea")
    fmap_channels = Representation(model, layer)(torch.rand(1, 3, 64, 64)).shape[1]
    classes = list(ddata.OBJECTS)
    fast = Detector(model, DetectorConfig("fast-rcnn", model.name, layer, classes, head=dict(
        channels=fmap_channels, num_classes=len(classes), pool="roi", hidden=256)))
    fast.head = build_head(fast.config).eval()
    slow = Detector(model, DetectorConfig("rcnn", model.name, layer, classes, trunk_size=None, head=dict(
        features=fmap_channels * 49, num_classes=len(classes))))
    slow.head = build_head(slow.config).eval()
    rows = []
    for n in counts:
        boxes = random_boxes(n, *image.shape[1:])
        fast.region_scores(image, boxes[:8])  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            fast.region_scores(image, boxes)
        t_fast = (time.perf_counter() - t) / repeats
        t = time.perf_counter()
        slow.region_scores(image, boxes)
        t_rcnn = time.perf_counter() - t
        rows.append({"proposals": n, "rcnn_s": t_rcnn, "fast_rcnn_s": t_fast, "ratio": t_rcnn / t_fast})
        print(f"{n:>6} proposals   R-CNN {t_rcnn:8.2f} s/image   Fast R-CNN {t_fast:6.3f} s/image   "
              f"ratio {t_rcnn / t_fast:6.1f}x", flush=True)
    return rows


def accuracy(model, layer: str, n_train: int, n_test: int, n_rcnn_test: int, iters: int, n_rcnn_train: int,
             rcnn_limit: int) -> dict:
    train, test = ddata.synthetic("train", n=n_train), ddata.synthetic("test", n=n_test)
    rows = {}
    cache = cache_trunk(Representation(model, layer), train, 448, "ss-fast", 200)
    for pool, name in (("roi", "fast-rcnn"), ("spp", "spp")):
        t = time.perf_counter()
        det, _ = train_fast_rcnn(model, layer, train, pool=pool, iters=iters, cache=cache)
        train_s = time.perf_counter() - t
        for reg in (True, False):
            r = evaluate_detector(det, test, box_regression=reg)
            rows[f"{name}{'' if reg else ' (no box reg.)'}"] = {"map": r["map"], "ap": r["ap"], "train_s": train_s,
                                                               "s_per_image": r["seconds_per_image"]}
            print(name, "box reg." if reg else "no box reg.", f"mAP {r['map']:.3f}", flush=True)
    small = ddata.Dataset(test.classes, test.scenes[:n_rcnn_test], test.name)
    t = time.perf_counter()
    det = train_rcnn(model, layer, ddata.Dataset(train.classes, train.scenes[:n_rcnn_train], train.name))
    train_s = time.perf_counter() - t
    det.config.limit = rcnn_limit
    for reg in (True, False):
        r = evaluate_detector(det, small, box_regression=reg)
        rows[f"rcnn{'' if reg else ' (no box reg.)'}"] = {"map": r["map"], "ap": r["ap"], "train_s": train_s,
                                                         "s_per_image": r["seconds_per_image"], "test_images": len(small)}
        print("rcnn", "box reg." if reg else "no box reg.", f"mAP {r['map']:.3f}", flush=True)
    mapped = restrict_to_imagenet(small)
    for method in ("imagenet-spp", "imagenet-rcnn"):
        r = evaluate_detector(imagenet_detector(model, classes=list(mapped.classes), method=method, limit=rcnn_limit),
                              mapped)
        rows[method] = {"map": r["map"], "ap": r["ap"], "s_per_image": r["seconds_per_image"],
                        "test_images": len(mapped), "classes": list(mapped.classes)}
        print(method, f"mAP {r['map']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="blocks.6")
    parser.add_argument("--proposals", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--repeats", type=int, default=3, help="Fast R-CNN repeats (R-CNN runs once)")
    parser.add_argument("--map", action="store_true", help="also train and evaluate every head (minutes)")
    parser.add_argument("--train", type=int, default=80)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--rcnn-test", type=int, default=20, help="test images for the R-CNN and ImageNet rows (slow)")
    parser.add_argument("--rcnn-train", type=int, default=40, help="training images for R-CNN")
    parser.add_argument("--rcnn-proposals", type=int, default=200, help="proposals per image for the R-CNN rows")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    retain_freed_memory()
    torch.manual_seed(0)
    model = repscope.load("efficientnet_lite0")
    print(f"torch threads {torch.get_num_threads()}, layer {args.layer}", flush=True)
    result = {} if args.no_timing else {"timing": timing(model, args.layer, args.proposals, args.repeats)}
    if args.map:
        result["accuracy"] = accuracy(model, args.layer, args.train, args.test, args.rcnn_test, args.iters,
                                      args.rcnn_train, args.rcnn_proposals)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
