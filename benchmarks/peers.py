"""Class visualisation side by side with the peers: repscope vs Lucent (and Captum saliency's time), one run.

Same model (EfficientNet-Lite0), same objective (the logit of ImageNet class k, one image per class
of ``repscope.naturalness.default_classes``), same number of steps, same image size (224² by default,
``--size``), one thread per method:

  repscope   ``preimage.maximize(Representation(model, "logits"), classes, iters=S)`` (its defaults), or a
             variant ``repscope:FIELD=VALUE,...`` of :class:`repscope.preimage.PreimageConfig` fields
  lucent     ``lucent.optvis.render.render_vis`` with its defaults: FFT + decorrelated colour
             parameterisation (``param.image(size, batch=N)``), ``standard_transforms``, Adam lr 0.05;
             the objective is the sum over images of ``objectives.channel("logits", k, batch=i)``
  captum     ``captum.attr.Saliency`` on the sample photos for class k (seconds and memory only)

Each method runs in its own process (peak RSS is its own; "growth" is over a warm-up of 2 steps on
one image, when imports, weights and the allocator are paid for), ``--parallel`` of them at a time;
time is the process's CPU seconds per image (one thread, so it is the work done, also on a shared
machine). The parent then measures, on every method's final images (N, 3, size, size) in [0, 1]: the
activation (lite0's logit k, network as is), the transfer to efficientnet_lite1 and _lite2
(``naturalness.transfer``: rank of k among their logits at their own input size; top-1 / top-5
rates), and the image statistics (``naturalness.image_statistics``) next to the shipped photos'.

Lucent 0.1.8 (``pip install --no-deps torch-lucent``) imports ``decorator``, ``kornia`` (translate,
rotation matrix, affine warp) and ``IPython.display``. None is a repscope dependency, so this script
installs minimal stand-ins (:func:`_lucent_shims`) when the real packages are absent: the kornia
functions re-implemented with ``affine_grid``/``grid_sample`` (bilinear, zero padding, kornia's
pixel-coordinate matrices), a 6-line ``decorator``, and an empty ``IPython.display``.

Usage: PYTHONPATH=src python benchmarks/peers.py [--classes 20] [--steps 200] [--size 224] [--seed 0] [--parallel 1]
       [--methods "repscope;lucent;captum;repscope:canvas='fourier',colour='decorrelated'"] [--out peers_out]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

TRANSFER_TO = ("efficientnet_lite1", "efficientnet_lite2")
PHOTOS = ("sample:chelsea", "sample:coffee", "sample:astronaut", "sample:rocket")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _lucent_shims() -> None:
    """Stand-ins for the three imports of Lucent 0.1.8 that repscope does not have (module doc)."""
    import torch.nn.functional as F

    try:
        import decorator  # noqa: F401
    except ImportError:
        def decorator(caller):
            def wrap(func):
                return functools.wraps(func)(lambda *a, **k: caller(func, *a, **k))
            return wrap
        sys.modules["decorator"] = types.SimpleNamespace(decorator=decorator)
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipython = types.ModuleType("IPython")
        ipython.display = types.ModuleType("IPython.display")
        sys.modules["IPython"], sys.modules["IPython.display"] = ipython, ipython.display
    try:
        import kornia  # noqa: F401
        return
    except ImportError:
        pass

    def warp_affine(image, matrix, dsize):
        """kornia.warp_affine: out(p) = image(M⁻¹ p), M (B, 2, 3) in pixels; bilinear, zeros outside."""
        b, _, h, w = image.shape
        full = torch.cat([matrix, matrix.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1)
        inv = torch.linalg.inv(full)[:, :2]
        # pixel -> normalised coordinates (align_corners=True) on both sides
        to_norm = image.new_tensor([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
        theta = to_norm[:2] @ torch.cat([inv, inv.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1) @ torch.linalg.inv(to_norm)
        grid = F.affine_grid(theta, [b, image.shape[1], dsize[0], dsize[1]], align_corners=True)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def get_rotation_matrix2d(center, angle, scale):
        """kornia/OpenCV: counter-clockwise rotation by ``angle`` degrees about ``center`` (B, 2), scaled."""
        a = torch.deg2rad(angle.float())
        sx = scale[..., 0] if scale.dim() > 1 else scale
        alpha, beta = sx * torch.cos(a), sx * torch.sin(a)
        cx, cy = center[..., 0], center[..., 1]
        row0 = torch.stack([alpha, beta, (1 - alpha) * cx - beta * cy], -1)
        row1 = torch.stack([-beta, alpha, beta * cx + (1 - alpha) * cy], -1)
        return torch.stack([row0, row1], 1)

    def translate(image, translation):
        """kornia.geometry.transform.translate: shift by (dx, dy) pixels (B, 2), zeros shifted in."""
        b = image.shape[0]
        eye = torch.eye(2, dtype=image.dtype, device=image.device).expand(b, 2, 2)
        matrix = torch.cat([eye, translation.to(image).view(-1, 2, 1).expand(b, 2, 1)], 2)
        return warp_affine(image, matrix, image.shape[-2:])

    kornia = types.ModuleType("kornia")
    kornia.__version__ = "0.6.0"
    kornia.warp_affine, kornia.get_rotation_matrix2d = warp_affine, get_rotation_matrix2d
    kornia.geometry = types.ModuleType("kornia.geometry")
    kornia.geometry.transform = types.ModuleType("kornia.geometry.transform")
    kornia.geometry.transform.translate = translate
    sys.modules.update({"kornia": kornia, "kornia.geometry": kornia.geometry,
                        "kornia.geometry.transform": kornia.geometry.transform})


def _variant_config(spec: str):
    """``repscope`` or ``repscope:FIELD=VALUE,...`` -> a PreimageConfig (values parsed as Python literals)."""
    import ast
    import dataclasses

    from repscope.preimage import PreimageConfig

    fields = {}
    if ":" in spec:
        for item in spec.split(":", 1)[1].split(","):
            key, value = item.split("=", 1)
            fields[key.strip()] = ast.literal_eval(value.strip())
    return dataclasses.replace(PreimageConfig(), **fields)


def _run_repscope(model, classes, steps, seed, spec, size):
    from repscope.layers import Representation
    from repscope.preimage import maximize

    cfg = _variant_config(spec)
    phi = Representation(model, "logits")
    maximize(phi, classes[:1], size=(size, size), config=cfg, iters=2, seed=seed)  # warm-up
    base = _rss_mb()
    with _Clock() as clock:
        res = maximize(phi, classes, size=(size, size), config=cfg, iters=steps, seed=seed)
    return res.images01, clock, base


def _run_lucent(model, classes, steps, seed, size):
    import numpy as np

    _lucent_shims()
    from lucent.optvis import objectives, param, render

    class Lite(torch.nn.Module):  # normalisation first, the network's logits hooked as "logits"
        def __init__(self):
            super().__init__()
            self.logits = model.module

        def forward(self, x01):
            return self.logits(model.preprocessing.normalize(x01))

    net = Lite().eval()

    def once(ks, n_steps):
        np.random.seed(seed)
        torch.manual_seed(seed)
        objective = objectives.Objective.sum([objectives.channel("logits", k, batch=i) for i, k in enumerate(ks)])
        param_f = lambda: param.image(size, batch=len(ks))  # noqa: E731
        images = render.render_vis(net, objective, param_f, thresholds=(n_steps,), preprocess=False,
                                   progress=False, show_image=False, fixed_image_size=size)
        return torch.from_numpy(images[-1]).permute(0, 3, 1, 2).contiguous()

    once(classes[:1], 2)  # warm-up
    base = _rss_mb()
    with _Clock() as clock:
        images = once(classes, steps)
    return images, clock, base


def _run_captum(model, classes, seed, size):
    from captum.attr import Saliency

    from repscope.images import load_images

    photos, _ = load_images(list(PHOTOS), size=size)
    x = photos[torch.arange(len(classes)) % len(photos)]
    net = torch.nn.Sequential(_Normalize(model), model.module).eval()
    saliency = Saliency(net)
    saliency.attribute(x[:1].clone().requires_grad_(True), target=classes[0])  # warm-up
    base = _rss_mb()
    with _Clock() as clock:
        saliency.attribute(x.clone().requires_grad_(True), target=list(classes))
    return None, clock, base


class _Normalize(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.preprocessing.normalize(x)


class _Clock:
    """Wall and CPU seconds of a block (one thread: CPU seconds are the work, whatever else runs on the machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def child(method: str, classes: list[int], steps: int, seed: int, out: Path, size: int) -> dict:
    from repscope import models
    from repscope.memory import retain_freed_memory

    torch.set_num_threads(1)
    retain_freed_memory()  # as the repscope command does (repscope.memory)
    model = models.load("efficientnet_lite0")
    if method.startswith("repscope"):
        images, clock, base = _run_repscope(model, classes, steps, seed, method, size)
    elif method == "lucent":
        images, clock, base = _run_lucent(model, classes, steps, seed, size)
    elif method == "captum":
        images, clock, base = _run_captum(model, classes, seed, size)
    else:
        raise SystemExit(f"unknown method {method!r}; use repscope, repscope:FIELD=VALUE,..., lucent or captum")
    path = None
    if images is not None:
        path = out / f"{_slug(method)}.pt"
        torch.save(images.float(), path)
    return {"method": method, "wall_seconds": clock.wall, "cpu_seconds": clock.cpu,
            "per_image": clock.cpu / len(classes), "peak_mb": _rss_mb(),
            "growth_mb": _rss_mb() - base, "images": str(path) if path else None}


def _slug(method: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in method)


def measure(rows: list[dict], classes: list[int], out: Path, size: int) -> None:
    """Activation, transfer and image statistics of each method's images (in place, into ``rows``)."""
    from repscope import models
    from repscope.images import load_images, save_grid
    from repscope.naturalness import image_statistics, transfer, transfer_rates

    lite0 = models.load("efficientnet_lite0")
    others = {name: models.load(name) for name in TRANSFER_TO}
    photos, _ = load_images(list(PHOTOS), size=size)
    photo_stats = {k: float(v.mean()) for k, v in image_statistics(photos).items()}
    rows.append({"method": "photos (reference)", "stats": photo_stats})
    for row in rows:
        if not row.get("images"):
            continue
        images = torch.load(row["images"]).clamp(0, 1)
        with torch.no_grad():
            logits = lite0(images)
        row["activation"] = logits[torch.arange(len(classes)), torch.tensor(classes)].tolist()
        row["own_top1"] = float((logits.argmax(1) == torch.tensor(classes)).float().mean())
        row["transfer"] = transfer(images, classes, others, source=lite0)
        row["rates"] = transfer_rates(row["transfer"])
        row["stats"] = {k: float(v.mean()) for k, v in image_statistics(images).items()}
        names = lite0.class_names
        save_grid(images, out / f"{_slug(row['method'])}.png",
                  labels=[f"{k} {names[k][:14]}" for k in classes], ncols=min(len(classes), 10))


def _table(rows: list[dict]) -> str:
    head = ("| method | activation (mean logit) | own top-1 | top-1 lite1/lite2 | top-5 lite1/lite2 | top-5 both "
            "| CPU s/image | peak MB (growth) | TV/px | saturation | slope |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s = r.get("stats", {})
        stats = f"{s.get('tv_per_pixel', float('nan')):.3f} | {s.get('saturation', float('nan')):.2f} | " \
                f"{s.get('spectral_slope', float('nan')):.2f}" if s else " | |"
        if "rates" in r:
            rt = r["rates"]
            a, b = rt[TRANSFER_TO[0]], rt[TRANSFER_TO[1]]
            act = sum(r["activation"]) / len(r["activation"])
            lines.append(f"| {r['method']} | {act:.1f} | {r['own_top1']:.0%} | {a['top1']:.0%} / {b['top1']:.0%} | "
                         f"{a['top5']:.0%} / {b['top5']:.0%} | {rt['all']['top5']:.0%} | {r['per_image']:.2f} | "
                         f"{r['peak_mb']:.0f} ({r['growth_mb']:.0f}) | {stats} |")
        elif "per_image" in r:
            lines.append(f"| {r['method']} | | | | | | {r['per_image']:.3f} | {r['peak_mb']:.0f} ({r['growth_mb']:.0f}) | | | |")
        else:
            lines.append(f"| {r['method']} | | | | | | | | {stats} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20, help="number of classes (naturalness.default_classes)")
    parser.add_argument("--steps", type=int, default=200, help="optimisation steps for every method")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels for every method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="repscope,lucent,captum",
                        help="methods separated by ',' (or by ';' when a variant repscope:F=V,G=W has commas): "
                             "repscope, repscope:FIELD=VALUE,..., lucent, captum")
    parser.add_argument("--parallel", type=int, default=1, help="methods run at once (times are CPU seconds)")
    parser.add_argument("--out", default="peers_out", help="folder for the images, grids and result.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from repscope.naturalness import default_classes

    classes = default_classes(seed=args.seed, count=args.classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(args.child, classes, args.steps, args.seed, out, args.size)))
        return
    methods = _split_methods(args.methods)
    print(f"efficientnet_lite0, logits, {len(classes)} classes (seed {args.seed}): {classes}; {args.steps} steps, "
          f"{args.size}², 1 thread each; transfer to {', '.join(TRANSFER_TO)}", flush=True)
    rows = _run_children(methods, args, out)
    measure(rows, classes, out, args.size)
    from repscope.io import write_json

    write_json(out / "result.json", {"classes": classes, "steps": args.steps, "size": args.size, "seed": args.seed,
                                     "rows": rows})
    print(_table(rows))


def _run_children(methods: list[str], args: argparse.Namespace, out: Path) -> list[dict]:
    """Each method in its own process, ``args.parallel`` at a time; rows in the order of ``methods``."""
    def start(method):
        cmd = [sys.executable, __file__, "--child", method, "--classes", str(args.classes), "--steps",
               str(args.steps), "--size", str(args.size), "--seed", str(args.seed), "--out", str(out)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    pending, running, rows = list(methods), {}, {}
    while pending or running:
        while pending and len(running) < max(1, args.parallel):
            method = pending.pop(0)
            running[method] = start(method)
        method, proc = next(iter(running.items()))
        stdout, stderr = proc.communicate()
        del running[method]
        if proc.returncode:
            raise SystemExit(f"{method} failed:\n{stderr[-3000:]}")
        rows[method] = json.loads(stdout.strip().splitlines()[-1])
        print(f"  {method}: {rows[method]['per_image']:.2f} CPU s/image", flush=True)
    return [rows[m] for m in methods]


def _split_methods(text: str) -> list[str]:
    """``a;b`` or ``a,b`` -> methods; a ``repscope:...`` variant keeps its own commas when ';' is used."""
    if ";" in text:
        return [m.strip() for m in text.split(";") if m.strip()]
    return [m.strip() for m in text.split(",") if m.strip()]


if __name__ == "__main__":
    main()
