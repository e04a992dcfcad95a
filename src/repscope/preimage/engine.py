r"""The one optimiser loop behind every pre-image (inversion, maximisation, caricature).

Mahendran & Vedaldi, CVPR 2015 / IJCV 2016, with the constants of the authors' released code.
The variable x is an image in the papers' space: 0–255 pixel values with the mean colour
subtracted (σ = 80 is the typical norm of such a colour vector). Each iteration minimises, per image,

.. math::

    E(x) = C\,\ell(\Phi(\mathrm{crop}_\tau(x))) + \lambda_\alpha R_\alpha(x) + \lambda_{TV} R_{V^\beta}(x),
    \qquad \lambda_\alpha = \sigma^{-\alpha},\; \lambda_{TV} = (6.5/\sigma)^\beta

where crop_τ is a random translation (jitter, :mod:`.jitter`) of up to max(round(stride/4), 1)
pixels of a canvas that much larger, Φ sees images01 = (crop + mean)/255, and ℓ is an
:class:`~.objectives.Objective`. The canvas (:class:`~.canvas.Canvas`) is the sum of a Laplacian
pyramid of levels x = p_0 + ↑(p_1 + ↑(p_2 + …)) (:mod:`.pyramid`), and every level takes the
authors' step (:class:`~.optimizers.MomentumAdaGrad`), level k scaled by ``pyramid_decay``^k:

    G ← ρ G + g²;  v ← μ v − s·g / (1/lr + √G);  p ← p + v;  x ← Π(x);  lr = H·W·LR, LR = 0.05 σ²/α,

μ = 0.95, ρ = 0.9, s = 0.5 (authors: μ = 0.9, s = 1, pixels only). Π clamps to the [0, 255] box
(so Φ always sees valid images01) and, when ``bound`` B is set (papers: 160), first scales every
pixel whose colour vector is longer than B back onto that ball. The last ``final_fraction`` of the
iterations run at 0.1·LR with jitter off and the optimiser state reset (the papers' second run of
50 iterations). Adam (``optimizer="adam"``, lr in pixels per step) is the alternative.

Deviations from the papers (the pyramid and the half step; the data-term weight C of
:func:`~.config.default_data_weight`; 70% of 200 iterations in the final stage; no ball and
λ_α = 0 by default; μ = 0.95 and a start near the mean colour, ``init_noise=0.1``) were each
measured on EfficientNet-Lite0; the numbers are in the README ("Pre-images").

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
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import OptimisationError, RepscopeError, ShapeError
from ..progress import progress
from . import jitter, warp
from .bases import canvas_type
from .canvas import Canvas
from .config import IMAGENET_MEAN, PreimageConfig, PreimageResult, default_data_weight
from .objectives import Objective
from .optimizers import MomentumAdaGrad
from .rectifiers import leaky_rectifiers
from .regularizers import alpha_norm, total_variation
from .sections import SectionClock

__all__ = ["PreimageConfig", "PreimageResult", "optimise", "IMAGENET_MEAN", "default_data_weight"]


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


def _optimizer(cfg: "PreimageConfig", levels: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """A fresh optimiser over the pyramid levels; level k steps ``pyramid_decay``^k as far as level 0."""
    if cfg.optimizer == "adam":
        groups = [{"params": [p], "lr": lr * cfg.pyramid_decay**k} for k, p in enumerate(levels)]
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-12)
    groups = [{"params": [p], "scale": cfg.step_scale * cfg.pyramid_decay**k} for k, p in enumerate(levels)]
    return MomentumAdaGrad(groups, lr=lr, momentum=cfg.momentum, decay=cfg.decay)


def _batch(start01: Tensor | None, batch: int | None) -> int:
    """N: the start images' count (checked to be (N, 3, H, W)), else ``batch``."""
    if start01 is not None:
        if start01.dim() != 4 or start01.shape[1] != 3:
            raise ShapeError(f"start images must be (N, 3, H, W), got {tuple(start01.shape)}.")
        return start01.shape[0]
    if batch is None:
        raise RepscopeError("give start images or a batch size for noise starts.")
    return int(batch)


def _energy(data: Tensor, x: Tensor, cfg: PreimageConfig) -> Tensor:
    """E(x) per image (N,): C·ℓ + λ_α R_α(x) + λ_TV TV^β(x), ``data`` = ℓ(Φ(crop_τ(x))) (N,)."""
    energy = cfg.data_weight * data
    if cfg.lambda_alpha:
        energy = energy + cfg.lambda_alpha * alpha_norm(x, cfg.alpha)
    if cfg.lambda_tv:
        energy = energy + cfg.lambda_tv * total_variation(x, cfg.beta)
    return energy


def _check_finite(energy: Tensor, level_grads: list[Tensor], t: int, canvas: Canvas) -> None:
    """Raise :class:`OptimisationError` (with the last good images) if E or ∂E/∂x is NaN/Inf.

    The coarsest level's gradient sums all of the canvas gradient: one sum checks both.
    """
    if not torch.isfinite(energy.sum() + level_grads[-1].sum()):
        raise OptimisationError(
            f"the pre-image energy became NaN/Inf at iteration {t}; lower the learning rate (--lr) or "
            "the regulariser weights, or use optimizer='adam'.",
            last_good=canvas.last_good01(), iteration=t,
        )


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
    gens = [torch.Generator().manual_seed(seed + i) for i in range(_batch(start01, batch))]
    kind = canvas_type(cfg)  # Canvas (RGB pyramid), or a colour-decorrelated / Fourier basis (.bases)
    canvas = (kind.images(start01.to(device, dtype), cfg) if start01 is not None
              else kind.noise(gens, (int(size[0]), int(size[1])), cfg, device, dtype))
    h, w = canvas.size
    restart = cfg.iters - min(int(round(cfg.final_fraction * cfg.iters)), cfg.iters)  # the final stage's start
    lr = cfg.lr * (h * w if cfg.optimizer == "momentum" else 1.0)
    optimizer = _optimizer(cfg, canvas.levels, lr)
    losses, data_losses = [], []
    clock = SectionClock(time_sections, device)
    t0 = time.perf_counter()
    with _reproducible(device):  # same seed, same pre-image on CUDA too
        for t in progress(range(cfg.iters), total=cfg.iters, desc=desc, quiet=quiet):
            clock.start()
            if t == restart and t > 0:  # the second run: 0.1·LR, no jitter, a fresh optimiser state
                optimizer = _optimizer(cfg, canvas.levels, lr * cfg.final_lr_factor)
            images01 = canvas.crop(jitter.offsets(gens, canvas.jitter) if canvas.jitter and t < restart else None)
            if t < restart:  # scale / rotation jitter (.warp); the identity when both are 0
                images01 = warp.robust(images01, gens, cfg.jitter_scale, cfg.jitter_rotate)
            clock.lap("jitter crop")
            with leaky_rectifiers(cfg.leak):
                data = objective(representation(images01))  # ℓ(Φ(crop_τ(x)))
            clock.lap("forward + objective")
            energy = _energy(data, canvas.x, cfg)  # E(x) per image
            clock.lap("priors")
            (grad,) = torch.autograd.grad(energy.sum(), canvas.x)  # ∂E/∂x
            clock.lap("backward")
            level_grads = canvas.adjoint(grad)  # ∂E/∂p_k
            clock.lap("pyramid adjoint")
            _check_finite(energy, level_grads, t, canvas)
            losses.append(energy.detach())
            data_losses.append(data.detach())
            clock.lap("finite check")
            canvas.step_(optimizer, level_grads, clock)  # p ← p + v, fold into x, x ← Π(x)
            if callback is not None:
                callback(t, canvas.previous.clone())
                clock.lap("callback")
    seconds = time.perf_counter() - t0
    return _result(representation, objective, canvas, cfg, seed, torch.stack(losses), torch.stack(data_losses),
                   seconds, clock)


def _result(representation: Callable[[Tensor], Tensor], objective: Objective, canvas: Canvas,
            cfg: PreimageConfig, seed: int, losses: Tensor, data_losses: Tensor, seconds: float,
            clock: SectionClock) -> PreimageResult:
    """The final images, their metrics and the resolved hyperparameters."""
    images01 = canvas.images01()
    with torch.no_grad():
        metrics = {k: v.detach() for k, v in objective.metrics(representation(images01)).items()}
        metrics["total_variation"] = total_variation(canvas.centre(), cfg.beta)
    hyper = dataclasses.asdict(cfg)
    hyper.update(seeds=[seed + i for i in range(images01.shape[0])], objective=objective.name,
                 stride=_stride(representation), pyramid=canvas.count)
    hyper["mean"] = list(cfg.mean)
    return PreimageResult(images01=images01.detach(), losses=losses, data_losses=data_losses, metrics=metrics,
                          hyperparameters=hyper, iterations=cfg.iters, seconds=seconds,
                          section_seconds=dict(clock.seconds))
