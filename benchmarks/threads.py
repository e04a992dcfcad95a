"""Thread count under a competing load: a blocks.2 inversion with 1 thread, repscope's default, and all cores.

The competing load is ``--load`` busy-looping processes (default: one per core) started before the
timings and stopped after; the machine's own other jobs add to it. repscope's default
(``repscope.threads.default_threads``: the idle cores, from the 1-minute load average) is resolved
once the competitors have run for ``--warm`` seconds, and printed with the load it saw. Each
setting runs ``--rounds`` times, alternating; the best time of each is compared with one thread.

Usage: PYTHONPATH=src python benchmarks/threads.py [--layer blocks.2] [--iters 20] [--rounds 2] [--load 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import torch

from repscope import load_images, models
from repscope.layers import Representation
from repscope.memory import retain_freed_memory
from repscope.preimage import PreimageConfig, invert
from repscope.threads import default_threads, physical_cores


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def _seconds(phi, x: torch.Tensor, iters: int, threads: int) -> float:
    torch.set_num_threads(threads)
    invert(phi, x, config=PreimageConfig(iters=2))  # warm-up at this thread count
    t = time.perf_counter()
    invert(phi, x, config=PreimageConfig(iters=iters))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="blocks.2")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load", type=int, default=None, help="competing busy processes (default: one per core)")
    ap.add_argument("--warm", type=float, default=0.0, help="seconds the competitors run before the default is resolved")
    args = ap.parse_args()
    retain_freed_memory()
    torch.set_num_interop_threads(1)  # as the repscope command does
    cores = os.cpu_count() or 1
    load = cores if args.load is None else args.load
    model = models.load("efficientnet_lite0")
    phi = Representation(model, args.layer)
    x, _ = load_images(["sample:chelsea"], size=224)
    stop = multiprocessing.Event()
    rivals = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(load)]
    for p in rivals:
        p.start()
    try:
        time.sleep(args.warm)
        chosen = default_threads()
        print(f"{args.layer} inversion, {args.iters} iterations, {cores} cores ({physical_cores()} physical), "
              f"{load} competing busy processes, load average {os.getloadavg()[0]:.1f}: default = {chosen} thread(s)")
        settings = {"1 thread": 1, f"default ({chosen})": chosen, f"all cores ({cores})": cores}
        best = {name: float("inf") for name in settings}
        for _ in range(args.rounds):
            for name, n in settings.items():
                best[name] = min(best[name], _seconds(phi, x, args.iters, n))
    finally:
        stop.set()
        for p in rivals:
            p.join()
    one = best["1 thread"]
    for name, seconds in best.items():
        print(f"   {name:16s} {seconds:7.2f} s   {seconds / one:5.2f}x the time of one thread")


if __name__ == "__main__":
    main()
