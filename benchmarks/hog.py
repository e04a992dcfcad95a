"""Benchmark: repscope HOG vs scikit-image on a batch of 16 images at 512², side by side.

Prints, for Dalal–Triggs with scikit-image's defaults (9 orientations, 8×8 cells, 3×3 blocks,
L2-Hys): the time of ``skimage.feature.hog`` looped over the images, the time of one batched
``repscope.hog.hog`` call on the same images, and their ratio (goal ≤ 0.25); the same for UoCTTI;
and the forward+backward cost relative to the forward, for the eager and the ``compiled=True``
(torch.compile) paths, with one torch thread (the same single core as scikit-image's loop) and
with torch's default thread count.

Run: ``PYTHONPATH=src python benchmarks/hog.py [--batch 16] [--size 512] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage import data
from skimage.feature import hog as skimage_hog
from skimage.transform import resize

from repscope.hog import hog
from repscope.memory import retain_freed_memory


def photos(batch: int, size: int) -> torch.Tensor:
    """``(batch, 3, size, size)`` float32 crops of scikit-image's sample photos in [0, 1]."""
    names = ["astronaut", "chelsea", "coffee", "rocket"]
    out = []
    for i in range(batch):
        img = getattr(data, names[i % len(names)])()
        img = resize(img, (size, size), anti_aliasing=True, preserve_range=False).astype(np.float32)
        out.append(torch.from_numpy(np.ascontiguousarray(img[:, ::-1] if (i // len(names)) % 2 else img)))
    return torch.stack(out).permute(0, 3, 1, 2).contiguous()


def best_time(fn, repeats: int) -> float:
    """Best wall time over ``repeats`` runs after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the torch.compile path (compiles for a minute or so first)")
    args = parser.parse_args()
    retained = retain_freed_memory()  # as the repscope command does (repscope.memory)
    print(f"allocator: freed memory {'retained (glibc)' if retained else 'returned to the system'}")
    x = photos(args.batch, args.size)
    arrays = [img.permute(1, 2, 0).numpy() for img in x]
    default_threads = torch.get_num_threads()
    print(f"batch {args.batch} x 3 x {args.size}^2 float32; scikit-image runs on one core")
    t_sk = best_time(lambda: [skimage_hog(a, channel_axis=-1, feature_vector=False) for a in arrays], args.repeats)
    print(f"scikit-image loop (Dalal-Triggs)                 {t_sk:8.3f} s")
    modes = [False] + ([True] if args.compiled else [])
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for compiled in modes:
            tag = f"{'compiled' if compiled else 'eager'}/{threads}thr"
            for variant in ("dalal-triggs", "uoctti"):
                if compiled and threads == 1:
                    start = time.perf_counter()
                    with torch.no_grad():
                        hog(x, variant, compiled=True)
                    print(f"  (first compiled call of {variant}, incl. compilation: {time.perf_counter() - start:.1f} s)")
                with torch.no_grad():
                    t_fwd = best_time(lambda: hog(x, variant, compiled=compiled), args.repeats)
                note = " (goal <= 0.25)" if variant == "dalal-triggs" else ""
                print(f"repscope {variant:12s} {tag:14s} fwd  {t_fwd:8.3f} s   ratio to scikit-image "
                      f"{t_fwd / t_sk:.3f}{note}")

                def step(variant=variant, compiled=compiled):
                    xi = x.clone().requires_grad_(True)
                    hog(xi, variant, compiled=compiled).square().sum().backward()
                t_fb = best_time(step, args.repeats)
                print(f"repscope {variant:12s} {tag:14s} f+b  {t_fb:8.3f} s   = {t_fb / t_fwd:.2f} x its forward")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
