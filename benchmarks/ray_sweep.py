"""Throughput of a maximisation sweep on Ray with 1 and 2 workers against the local executor, in one run.

The sweep: ``--items`` units (default 16) of ``--layer`` of EfficientNet-Lite0, one unit per task
(``batch_size=1``), ``--iters`` iterations at ``--size``, every configuration with the same seed and
one torch thread per item, on one local Ray with 2 CPUs:

* ``local``: :class:`repscope.executors.LocalExecutor` in this process;
* ``ray x1``: Ray tasks one at a time (``max_in_flight=1``: one busy worker);
* ``ray x2``: Ray tasks two at a time (two workers, one per core).

The three alternate for ``--rounds`` rounds after a warm-up and the best wall time of each is kept
(the machine is shared: the load average is printed per round). Printed: wall seconds and items/s;
the ratios ``ray x2 / ray x1`` (goal >= 1.7 on 2 cores) and Ray's overhead per item
``(wall(ray x1) - wall(local)) / wall(local)`` (goal <= 5% of an item's time); whether the items'
numbers are equal across configurations; then the arithmetic for a 1,280-channel sweep
(``conv_head``) at the paper's 200 iterations on N machines:
``ceil(1280 / (N * cores / cpus_per_item)) * t_item * (1 + overhead)``.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/ray_sweep.py [--items 16] [--iters 10]
       [--size 128] [--layer blocks.4] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from repscope import models
from repscope.executors import LocalExecutor
from repscope.memory import retain_freed_memory
from repscope.preimage import PreimageConfig
from repscope.preimage.sweeps import maximize_units
from repscope.ray_executor import RayExecutor, ray_session


def sweep(model, args, executor, units, iters) -> tuple[float, dict]:
    """Wall seconds of one sweep of ``units`` into a fresh folder, and its result."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = maximize_units(model, args.layer, units, Path(out), size=(args.size, args.size), batch_size=1,
                                config=PreimageConfig(iters=iters), seed=0, executor=executor)
        return time.perf_counter() - start, result


def _noop(shared, specs):
    """A chunk that computes nothing: what remains is Ray's cost per task."""
    return [None for _ in specs]


def task_overhead(shared, n: int = 64) -> float:
    """Seconds per task of ``n`` no-op tasks one at a time (submit, schedule, fetch ``shared`` from the
    worker's cache, return), after a warm-up: Ray's overhead per item, free of the items' own noise."""
    executor = RayExecutor(cpus_per_item=1, max_in_flight=1)
    list(executor.run(_noop, shared, [[0], [1]]))
    start = time.perf_counter()
    list(executor.run(_noop, shared, [[i] for i in range(n)]))
    return (time.perf_counter() - start) / n


def numbers(result: dict) -> list[float]:
    return [item["activation"] for item in result["items"].values()]


def cluster_arithmetic(t_item200: float, overhead: float, cores: int, channels: int = 1280) -> list[str]:
    """Hours for ``channels`` one-unit items of ``t_item200`` seconds on N machines of ``cores`` cores."""
    lines = []
    for n in (1, 4, 16, 64):
        waves = math.ceil(channels / (n * cores))
        hours = waves * t_item200 * (1 + max(overhead, 0.0)) / 3600
        lines.append(f"  {n:3d} machine(s) x {cores:2d} cores: {waves:4d} waves of {t_item200:5.1f} s = {hours:6.2f} h")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best wall of each is kept")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(1)
    model = models.load("efficientnet_lite0")
    units = list(range(args.items))
    executors = {"local": LocalExecutor(), "ray x1": RayExecutor(cpus_per_item=1, max_in_flight=1),
                 "ray x2": RayExecutor(cpus_per_item=1)}
    walls: dict[str, list[float]] = {name: [] for name in executors}
    results = {}
    with ray_session(num_cpus=2):
        start = time.perf_counter()
        for executor in executors.values():  # warm-up: first calls, Ray workers import torch
            sweep(model, args, executor, units[:2], 1)
        print(f"warm-up (Ray start excluded) {time.perf_counter() - start:.1f} s, not counted")
        per_task = task_overhead(model)
        print(f"Ray per task (no-op work, the model as shared state, one at a time): {per_task * 1000:.1f} ms")
        for r in range(args.rounds):
            for name, executor in executors.items():
                wall, results[name] = sweep(model, args, executor, units, args.iters)
                walls[name].append(wall)
            print(f"round {r + 1}: " + ", ".join(f"{n} {w[-1]:.1f} s" for n, w in walls.items())
                  + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
    best = {name: min(w) for name, w in walls.items()}
    same = all(numbers(results[k]) == numbers(results["local"]) for k in best)
    t_item = best["local"] / args.items
    speedup = best["ray x1"] / best["ray x2"]
    overhead = (best["ray x1"] - best["local"]) / best["local"]
    print(f"\n{args.items}-item maximisation sweep, {args.layer}, {args.size}x{args.size}, {args.iters} iterations, "
          f"one unit per item, 1 thread per item, best of {args.rounds} alternating rounds")
    for name, wall in best.items():
        print(f"  {name:7s} {wall:7.1f} s   {args.items / wall:6.3f} items/s")
    print(f"  ray x2 / ray x1 throughput: {speedup:.2f}x  (goal >= 1.7 on 2 cores)")
    print(f"  ray x1 overhead per item:   {overhead * 100:+.1f}% of an item's {t_item:.2f} s  (goal <= 5%)")
    print(f"  Ray per task, no-op work:   {per_task * 1000:.1f} ms = {per_task / t_item * 100:.2f}% of an item")
    print(f"  same activations in all three: {same}")

    t_item200 = t_item * 200 / args.iters
    print(f"\n1,280 one-unit items at 200 iterations (~{t_item200:.0f} s each at this layer and size here; "
          "scale by conv_head's own item time):")
    print("\n".join(cluster_arithmetic(t_item200, overhead, cores=2) + cluster_arithmetic(t_item200, overhead, cores=32)))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "items": args.items, "iters": args.iters, "size": args.size, "layer": args.layer, "rounds": walls,
            "best_s": best, "task_overhead_s": per_task, "speedup_2_vs_1": speedup, "overhead_per_item": overhead, "item_s": t_item,
            "same_numbers": same}, indent=2))


if __name__ == "__main__":
    main()
