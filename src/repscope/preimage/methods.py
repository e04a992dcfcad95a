"""``invert``, ``maximize``, ``caricature``: thin wrappers that build an objective and call the engine.

Mahendran & Vedaldi, IJCV 2016: the three visualisations of the talk are one regularised energy
(see :mod:`repscope.preimage.engine`) with three data terms (see :mod:`repscope.preimage.objectives`).

Example:
    >>> import torch
    >>> from repscope.preimage import invert
    >>> phi = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    >>> r = invert(phi, torch.rand(1, 3, 32, 32), iters=30)
    >>> sorted(r.metrics)
    ['error', 'total_variation']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import LayerError, RangeError
from ..layers import check_images
from .config import PreimageConfig, PreimageResult
from .engine import optimise
from .objectives import Caricature, Invert, Maximize, Unit, unit_weights

__all__ = ["invert", "maximize", "caricature", "unit_label"]


def _config(config: PreimageConfig | None, iters: int | None) -> PreimageConfig:
    """``config`` (default :class:`PreimageConfig`) with ``iters``; a non-positive or non-finite lr /
    iteration count is a :class:`~repscope.errors.RangeError` naming the fix (as the CLI's ``--lr``, ``--iters``)."""
    cfg = config if config is not None else PreimageConfig()
    cfg = dataclasses.replace(cfg, iters=int(iters)) if iters is not None else cfg
    if cfg.lr is not None and not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise RangeError(f"lr={cfg.lr!r}: the learning rate must be a finite number > 0. "
                         "Pass e.g. lr=0.05, or lr=None for the default.")
    if not (isinstance(cfg.iters, int) and cfg.iters >= 1):
        raise RangeError(f"iters={cfg.iters!r}: at least 1 iteration is needed. Pass e.g. iters=200.")
    return cfg


def _images(images01: Tensor, representation: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``images01`` after the shared check (:func:`repscope.layers.check_images`: a finite float
    ``(N, 3, H, W)`` batch in Φ's dtype, on its device when Φ is an ``nn.Module`` with tensors)."""
    check_images(images01, representation if isinstance(representation, torch.nn.Module) else None)
    return images01


def invert(
    representation: Callable[[Tensor], Tensor],
    images01: Tensor,
    *,
    iters: int | None = None,
    config: PreimageConfig | None = None,
    seed: int = 0,
    quiet: bool = True,
) -> PreimageResult:
    """Reconstruct images from their representation: argmin ‖Φ(x) − Φ(x0)‖²/‖Φ(x0)‖² + priors.

    Args:
        representation: Φ, images01 (N, 3, H, W) -> features.
        images01: the images x0 to invert, (N, 3, H, W) in [0, 1].
        iters: iterations (overrides ``config.iters``; default 200).
        config: hyperparameters (default :class:`PreimageConfig`).
        seed: image i starts from noise with seed ``seed + i``.
        quiet: hide the progress bar.

    Returns:
        :class:`PreimageResult`; ``metrics["error"]`` is ‖Φ(x*) − Φ0‖ / ‖Φ0‖ per image.
    """
    images01 = _images(images01, representation)
    with torch.no_grad():
        target = representation(images01)
    res = optimise(
        representation, Invert(target), size=tuple(images01.shape[-2:]), batch=images01.shape[0],
        config=_config(config, iters), seed=seed, device=images01.device, quiet=quiet, desc="invert",
    )
    res.labels = [f"image {i}" for i in range(images01.shape[0])]
    return res


def unit_label(unit: Unit) -> str:
    """A short label for a unit: ``"12"``, ``"(12, 3, 4)"`` or ``"direction"``."""
    if isinstance(unit, Tensor):
        return "direction"
    return str(tuple(int(v) for v in unit)) if isinstance(unit, (tuple, list)) else str(int(unit))


def maximize(
    representation: Callable[[Tensor], Tensor],
    units: Unit | Sequence[Unit],
    *,
    size: tuple[int, int] = (224, 224),
    spatial: str = "mean",
    reference01: Tensor | None = None,
    leak: float | None = 0.05,
    iters: int | None = None,
    config: PreimageConfig | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    quiet: bool = True,
) -> PreimageResult:
    """Images that maximise units of Φ: argmin −⟨w_k, Φ(x)⟩ / Z + priors, one image per unit.

    Args:
        representation: Φ, images01 (N, 3, H, W) -> features.
        units: a unit or a list (channel/class ``k``, neuron ``(k, i, j)``, or a direction tensor).
        size: (H, W) of the images.
        spatial: ``"mean"`` (channel averaged over space) or ``"center"`` (its centre cell).
        reference01: photos (M, 3, H, W); if given, Z is each unit's largest value over them
            (papers' normalisation) and ``metrics["ratio"]`` = activation / that value.
        leak: slope of the leaky rectifiers used while optimising (papers: 0.05; ``None``: off);
            overrides ``config.leak``.
        iters: iterations (default 200).
        config: hyperparameters (default :class:`PreimageConfig`).
        seed: image i starts from noise with seed ``seed + i``.
        device: where to optimise (default: ``reference01``'s device, else Φ's parameters', else the CPU).
        quiet: hide the progress bar.

    Returns:
        :class:`PreimageResult`; ``metrics["activation"]`` is ⟨w_k, Φ(x*)⟩ (network without leak).
    """
    units = list(units) if isinstance(units, (list, tuple)) and not _is_neuron(units) else [units]
    if not units:
        raise LayerError("no unit to maximise (units=[]). Pass a channel k, a neuron (k, i, j), or a list of them.")
    scale = None
    best = None
    if reference01 is not None:
        with torch.no_grad():
            f = representation(_images(reference01, representation))
        w = unit_weights(units, f.shape[1:], spatial).to(f.device, f.dtype)
        acts = f.reshape(1, f.shape[0], -1) * w.reshape(len(units), 1, -1)
        best = acts.sum(-1).max(dim=1).values  # (N,) largest value per unit over the photos
        scale = best.abs().clamp_min(1e-6)
    res = optimise(
        representation, Maximize(units, spatial=spatial, scale=scale), size=size, batch=len(units),
        config=dataclasses.replace(_config(config, iters), leak=leak), seed=seed, quiet=quiet, desc="maximize",
        device=device if device is not None or reference01 is None else reference01.device,
    )
    if best is not None:
        res.metrics["reference_max"] = best
        res.metrics["ratio"] = res.metrics["activation"] / scale
    res.labels = [unit_label(u) for u in units]
    return res


def _is_neuron(u) -> bool:
    return isinstance(u, tuple) and len(u) == 3 and all(isinstance(v, int) for v in u)


def caricature(
    representation: Callable[[Tensor], Tensor],
    images01: Tensor,
    *,
    iters: int | None = None,
    config: PreimageConfig | None = None,
    seed: int = 0,
    quiet: bool = True,
) -> PreimageResult:
    """Exaggerate what Φ sees in x0: argmin −⟨Φ(x0), Φ(x)⟩/‖Φ(x0)‖² + priors, starting at x0.

    Args:
        representation: Φ, images01 (N, 3, H, W) -> features.
        images01: the images x0, (N, 3, H, W) in [0, 1].
        iters: iterations (default 200).
        config: hyperparameters (default :class:`PreimageConfig`).
        seed: jitter seed of image i is ``seed + i``.
        quiet: hide the progress bar.

    Returns:
        :class:`PreimageResult`; ``metrics["gain"]`` = ⟨Φ(x0), Φ(x*)⟩ / ‖Φ(x0)‖² (> 1: exaggerated).
    """
    images01 = _images(images01, representation)
    with torch.no_grad():
        reference = representation(images01)
    res = optimise(
        representation, Caricature(reference), start01=images01, config=_config(config, iters),
        seed=seed, quiet=quiet, desc="caricature",
    )
    res.labels = [f"image {i}" for i in range(images01.shape[0])]
    return res
