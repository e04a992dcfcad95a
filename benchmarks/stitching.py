"""Benchmark: stitching and CKA stream over images, and a task step costs one forward+backward.

Three measurements, printed as ratios in one run:
  ridge   repscope.stitching.stitch(fit_kind="ridge") on N = 64, 128, 256 fit crops (lite0 blocks.3 →
          lite1 blocks.3, 65 px, a fixed 8-crop held-out pass): time per doubling of N (goal ≈ 2) and
          growth of peak RSS (goal flat), each N in a fresh process (its peak RSS is its own);
  cka     repscope.similarity.MinibatchCKA over N = 256, 512, 1024 feature rows of width 20,000
          (batches of 32) against repscope.similarity.linear_cka on the rows held in memory: growth of
          peak RSS per doubling (goal flat for the stream);
  task    one step of repscope.training.train_map (forward, backward, Adam) against a bare
          forward+backward of the same stitched network on the same batch (goal ≤ 1.2), alternating
          rounds, the median of each (the machine may be shared).

Usage: PYTHONPATH=src python benchmarks/stitching.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

PAIR = ("efficientnet_lite0", "blocks.3", "efficientnet_lite1", "blocks.3")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_ridge(n: int) -> dict:
    from repscope import models
    from repscope.crops import crop_data
    from repscope.stitching import stitch

    a, b = models.load(PAIR[0]), models.load(PAIR[2])

    def run(count: int) -> None:
        fit, test = crop_data(n_fit=count, n_test=8, size=65, seed=0, batch_size=16)
        stitch(a, PAIR[1], b, PAIR[3], fit=fit, test=test, fit_kind="ridge", strides=(16.0, 16.0))

    run(16)  # warm-up: imports, weights, allocator
    base = _rss_mb()
    start = time.perf_counter()
    run(n)
    return {"seconds": time.perf_counter() - start, "growth_mb": _rss_mb() - base, "peak_mb": _rss_mb()}


def child_cka(n: int, mode: str) -> dict:
    import torch

    from repscope.similarity import MinibatchCKA, linear_cka

    def batches(count: int):
        g = torch.Generator().manual_seed(0)
        for _ in range(count // 32):
            x = torch.randn(32, 20_000, generator=g)
            yield x, x[:, :10_000] * 2 + torch.randn(32, 10_000, generator=g)

    def run(count: int) -> float:
        if mode == "stream":
            acc = MinibatchCKA()
            for x, y in batches(count):
                acc.update(x, y)
            return acc.value()
        xs, ys = zip(*batches(count))
        return linear_cka(torch.cat(xs), torch.cat(ys), debiased=True)

    run(64)
    base = _rss_mb()
    start = time.perf_counter()
    run(n)
    return {"seconds": time.perf_counter() - start, "growth_mb": _rss_mb() - base}


def task_ratio(rounds: int, steps: int) -> tuple[float, float, float]:
    """Median seconds of a train_map step and of a bare forward+backward, and their ratio."""
    import torch

    from repscope import models
    from repscope.crops import crop_data
    from repscope.layers import features
    from repscope.stitching import Stitch, StitchedNetwork
    from repscope.training import frozen_parameters, task_loss, train_map

    a, b = models.load(PAIR[0]), models.load(PAIR[2])
    fit, _ = crop_data(n_fit=32, n_test=8, size=129, seed=0, batch_size=16)
    x = next(iter(fit))[0]
    with torch.no_grad():
        target = b(x)
        c_a = features(a, x[:1], [PAIR[1]])[PAIR[1]].shape[1]
        c_b = features(b, x[:1], [PAIR[3]])[PAIR[3]].shape[1]
    net = StitchedNetwork(a, PAIR[1], b, PAIR[3], Stitch(c_a, c_b))
    batches = [(x, target)]

    def student(xb):
        with torch.no_grad():
            fa = net.features_a(xb)
        return net.head(xb, fa)

    def bare() -> float:
        with frozen_parameters(a.module, b.module):
            start = time.perf_counter()
            task_loss(net(x), target).backward()
            net.stitch.zero_grad(set_to_none=True)
            return time.perf_counter() - start

    trained, plain = [], []
    bare()  # warm-up
    for _ in range(rounds):
        r = train_map(net.stitch, student, batches, batches, frozen=[a.module, b.module], steps=steps,
                      eval_every=10 ** 6, patience=10 ** 6)
        trained += r.step_seconds[1:]  # the first step of a round allocates Adam's state
        plain += [bare() for _ in range(steps - 1)]
    return statistics.median(trained), statistics.median(plain), statistics.median(trained) / statistics.median(plain)


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    from repscope.memory import retain_freed_memory

    torch.set_num_threads(1)
    retain_freed_memory()
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        print(json.dumps(child_ridge(n) if kind == "ridge" else child_cka(n, args.child[2])))
        return
    ridge_sizes = [32, 64, 128] if args.quick else [64, 128, 256]
    ridge = {n: _child(["ridge", str(n)]) for n in ridge_sizes}
    print(f"ridge stitch fit, {PAIR[0]}:{PAIR[1]} -> {PAIR[2]}:{PAIR[3]}, 65 px crops, one thread")
    for n0, n1 in zip(ridge_sizes, ridge_sizes[1:]):
        r0, r1 = ridge[n0], ridge[n1]
        print(f"  {n0:>4} -> {n1:<4} time x{r1['seconds'] / r0['seconds']:.2f} ({r0['seconds']:.1f} -> "
              f"{r1['seconds']:.1f} s), peak RSS x{r1['peak_mb'] / r0['peak_mb']:.2f} "
              f"(growth {r0['growth_mb']:.0f} -> {r1['growth_mb']:.0f} MB)")
    cka_sizes = [256, 512] if args.quick else [256, 512, 1024]
    print("CKA over N rows of width 20,000 (and 10,000): peak RSS growth, minibatch stream vs in memory")
    cka = {(m, n): _child(["cka", str(n), m]) for m in ("stream", "memory") for n in cka_sizes}
    for n in cka_sizes:
        print(f"  N {n:>5}: stream {cka['stream', n]['growth_mb']:>6.0f} MB ({cka['stream', n]['seconds']:.2f} s), "
              f"in memory {cka['memory', n]['growth_mb']:>6.0f} MB ({cka['memory', n]['seconds']:.2f} s)")
    step, plain, ratio = task_ratio(rounds=2 if args.quick else 4, steps=6 if args.quick else 10)
    print(f"task step / bare forward+backward of the stitched network (batch 16, 129 px): "
          f"{step * 1e3:.0f} / {plain * 1e3:.0f} ms = {ratio:.2f}  (goal <= 1.2)")


if __name__ == "__main__":
    main()
