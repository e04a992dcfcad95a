"""Benchmark: fitting M_g streams over images (time linear in N, memory flat), side by side.

For N = 100, 200, 400 crops, each measurement runs in a fresh process (so peak RSS is its own):
  streaming   repscope.equivariance.equivariance_layers (accumulates XᵀX, XᵀY per batch)
  in-memory   the same features collected in memory, then one all-in-memory ridge solve
Time is the fastest of ``--repeats`` runs (the machine may be shared). Peak memory is the growth of
the process's peak RSS over a warm-up run on 8 crops (model, imports and allocator already paid for). Prints the table and the ratios per doubling of N.

Usage: PYTHONPATH=src python benchmarks/equivariance.py [--sizes 100 200 400] [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

LAYERS = ["conv_stem", "blocks.1", "blocks.3"]
TRANSFORM = "vflip"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(n: int, mode: str, model_name: str, size: int, repeats: int) -> dict:
    import torch

    from repscope import models
    from repscope.crops import crop_data
    from repscope.equivariance import equivariance_layers
    from repscope.layers import features
    from repscope.memory import retain_freed_memory
    from repscope.regression import ridge, to_rows
    from repscope.transforms import parse_transform

    torch.set_num_threads(1)
    retain_freed_memory()  # as the repscope command does (repscope.memory)
    model = models.load(model_name)
    g = parse_transform(TRANSFORM)

    def streaming(count: int) -> None:
        fit, test = crop_data(n_fit=count, n_test=8, size=size, seed=0, batch_size=16)
        equivariance_layers(model, g, LAYERS, fit=fit, test=test, agreement=False)

    def in_memory(count: int) -> None:
        fit, _ = crop_data(n_fit=count, n_test=8, size=size, seed=0, batch_size=16)
        xs = {k: [] for k in LAYERS}
        ys = {k: [] for k in LAYERS}
        with torch.no_grad():
            for x, _ in fit:
                fx, fgx = features(model, x, LAYERS), features(model, g(x), LAYERS)
                for k in LAYERS:
                    xs[k].append(to_rows(g.warp(fx[k])[0]))
                    ys[k].append(to_rows(fgx[k]))
            for k in LAYERS:
                ridge(torch.cat(xs[k]), torch.cat(ys[k]), 1.0)

    run = streaming if mode == "streaming" else in_memory
    run(8)  # warm-up: imports, weights, allocator
    base = _rss_mb()
    times = []
    for _ in range(repeats):  # the machine is shared: keep the fastest of a few runs
        start = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    return {"n": n, "mode": mode, "seconds": seconds, "peak_mb": _rss_mb(), "growth_mb": _rss_mb() - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=65, help="crop side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest is kept")
    parser.add_argument("--child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.model, args.size, args.repeats)))
        return
    print(f"model {args.model}, transform {TRANSFORM}, layers {', '.join(LAYERS)}, crops {args.size}px, 1 thread, "
          f"fastest of {args.repeats}; fit over N crops + a fixed held-out pass over 8 crops")
    results = {}
    for mode in ("streaming", "in-memory"):
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--child", str(n), mode, "--model", args.model, "--size", str(args.size),
                   "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[mode, n] = json.loads(out)
    print(f"{'N':>5} | {'streaming s':>11} {'growth MB':>10} {'peak MB':>8} | {'in-memory s':>11} {'growth MB':>10}")
    for n in args.sizes:
        s, m = results["streaming", n], results["in-memory", n]
        print(f"{n:>5} | {s['seconds']:>11.2f} {s['growth_mb']:>10.1f} {s['peak_mb']:>8.0f} | "
              f"{m['seconds']:>11.2f} {m['growth_mb']:>10.1f}")
    print("ratios per doubling of N:")
    for a, b in zip(args.sizes, args.sizes[1:]):
        s_a, s_b = results["streaming", a], results["streaming", b]
        m_a, m_b = results["in-memory", a], results["in-memory", b]
        print(f"  {a:>4} -> {b:<4} streaming time x{s_b['seconds'] / s_a['seconds']:.2f}, "
              f"peak RSS x{s_b['peak_mb'] / s_a['peak_mb']:.2f} (growth {s_a['growth_mb']:.0f} -> "
              f"{s_b['growth_mb']:.0f} MB); in-memory growth {m_a['growth_mb']:.0f} -> {m_b['growth_mb']:.0f} MB")


if __name__ == "__main__":
    main()
