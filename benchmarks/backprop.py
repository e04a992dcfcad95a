"""Benchmark: cost of repscope's guided backprop vs a plain input gradient and vs Captum.

Measured side by side in one run (interleaved repetitions, best of N) on EfficientNet-Lite0 and
torchvision resnet18 (random init; the weights do not change the cost), batch 1 and 16, 224².
On the CPU the clock is the process CPU time with one thread by default (robust to other processes
on a shared machine; ``--clock wall --threads 0`` for wall time with torch's default threads); on
CUDA it is wall time with synchronisation. The column ``noise`` is plain/plain (a second, identical
baseline timed in the same loop): ratios closer to 1 than that are within the measurement noise.

    repscope guided / plain autograd input gradient   goal <= 1.1
    repscope guided / Captum GuidedBackprop (resnet18) goal <= 1.0

Run:  PYTHONPATH=src python benchmarks/backprop.py [--device cpu|cuda] [--reps N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from repscope.memory import retain_freed_memory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_gradient(model, x: torch.Tensor, cls: int) -> torch.Tensor:
    """The baseline: one forward + backward of the class logit to the images in [0, 1]."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, cls].sum(), x)
    return g


def time_side_by_side(fns: dict, reps: int, device: torch.device, clock=time.perf_counter) -> dict[str, float]:
    """Best (minimum) seconds per call of each function; interleaved, in a rotating order, so drifts hit all alike."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate: no slot favoured
            fn = fns[name]
            _sync(device)
            t = clock()
            fn()
            _sync(device)
            times[name].append(clock() - t)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="CPU only: process time or wall")
    args = parser.parse_args()
    retained = retain_freed_memory()  # as the repscope command does (repscope.memory)
    print(f"allocator: freed memory {'retained (glibc)' if retained else 'returned to the system'}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    import timm
    import torchvision
    from captum.attr import GuidedBackprop

    import repscope.backprop as bp
    from repscope.models import wrap

    device = torch.device(args.device)
    cpu_clock = args.clock == "cpu" and device.type == "cpu"
    clock = time.process_time if cpu_clock else time.perf_counter
    torch.manual_seed(0)
    nets = {
        "lite0": wrap(timm.create_model("tf_efficientnet_lite0", pretrained=False), mean=(0.5,) * 3, std=(0.5,) * 3),
        "resnet18": wrap(torchvision.models.resnet18(weights=None)),
    }
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} size={args.size} "
          f"reps={args.reps} clock={'process CPU' if cpu_clock else 'wall'} (best of reps, seconds)")
    print(f"{'model':9s} {'batch':>5s} {'plain':>8s} {'guided':>8s} {'captum':>8s} "
          f"{'guided/plain':>13s} {'guided/captum':>14s} {'noise':>6s}")
    for name, model in nets.items():
        model.to(device)
        captum = GuidedBackprop(model.module)
        for batch in (1, 16):
            x = torch.rand(batch, 3, args.size, args.size, device=device)
            fns = {
                "plain": lambda: plain_gradient(model, x, 3),
                "plain2": lambda: plain_gradient(model, x, 3),
                "guided": lambda: bp.saliency(model, x, 3, "guided"),
            }
            if name == "resnet18":  # Captum on lite0 silently returns the plain gradient (no nn.ReLU)
                fns["captum"] = lambda: captum.attribute(model.preprocessing.normalize(x), target=3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time_side_by_side(fns, args.reps, device, clock)
            ratio_plain = t["guided"] / t["plain"]
            cap = f"{t['captum']:8.4f}" if "captum" in t else f"{'-':>8s}"
            ratio_cap = f"{t['guided'] / t['captum']:14.3f}" if "captum" in t else f"{'-':>14s}"
            print(f"{name:9s} {batch:5d} {t['plain']:8.4f} {t['guided']:8.4f} {cap} {ratio_plain:13.3f} {ratio_cap} "
                  f"{t['plain2'] / t['plain']:6.3f}")


if __name__ == "__main__":
    main()
