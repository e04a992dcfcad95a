r"""The canvas a pre-image is optimised on: a jittered, box-projected Laplacian pyramid.

The canvas x (N, 3, H + j, W + j) lives in the papers' space (0–255 pixel values, mean colour
subtracted) and is j pixels larger than the images so that a random crop crop_τ (:mod:`.jitter`)
always fits. It is parameterised by the levels of a Laplacian pyramid (:mod:`.pyramid`),

.. math::

    x = p_0 + \uparrow\!\big(p_1 + \uparrow\!(p_2 + \dots)\big),

and every level takes the optimiser's step. After each step the coarse levels' moves are folded
into p_0, which then holds Π(x), and reset to 0: the same iterates as keeping the levels, but the
forward pass reads the canvas as is and the level gradients are the pyramid's adjoint
(:func:`.pyramid.adjoint`) of the canvas gradient. Π clamps every channel to the [0, 255] box
and, when a ``bound`` B is set, first scales every pixel whose colour vector is longer than B back
onto that ball.

Example:
    >>> import torch
    >>> from repscope.preimage.config import PreimageConfig
    >>> cfg = PreimageConfig().resolve(stride=4)
    >>> canvas = Canvas.noise([torch.Generator().manual_seed(0)], (16, 16), cfg, "cpu", torch.float32)
    >>> tuple(canvas.x.shape), len(canvas.levels), tuple(canvas.crop(None).shape)
    ((1, 3, 17, 17), 3, (1, 3, 16, 16))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from . import jitter, pyramid
from .config import PreimageConfig
from .sections import SectionClock

__all__ = ["Canvas", "project_"]


def project_(x: Tensor, bound: float | None, box: Sequence[tuple[float, float]] | None) -> Tensor:
    """Π in place on x (N, 3, H, W): scale each pixel's colour vector onto the ball of radius ``bound``,
    then clamp channel c to ``box[c]`` = (low, high) (scalar clamps: a tensor-bound clamp is ~8× slower on CPU)."""
    if bound is not None:
        norm = x.pow(2).sum(1, keepdim=True).sqrt()
        x.mul_(bound / norm.clamp_min(bound))
    for c, (low, high) in enumerate(box or []):
        x[:, c].clamp_(low, high)
    return x


class Canvas:
    """The optimised canvas: ``x`` = ``levels[0]`` (N, 3, H + j, W + j), papers' space, and its levels.

    Build it with :meth:`noise` or :meth:`images`. ``previous`` keeps the last canvas whose energy
    was finite (the start, then the canvas before each step).

    Args:
        x: the start canvas (projected here, in place).
        cfg: the resolved configuration (``jitter``, ``bound``, ``mean``, ``clamp01``, ``pyramid``).
        size: (H, W) of the images cut from it.
    """

    def __init__(self, x: Tensor, cfg: PreimageConfig, size: tuple[int, int]):
        self.size, self.jitter = (int(size[0]), int(size[1])), int(cfg.jitter)
        self.mean = torch.tensor(cfg.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) * 255
        self.bound = cfg.bound
        self.box = [(-255 * m, 255 - 255 * m) for m in cfg.mean] if cfg.clamp01 else None
        self.clamp01 = cfg.clamp01
        self.count = cfg.pyramid if cfg.pyramid is not None else pyramid.level_count(*self.size)
        self.levels = [p.requires_grad_(True) for p in pyramid.split(project_(x, self.bound, self.box), self.count)]
        self.x = self.levels[0]
        self.previous = self.x.detach().clone()

    @classmethod
    def noise(cls, generators: Sequence[torch.Generator], size: tuple[int, int], cfg: PreimageConfig,
              device: torch.device | str, dtype: torch.dtype) -> "Canvas":
        """A noise start per generator, its 95th-percentile magnitude at ``init_noise`` · σ/√3."""
        j, (h, w) = int(cfg.jitter), size
        noise = torch.stack([torch.randn(3, h + j, w + j, generator=g, dtype=dtype) for g in generators]).to(device)
        q = noise.flatten(1).abs().quantile(0.95, dim=1).view(len(generators), 1, 1, 1)
        return cls(noise * (cfg.init_noise * cfg.sigma / math.sqrt(3)) / q, cfg, size)

    @classmethod
    def images(cls, images01: Tensor, cfg: PreimageConfig) -> "Canvas":
        """A start at ``images01`` (N, 3, H, W) in [0, 1], padded by replication to the jittered size."""
        mean = torch.tensor(cfg.mean, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1) * 255
        x, j = images01.detach() * 255 - mean, int(cfg.jitter)
        x = torch.nn.functional.pad(x, (j // 2, j - j // 2, j // 2, j - j // 2), mode="replicate") if j else x
        return cls(x, cfg, tuple(images01.shape[-2:]))

    def crop(self, where: Sequence[tuple[int, int]] | None) -> Tensor:
        """crop_τ(x) as images01 (N, 3, H, W): image i cut at offset ``where[i]``; ``None``: the centre."""
        c = self.jitter // 2
        return jitter.crop_images01(self.x, where or [(c, c)] * self.x.shape[0], self.size, self.mean)

    def adjoint(self, grad: Tensor) -> list[Tensor]:
        """∂E/∂p_k for every level from the canvas gradient ∂E/∂x (N, 3, H + j, W + j)."""
        return pyramid.adjoint(grad, self.count)

    @torch.no_grad()
    def step_(self, optimizer: torch.optim.Optimizer, grads: Sequence[Tensor], clock: SectionClock) -> None:
        """One optimiser step on the levels (p ← p + v), the coarse levels folded into x, then x ← Π(x).

        ``clock`` laps ``step``, ``pyramid fold`` and ``projection``.
        """
        self.previous.copy_(self.x)
        for level, grad in zip(self.levels, grads):
            level.grad = grad
        optimizer.step()
        clock.lap("step")
        if self.count:
            self.x.add_(pyramid.upsample2(pyramid.compose(self.levels[1:]), tuple(self.x.shape[-2:])))
            torch._foreach_zero_(self.levels[1:])
        clock.lap("pyramid fold")
        project_(self.x, self.bound, self.box)
        clock.lap("projection")

    def centre(self, x: Tensor | None = None) -> Tensor:
        """The un-jittered (N, 3, H, W) window of ``x`` (default: the canvas), papers' space, detached."""
        c, (h, w) = self.jitter // 2, self.size
        return (self.x if x is None else x).detach()[:, :, c : c + h, c : c + w]

    def images01(self) -> Tensor:
        """The pre-images: the canvas's centre window as images (N, 3, H, W) in [0, 1]."""
        images01 = (self.centre() + self.mean) / 255
        return images01.clamp(0, 1) if self.clamp01 else images01

    def last_good01(self) -> Tensor:
        """The centre window of ``previous`` (the last canvas with a finite energy) as images01, unclamped."""
        return (self.centre(self.previous) + self.mean) / 255
