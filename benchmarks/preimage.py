"""Pre-image engine cost, measured side by side in one run (EfficientNet-Lite0, CPU by default).

1. engine iteration / bare forward+backward of the same truncated network at the same batch size
   (the goal: <= 1.15): the best time of each over alternating rounds, and each round's ratio;
2. cost of a blocks.0 inversion iteration vs a full-network (logits) one (truncation pays);
3. throughput at batch 1, 8, 32: image-iterations per second and 200-iteration pre-images per second;
4. with --breakdown: where an engine iteration's time goes (``optimise(..., time_sections=True)``)
   next to the bare forward and backward, per ratio layer at batch 1 and 8.

Usage: PYTHONPATH=src python benchmarks/preimage.py [--layer blocks.3] [--ratio-layers blocks.0,blocks.1,...]
       [--iters 20] [--rounds 3] [--threads 1] [--size 224] [--device cpu|cuda] [--breakdown]

On CUDA every timing synchronises the device first and last (the engine's NaN check already waits
for each iteration's energy).
"""

from __future__ import annotations

import argparse
import time

import torch

from repscope import models
from repscope.layers import Representation
from repscope.memory import retain_freed_memory
from repscope.preimage import Invert, PreimageConfig, optimise


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def bare_step(phi, x: torch.Tensor, iters: int) -> float:
    """Seconds per forward+backward of Φ (loss = sum of squares), after one warm-up."""
    def once():
        xi = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(phi(xi).pow(2).sum(), xi)
        return g
    once()
    _sync(x)
    t = time.perf_counter()
    for _ in range(iters):
        once()
    _sync(x)
    return (time.perf_counter() - t) / iters


def _inversion(phi, x: torch.Tensor, iters: int, time_sections: bool = False):
    """An ``iters``-iteration inversion of x by the engine, after a one-iteration warm-up run."""
    with torch.no_grad():
        target = phi(x)
    optimise(phi, Invert(target), size=tuple(x.shape[-2:]), batch=x.shape[0], config=PreimageConfig(iters=1))
    _sync(x)
    return optimise(phi, Invert(target), size=tuple(x.shape[-2:]), batch=x.shape[0],
                    config=PreimageConfig(iters=iters), time_sections=time_sections)


def engine_step(phi, x: torch.Tensor, iters: int) -> float:
    """Seconds per engine iteration (inversion of x), after a one-iteration warm-up run."""
    return _inversion(phi, x, iters).seconds / iters


def bare_parts(phi, x: torch.Tensor, iters: int) -> tuple[float, float]:
    """Seconds per forward (with the loss) and per backward of Φ, after one warm-up."""
    forward = backward = 0.0
    for i in range(iters + 1):
        xi = x.detach().requires_grad_(True)
        _sync(x)
        t0 = time.perf_counter()
        loss = phi(xi).pow(2).sum()
        _sync(x)
        t1 = time.perf_counter()
        torch.autograd.grad(loss, xi)
        _sync(x)
        if i:  # the first pass warms up
            forward, backward = forward + t1 - t0, backward + time.perf_counter() - t1
    return forward / iters, backward / iters


def engine_sections(phi, x: torch.Tensor, iters: int) -> dict[str, float]:
    """Seconds per engine iteration in each section of the loop (inversion of x), after a warm-up run."""
    sections = _inversion(phi, x, iters, time_sections=True).section_seconds
    return {name: seconds / iters for name, seconds in sections.items()}


def breakdown(model, layers: list[str], size: int, iters: int) -> None:
    """Print, per layer and batch, the bare forward/backward and the engine's sections in ms per iteration."""
    dev = model.device
    print("\n4. where an engine iteration goes (ms per iteration; the network runs inside "
          "'forward + objective' and 'backward')")
    for layer in layers:
        phi = Representation(model, layer)
        for b in (1, 8):
            x = torch.rand(b, 3, size, size, device=dev)
            forward, backward = bare_parts(phi, x, iters)
            sections = engine_sections(phi, x, iters)
            added = sum(sections.values()) - forward - backward
            print(f"   {layer} batch {b}: bare forward {forward * 1e3:.2f} + backward {backward * 1e3:.2f}; "
                  f"engine {sum(sections.values()) * 1e3:.2f} (+{added * 1e3:.2f})")
            print("      " + ", ".join(f"{name} {sec * 1e3:.2f}" for name, sec in sections.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="blocks.3", help="layer of the throughput table")
    ap.add_argument("--ratio-layers", default="blocks.0,blocks.1,blocks.2,blocks.3,blocks.6",
                    help="comma-separated layers of the engine/bare table")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per entry and round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating bare/engine rounds; the best time of each is compared")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each part of an engine iteration next to the bare forward and backward")
    args = ap.parse_args()
    retained = retain_freed_memory()  # as the repscope command does (repscope.memory)
    print(f"allocator: freed memory {'retained (glibc)' if retained else 'returned to the system'}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = models.load("efficientnet_lite0", device=args.device)
    dev = model.device
    s = args.size
    print(f"efficientnet_lite0 on {dev}, {s}x{s}, {args.threads} thread(s), {args.iters} timed iterations per entry")

    print("\n1. engine iteration vs bare forward+backward (same truncated network, same batch)")
    for layer in args.ratio_layers.split(","):
        phi = Representation(model, layer)
        for b in (1, 8):
            x = torch.rand(b, 3, s, s, device=dev)
            pairs = [(bare_step(phi, x, args.iters), engine_step(phi, x, args.iters)) for _ in range(args.rounds)]
            ratios = sorted(eng / bare for bare, eng in pairs)
            bare, eng = (min(v) for v in zip(*pairs))
            print(f"   {layer:9s} batch {b:2d}: bare {bare * 1e3:8.1f} ms  engine {eng * 1e3:8.1f} ms  "
                  f"best/best {eng / bare:5.2f}  (per round {ratios[0]:.2f}-{ratios[-1]:.2f}; goal <= 1.15)")

    print("\n2. truncation: blocks.0 vs full network (logits), engine iteration, batch 1")
    x = torch.rand(1, 3, s, s, device=dev)
    t0 = engine_step(Representation(model, "blocks.0"), x, args.iters)
    tf = engine_step(Representation(model, "logits"), x, args.iters)
    print(f"   blocks.0 {t0 * 1e3:.1f} ms  logits {tf * 1e3:.1f} ms  full/blocks.0 = {tf / t0:.1f}x")

    print(f"\n3. throughput, {args.layer} inversion")
    phi = Representation(model, args.layer)
    for b in (1, 8, 32):
        t = engine_step(phi, torch.rand(b, 3, s, s, device=dev), max(2, args.iters // 2))
        print(f"   batch {b:2d}: {t * 1e3:8.1f} ms/iter  {b / t:7.1f} image-iterations/s  "
              f"{b / (200 * t):6.3f} pre-images/s at 200 iterations")

    if args.breakdown:
        breakdown(model, args.ratio_layers.split(","), s, args.iters)


if __name__ == "__main__":
    main()
