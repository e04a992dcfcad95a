"""The pre-image energy's hyperparameters and the engine's result (formulas: :mod:`.engine`).

:class:`PreimageConfig` holds every constant of the energy and its optimiser, ``None`` meaning the
papers' rule, resolved for a representation's stride by :meth:`PreimageConfig.resolve`;
:class:`PreimageResult` is what :func:`~.engine.optimise` returns. Why the defaults differ from the
papers, with the measurements: README, "Pre-images" (deviations and quality).

Example:
    >>> PreimageConfig(iters=50).resolve(stride=8).jitter
    2
    >>> default_data_weight(32)
    140.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..errors import RepscopeError

__all__ = ["PreimageConfig", "PreimageResult", "default_data_weight", "IMAGENET_MEAN"]

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
        canvas: ``"pyramid"`` (:mod:`.pyramid`) or ``"fourier"`` (spectrum-scaled coefficients, :mod:`.fourier`).
        fourier_decay: d of the Fourier canvas's weights 1/|f|^d.
        colour: ``"rgb"`` or ``"decorrelated"`` (the optimiser steps in ImageNet's colour basis, :mod:`.colour`).
        jitter_scale, jitter_rotate: scale in [1 − a, 1 + a] and rotation in [−r, r] degrees drawn per image and
            iteration, applied to the crop with the jitter (:mod:`.warp`; 0: off).
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
    canvas: str = "pyramid"
    fourier_decay: float = 1.0
    colour: str = "rgb"
    jitter_scale: float = 0.0
    jitter_rotate: float = 0.0

    def resolve(self, stride: int) -> "PreimageConfig":
        """A copy with every ``None`` rule replaced by its value for a representation of ``stride``."""
        if self.optimizer not in ("momentum", "adam"):
            raise RepscopeError(f"unknown optimizer '{self.optimizer}'; use 'momentum' or 'adam'.")
        if self.iters < 1:
            raise RepscopeError(f"iters must be at least 1, got {self.iters}; pass e.g. --iters 200.")
        if self.pyramid is not None and self.pyramid < 0:
            raise RepscopeError(f"pyramid must be a level count >= 0, got {self.pyramid}; 0 optimises pixels.")
        if self.canvas not in ("pyramid", "fourier") or self.colour not in ("rgb", "decorrelated"):
            raise RepscopeError(f"unknown canvas '{self.canvas}' or colour '{self.colour}'; use canvas 'pyramid' or "
                                "'fourier' and colour 'rgb' or 'decorrelated'.")
        if not (0 <= self.jitter_scale < 1 and self.jitter_rotate >= 0):
            raise RepscopeError(f"jitter_scale must be in [0, 1) and jitter_rotate >= 0, got {self.jitter_scale} and "
                                f"{self.jitter_rotate}; e.g. 0.1 and 10 (degrees).")
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
