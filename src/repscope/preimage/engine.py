r"""The one optimiser loop behind every pre-image (inversion, maximisation, caricature).

Mahendran & Vedaldi, CVPR 2015 / IJCV 2016, with the constants of the authors' released code.
The variable x is an image in the papers' space: 0–255 pixel values with the mean colour
subtracted (σ = 80 is the typical norm of such a colour vector). Each iteration minimises, per image,

.. math::

    E(x) = C\,\ell(\Phi(\mathrm{crop}_\tau(x))) + \lambda_\alpha R_\alpha(x) + \lambda_{TV} R_{V^\beta}(x),
    \qquad \lambda_\alpha = \sigma^{-\alpha},\; \lambda_{TV} = (6.5/\sigma)^\beta

where crop_τ is a random translation (jitter, :mod:`.jitter`) of up to max(round(stride/4), 1)
pixels of a canvas that much larger, Φ sees images01 = (crop + mean)/255, and ℓ is an
:class:`~.objectives.Objective`. The canvas is the sum of a Laplacian pyramid of levels
x = p_0 + ↑(p_1 + ↑(p_2 + …)) (:mod:`.pyramid`), and every level takes the authors' step
(:class:`~.optimizers.MomentumAdaGrad`), level k scaled by ``pyramid_decay``^k:

    G ← ρ G + g²;  v ← μ v − s·g / (1/lr + √G);  p ← p + v;  x ← Π(x);  lr = H·W·LR, LR = 0.05 σ²/α,

μ = 0.95, ρ = 0.9, s = 0.5 (authors: μ = 0.9, s = 1, pixels only; see below). Π clamps to the
[0, 255] box (so Φ always sees valid images01) and, when ``bound`` B is set (papers: 160), first
scales every pixel whose colour vector is longer than B back onto that ball. After each step the
coarse levels' moves are folded into p_0, which then holds Π(x), and reset to 0: the same iterates
as keeping the levels, but the forward pass reads the canvas as is and the level gradients are the
pyramid's adjoint (:func:`.pyramid.adjoint`) of the canvas gradient. The last ``final_fraction``
of the iterations run at 0.1·LR with jitter off and the optimiser state reset (the papers' second
run of 50 iterations). Adam (``optimizer="adam"``, lr in pixels per step) is the alternative.

Deviations from the papers, each measured on EfficientNet-Lite0 (4 sample photos, 224², 200
iterations; README):

- The pyramid (5 coarse levels at 224², ``pyramid_decay`` 0.7) and a half step (s = 0.5). The
  AdaGrad-scaled step is ≈ sign(g) per element, so lr does not set its size and, on pixels, coarse
  structure moves no faster than noise. Mean error at blocks.0–6 went from 0.052, 0.192, 0.260,
  0.242, 0.198, 0.169, 0.208 (pixels, s = 1, final stage 50%) to 0.048, 0.108, 0.174, 0.162,
  0.151, 0.128, 0.177 (blocks.6: 0.162–0.181 over seeds 0–4), below a plain Adam loop at blocks.0–5
  and tied at blocks.6, with the pre-images' total variation 0.2–1.9× the photos' (it was up to
  3.2×). At blocks.2 with a 50% final stage: pixels 0.260, s = 0.5 alone 0.264, the pyramid alone
  (s = 1) 0.230, both 0.185; decay 0.5 / 0.85 gave 0.201 / 0.181 (with more texture), 3 levels
  instead of 5 0.199; 1000 pixel iterations reach 0.172. The pyramid helps ``optimizer="adam"``
  too: 0.244 at blocks.2 instead of 0.358 on pixels.
- C, a data-term weight (the papers also weight the data term per layer): :func:`default_data_weight`
  (C = 300 everywhere: blocks.6 TV 2.4×; C = 70 at stride 32: blocks.5 0.142 instead of 0.13).
- 200 iterations in all, 70% of them in the final stage (the papers: 300 + 50); 50% gave 0.185 at
  blocks.2, 30% was worse still.
- No ball and λ_α = 0 by default: B = 160 around the mean colour excludes white (norm 243) and
  black (200); projecting the photos onto it alone costs 0.19 error at blocks.0 (astronaut), and
  the papers' λ_α = σ^-6 costs 0.04 more; the [0, 255] box bounds the range instead.
- Momentum μ = 0.95 (authors: 0.9; 0.9 or 0.97 with the pyramid: 0.225 / 0.219 at blocks.2) and a
  start near the mean colour (``init_noise=0.1``; papers: 1, noise with 95th percentile σ/√3; 0
  leaves HOG stuck: its gradient vanishes on a flat image).

Example:
    >>> import torch
    >>> from repscope.preimage.engine import optimise, PreimageConfig
    >>> from repscope.preimage.objectives import Invert
    >>> phi = torch.nn.Conv2d(3, 4, 3)
    >>> x0 = torch.rand(1, 3, 16, 16)
    >>> r = optimise(phi, Invert(phi(x0)), size=(16, 16), batch=1, config=PreimageConfig(iters=20))
    >>> r.images01.shape
    torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import OptimisationError, RepscopeError, ShapeError
from ..progress import progress
from . import jitter, pyramid
from .objectives import Objective
from .optimizers import MomentumAdaGrad
from .rectifiers import leaky_rectifiers
from .regularizers import alpha_norm, total_variation
from .sections import SectionClock

__all__ = ["PreimageConfig", "PreimageResult", "optimise", "IMAGENET_MEAN"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@dataclass(frozen=True)
class PreimageConfig:
    """Every hyperparameter of the pre-image energy and its optimiser (``None`` = the paper's rule).

    Attributes:
        iters: total iterations (both stages).
        sigma: σ, typical colour-vector norm of a mean-subtracted 0–255 image.
        bound: B, radius of the per-pixel colour ball (papers: 160; default ``None``: only the [0, 255] box).
        alpha, beta: exponents of R_α and TV^β.
        data_weight: C multiplying the data term; ``None``: :func:`default_data_weight` (stride).
        lambda_alpha: weight of R_α (default 0: the box already bounds the range; ``None``: σ^-α as in the papers).
        lambda_tv: weight of TV^β (``None``: (6.5/σ)^β as in the papers).
        optimizer: ``"momentum"`` (momentum + AdaGrad, the papers') or ``"adam"``.
        lr: momentum: LR (``None``: 0.05 σ²/α; the step uses H·W·LR); adam: pixels per step (``None``: 2).
        momentum, decay: μ and ρ of the momentum/AdaGrad step (Adam: β1, β2 are 0.9, 0.999).
        step_scale: s multiplying the momentum/AdaGrad step (papers: 1; Adam: unused, lr is its step).
        pyramid: coarse levels of the canvas parameterisation (:mod:`.pyramid`); ``None``:
            :func:`.pyramid.level_count` of the image size (5 at 224²); 0: pixels, as in the papers.
        pyramid_decay: level k's step is ``pyramid_decay``^k times level 0's.
        final_fraction: share of iterations in the final stage (lr × ``final_lr_factor``, no jitter).
        final_lr_factor: the final stage's lr factor (0.1).
        jitter: maximum translation in pixels; ``None``: max(round(stride/4), 1).
        leak: slope of leaky rectifiers during optimisation (``None``: the network as is).
        init_noise: noise starts have their 95th-percentile magnitude at ``init_noise`` · σ/√3
            (default 0.1: near the mean colour; papers: 1).
        mean: mean colour in [0, 1] subtracted to get the papers' space.
        clamp01: also keep every pixel inside [0, 1] (always true for real images).
    """

    iters: int = 200
    sigma: float = 80.0
    bound: float | None = None
    alpha: float = 6.0
    beta: float = 2.0
    data_weight: float | None = None
    lambda_alpha: float | None = 0.0
    lambda_tv: float | None = None
    optimizer: str = "momentum"
    lr: float | None = None
    momentum: float = 0.95
    decay: float = 0.9
    step_scale: float = 0.5
    pyramid: int | None = None
    pyramid_decay: float = 0.7
    final_fraction: float = 0.7
    final_lr_factor: float = 0.1
    jitter: int | None = None
    leak: float | None = None
    init_noise: float = 0.1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    clamp01: bool = True

    def resolve(self, stride: int) -> "PreimageConfig":
        """A copy with every ``None`` rule replaced by its value for a representation of ``stride``."""
        if self.optimizer not in ("momentum", "adam"):
            raise RepscopeError(f"unknown optimizer '{self.optimizer}'; use 'momentum' or 'adam'.")
        if self.iters < 1:
            raise RepscopeError(f"iters must be at least 1, got {self.iters}; pass e.g. --iters 200.")
        if self.pyramid is not None and self.pyramid < 0:
            raise RepscopeError(f"pyramid must be a level count >= 0, got {self.pyramid}; 0 optimises pixels.")
        if not (self.step_scale > 0 and self.pyramid_decay > 0):
            raise RepscopeError(f"step_scale and pyramid_decay must be positive, got {self.step_scale} and "
                                f"{self.pyramid_decay}; the defaults are 0.5 and 0.7.")
        return dataclasses.replace(
            self,
            data_weight=self.data_weight if self.data_weight is not None else default_data_weight(stride),
            lambda_alpha=self.lambda_alpha if self.lambda_alpha is not None else (1 / self.sigma) ** self.alpha,
            lambda_tv=self.lambda_tv if self.lambda_tv is not None else (6.5 / self.sigma) ** self.beta,
            lr=self.lr if self.lr is not None else (0.05 * self.sigma**2 / self.alpha if self.optimizer == "momentum" else 2.0),
            jitter=self.jitter if self.jitter is not None else max(round(stride / 4), 1),
        )


@dataclass
class PreimageResult:
    """Plain result of :func:`optimise` (all tensors detached, on the input's device).

    Attributes:
        images01: pre-images (N, 3, H, W) in [0, 1].
        losses: total energy per iteration and image (T, N).
        data_losses: the objective's term alone (T, N).
        metrics: final metrics, name -> (N,) (e.g. ``error``, ``activation``, ``gain``, ``total_variation``).
        hyperparameters: the resolved :class:`PreimageConfig` as a dict, plus the seeds.
        iterations: iterations run.
        seconds: wall-clock time of the loop.
        labels: one label per image (set by the methods).
        section_seconds: with ``time_sections=True``, seconds spent in each part of the loop over
            all iterations (``jitter crop``, ``forward + objective``, ``priors``, ``backward``,
            ``pyramid adjoint``, ``finite check``, ``step``, ``pyramid fold``, ``projection``, and
            ``callback`` when given); else empty.
    """

    images01: Tensor
    losses: Tensor
    data_losses: Tensor
    metrics: dict[str, Tensor]
    hyperparameters: dict[str, Any]
    iterations: int
    seconds: float
    labels: list[str] = field(default_factory=list)
    section_seconds: dict[str, float] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per image: label, metrics, iterations, seconds, hyperparameters."""
        out = []
        for i in range(self.images01.shape[0]):
            rec: dict[str, Any] = {"label": self.labels[i] if i < len(self.labels) else str(i)}
            rec.update({k: float(v[i]) for k, v in self.metrics.items()})
            rec.update(iterations=self.iterations, seconds=self.seconds, hyperparameters=dict(self.hyperparameters))
            rec["hyperparameters"]["seed"] = self.hyperparameters["seeds"][i]
            rec["hyperparameters"].pop("seeds", None)
            out.append(rec)
        return out


def default_data_weight(stride: int) -> float:
    """C, the data term's weight for a layer of ``stride`` pixels: 1600/stride, clipped to [140, 300].

    The papers weight the data term per layer (a constant C multiplying ℓ); deeper layers are more
    invariant and need relatively more prior. This rule was tuned on EfficientNet-Lite0 (README).
    """
    return float(min(300.0, max(140.0, 1600.0 / max(int(stride), 1))))


def _stride(phi: Callable) -> int:
    try:
        s = getattr(phi, "stride", 1)
    except Exception:  # a lazily computed stride that fails: fall back to jitter 1
        return 1
    if isinstance(s, (tuple, list)):
        s = max(s)
    return int(s) if isinstance(s, (int, float)) and s and s > 0 else 1


def _device_dtype(phi: Callable, start01: Tensor | None, device) -> tuple[torch.device, torch.dtype]:
    """Start images' device and dtype; else ``device`` (or Φ's first parameter's) and Φ's dtype (else the default)."""
    if start01 is not None:
        return start01.device, start01.dtype
    params = getattr(phi, "parameters", None)
    p = next(iter(params()), None) if callable(params) else None
    p = p if p is not None and p.is_floating_point() else None
    dtype = p.dtype if p is not None else torch.get_default_dtype()
    if device is not None:
        return torch.device(device), dtype
    return (p.device if p is not None else torch.device("cpu")), dtype


@contextlib.contextmanager
def _reproducible(device: torch.device):
    """cuDNN restricted to deterministic algorithms on CUDA (same seed, same pre-image); nothing elsewhere.

    Only the two flags of PyTorch's reproducibility notes are set, and restored after.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _project_(x: Tensor, bound: float | None, box: list[tuple[float, float]] | None) -> Tensor:
    """Π in place on x (N, 3, H, W): scale each pixel's colour vector onto the ball of radius ``bound``,
    then clamp channel c to ``box[c]`` = (low, high) (scalar clamps: a tensor-bound clamp is ~8× slower on CPU)."""
    if bound is not None:
        norm = x.pow(2).sum(1, keepdim=True).sqrt()
        x.mul_(bound / norm.clamp_min(bound))
    for c, (low, high) in enumerate(box or []):
        x[:, c].clamp_(low, high)
    return x


def _optimizer(cfg: "PreimageConfig", levels: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """A fresh optimiser over the pyramid levels; level k steps ``pyramid_decay``^k as far as level 0."""
    if cfg.optimizer == "adam":
        groups = [{"params": [p], "lr": lr * cfg.pyramid_decay**k} for k, p in enumerate(levels)]
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-12)
    groups = [{"params": [p], "scale": cfg.step_scale * cfg.pyramid_decay**k} for k, p in enumerate(levels)]
    return MomentumAdaGrad(groups, lr=lr, momentum=cfg.momentum, decay=cfg.decay)


def optimise(
    representation: Callable[[Tensor], Tensor],
    objective: Objective,
    *,
    start01: Tensor | None = None,
    size: tuple[int, int] = (224, 224),
    batch: int | None = None,
    config: PreimageConfig | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    quiet: bool = True,
    desc: str = "pre-image",
    callback: Callable[[int, Tensor], None] | None = None,
    time_sections: bool = False,
) -> PreimageResult:
    """Minimise ``objective(Φ(x)) + λ_α R_α(x) + λ_TV R_TV(x)`` over a batch of images x.

    Images are independent: image i uses seed ``seed + i`` (noise start and jitter), and its loss
    does not depend on the others, so a batch of N equals N single runs with those seeds. The same
    seed gives the same images, on CUDA too (cuDNN is held to deterministic algorithms in the loop).

    Args:
        representation: Φ, images01 (N, 3, H, W) -> features (N, ...); ``.stride`` (pixels) sets
            the jitter when present.
        objective: the data term, features -> (N,) loss.
        start01: start images (N, 3, H, W) in [0, 1]; ``None`` starts from noise whose 95th
            percentile magnitude is ``init_noise`` · σ/√3 (papers: init_noise = 1; default 0.1).
        size: (H, W) of noise starts.
        batch: N for noise starts.
        config: hyperparameters (default :class:`PreimageConfig`).
        seed: base seed.
        device: where to optimise when there are no start images (default: Φ's parameters' device,
            else the CPU; a representation without parameters, such as HOG, needs it on CUDA).
        quiet: hide the progress bar.
        desc: progress bar label.
        callback: called every iteration as ``callback(t, x)`` with the canvas x (N, 3, H+j, W+j)
            whose energy iteration t evaluated (after Π), in the papers' space (0–255, mean
            subtracted), e.g. to record snapshots.
        time_sections: fill ``section_seconds`` of the result (:class:`.sections.SectionClock`; on
            CUDA each section then waits for the device, which slows the loop).

    Returns:
        :class:`PreimageResult` with images (N, 3, H, W) in [0, 1].

    Raises:
        OptimisationError: the energy or its gradient became NaN/Inf; ``last_good`` holds the last
            images (N, 3, H, W) with a finite energy, ``iteration`` the failing iteration.
    """
    cfg = (config or PreimageConfig()).resolve(_stride(representation))
    device, dtype = _device_dtype(representation, start01, device)
    if start01 is not None:
        if start01.dim() != 4 or start01.shape[1] != 3:
            raise ShapeError(f"start images must be (N, 3, H, W), got {tuple(start01.shape)}.")
        n, _, h, w = start01.shape
    else:
        if batch is None:
            raise RepscopeError("give start images or a batch size for noise starts.")
        n, (h, w) = int(batch), (int(size[0]), int(size[1]))
    j = int(cfg.jitter)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
    mean = torch.tensor(cfg.mean, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
    box = [(-255 * m, 255 - 255 * m) for m in cfg.mean] if cfg.clamp01 else None
    if start01 is not None:
        x = start01.detach().to(device, dtype) * 255 - mean
        x = torch.nn.functional.pad(x, (j // 2, j - j // 2, j // 2, j - j // 2), mode="replicate") if j else x
    else:
        noise = torch.stack([torch.randn(3, h + j, w + j, generator=g, dtype=dtype) for g in gens]).to(device)
        q = noise.flatten(1).abs().quantile(0.95, dim=1).view(n, 1, 1, 1)
        x = noise * (cfg.init_noise * cfg.sigma / math.sqrt(3)) / q
    n_final = min(int(round(cfg.final_fraction * cfg.iters)), cfg.iters)
    first_lr = cfg.lr * (h * w if cfg.optimizer == "momentum" else 1.0)
    count = cfg.pyramid if cfg.pyramid is not None else pyramid.level_count(h, w)
    # x = levels[0] is the canvas evaluated; after each step the coarse levels are folded into it (module doc)
    levels = [p.requires_grad_(True) for p in pyramid.split(_project_(x, cfg.bound, box), count)]
    x = levels[0]
    previous = x.detach().clone()  # the last canvas with a finite energy
    optimizer = _optimizer(cfg, levels, first_lr)
    losses, data_losses = [], []
    c = j // 2
    clock = SectionClock(time_sections, device)
    t0 = time.perf_counter()
    with _reproducible(device):  # same seed, same pre-image on CUDA too
        for t in progress(range(cfg.iters), total=cfg.iters, desc=desc, quiet=quiet):
            clock.start()
            final = t >= cfg.iters - n_final
            if final and t == cfg.iters - n_final and t > 0:  # the second run restarts the optimiser
                optimizer = _optimizer(cfg, levels, first_lr * cfg.final_lr_factor)
            where = jitter.offsets(gens, j) if j and not final else [(j // 2, j // 2)] * n
            images01 = jitter.crop_images01(x, where, (h, w), mean)
            clock.lap("jitter crop")
            with leaky_rectifiers(cfg.leak):
                data = objective(representation(images01))
            total = cfg.data_weight * data
            clock.lap("forward + objective")
            if cfg.lambda_alpha:
                total = total + cfg.lambda_alpha * alpha_norm(x, cfg.alpha)
            if cfg.lambda_tv:
                total = total + cfg.lambda_tv * total_variation(x, cfg.beta)
            clock.lap("priors")
            (canvas_grad,) = torch.autograd.grad(total.sum(), x)
            clock.lap("backward")
            grads = pyramid.adjoint(canvas_grad, count)
            clock.lap("pyramid adjoint")
            # the coarsest gradient sums all of the canvas gradient: one sum checks the energy and the gradient
            if not torch.isfinite(total.sum() + grads[-1].sum()):
                raise OptimisationError(
                    f"the pre-image energy became NaN/Inf at iteration {t}; lower the learning rate (--lr) or "
                    "the regulariser weights, or use optimizer='adam'.",
                    last_good=(previous[:, :, c : c + h, c : c + w] + mean) / 255,
                    iteration=t,
                )
            losses.append(total.detach())
            data_losses.append(data.detach())
            clock.lap("finite check")
            with torch.no_grad():
                previous.copy_(x)
                for level, grad in zip(levels, grads):
                    level.grad = grad
                optimizer.step()
                clock.lap("step")
                if count:
                    x.add_(pyramid.upsample2(pyramid.compose(levels[1:]), tuple(x.shape[-2:])))
                    torch._foreach_zero_(levels[1:])
                clock.lap("pyramid fold")
                _project_(x, cfg.bound, box)
                clock.lap("projection")
            if callback is not None:
                callback(t, previous.clone())
                clock.lap("callback")
    seconds = time.perf_counter() - t0

    x = x.detach()
    crop = x[:, :, c : c + h, c : c + w]
    images01 = ((crop + mean) / 255).clamp(0, 1) if cfg.clamp01 else (crop + mean) / 255
    with torch.no_grad():
        metrics = {k: v.detach() for k, v in objective.metrics(representation(images01)).items()}
        metrics["total_variation"] = total_variation(crop, cfg.beta)
    hyper = dataclasses.asdict(cfg)
    hyper.update(seeds=[seed + i for i in range(n)], objective=objective.name, stride=_stride(representation),
                 pyramid=count)
    hyper["mean"] = list(cfg.mean)
    return PreimageResult(
        images01=images01.detach(),
        losses=torch.stack(losses),
        data_losses=torch.stack(data_losses),
        metrics=metrics,
        hyperparameters=hyper,
        iterations=cfg.iters,
        seconds=seconds,
        section_seconds=dict(clock.seconds),
    )
