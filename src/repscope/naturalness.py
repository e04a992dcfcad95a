r"""How natural is a pre-image? Transfer to networks that never saw it, and simple image statistics.

Mahendran & Vedaldi (IJCV 2016) call a pre-image *natural* when a person recognises it. Without a
person, the closest measure is *transfer*: maximise ImageNet class k at the logits of network A,
then ask networks B that did not produce the image which class they see. An image that only
exploits A's idiosyncrasies (adversarial texture) is class k for A alone; an image with the
class's shapes and colours is class k for B too.

.. math::

    \mathrm{rank}_B(x, k) = 1 + \#\{c \ne k : f_B(x)_c > f_B(x)_k\},
    \qquad \mathrm{top}_m = \mathbb{1}[\mathrm{rank}_B(x, k) \le m],
    \qquad \mathrm{rate}_m(B) = \frac{1}{|K|} \sum_{k \in K} \mathrm{top}_m(x_k)

with f_B the logits of B (its own forward, at its own input size) and K a fixed, seeded class set
(:func:`default_classes`). A network B that *is* A (the same object, module or weights) is refused.

Next to it, three statistics of images (N, 3, H, W) in [0, 1], to compare with photos:

- :func:`tv_per_pixel`: mean absolute difference between neighbouring pixels, (1/2)(mean |Δh| +
  mean |Δv|) over channels; 0 for a flat image, 1 for a 0/1 checkerboard.
- :func:`saturation`: mean HSV saturation (max − min)/max of the RGB vector; 0 for grey.
- :func:`spectral_slope`: the slope of log radially averaged power against log spatial frequency
  (cycles per pixel), a least-squares line over 1 ≤ |f|·S < S/2; white noise ≈ 0, natural photos
  ≈ −2 (power ∝ 1/f², Field 1987).

Example:
    >>> import torch
    >>> from repscope.naturalness import default_classes, tv_per_pixel
    >>> len(default_classes(seed=0)), default_classes(seed=0) == default_classes(seed=0)
    (20, True)
    >>> tv_per_pixel(torch.zeros(1, 3, 8, 8)).tolist()
    [0.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import RepscopeError, ShapeError
from .models import Model, as_model

__all__ = ["default_classes", "transfer", "transfer_to", "transfer_rates", "same_network", "tv_per_pixel", "saturation",
           "radial_power", "spectral_slope", "image_statistics"]


def default_classes(seed: int = 0, count: int = 20, num_classes: int = 1000) -> list[int]:
    """A fixed, seeded set of ``count`` distinct ImageNet classes, sorted (the transfer benchmark's K)."""
    if not 1 <= count <= num_classes:
        raise RepscopeError(f"class count {count} is out of range; use 1..{num_classes} (the default is 20).")
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(int(k) for k in order[:count])


def same_network(a: Model, b: Model) -> bool:
    """True when ``b`` is ``a`` itself, wraps the same module, or holds exactly the same weights."""
    if a is b or a.module is b.module:
        return True
    pa, pb = list(a.module.state_dict().values()), list(b.module.state_dict().values())
    if len(pa) != len(pb) or any(x.shape != y.shape for x, y in zip(pa, pb)):
        return False
    return all(torch.equal(x.detach().cpu(), y.detach().cpu()) for x, y in zip(pa, pb))


def _check_images(images01: Tensor) -> None:
    if not isinstance(images01, Tensor) or images01.dim() != 4 or images01.shape[1] != 3:
        shape = tuple(images01.shape) if isinstance(images01, Tensor) else type(images01).__name__
        raise ShapeError(f"expected images (N, 3, H, W) in [0, 1], got {shape}; add a batch dimension with x[None].")


def _named(models: Mapping[str, Model] | Sequence[Model]) -> dict[str, Model]:
    if isinstance(models, Mapping):
        return {str(k): as_model(v) for k, v in models.items()}
    named = {}
    for i, m in enumerate(models):
        m = as_model(m)
        named[m.name if m.name not in named else f"{m.name}#{i}"] = m
    return named


@torch.no_grad()
def transfer(images01: Tensor, classes: Sequence[int], models: Mapping[str, Model] | Sequence[Model], *,
             source: Model | None = None, resize: bool = True) -> dict[str, list[dict]]:
    """Classify each image with each network B and report where its intended class k lands.

    Args:
        images01: images (N, 3, H, W) in [0, 1], image i made for class ``classes[i]``.
        classes: N class indices k.
        models: the networks B, ``{name: Model}`` or a list (named by ``Model.name``).
        source: network A that produced the images; any B that is A (object, module or weights) is refused.
        resize: bilinearly resize the images to each B's ``preprocessing.input_size`` (its own resolution).

    Returns:
        ``{name: [{"top1": bool, "top5": bool, "rank": int}, ...]}``, one dict per image; rank is 1-based.

    Raises:
        RepscopeError: B is the source network, or a class is outside B's outputs.
    """
    _check_images(images01)
    classes = [int(k) for k in classes]
    if len(classes) != images01.shape[0]:
        raise ShapeError(f"{images01.shape[0]} images but {len(classes)} classes; give one class per image.")
    named = _named(models)
    if source is not None:
        for name, b in named.items():
            if same_network(as_model(source), b):
                raise RepscopeError(f"transfer network '{name}' is the network that made the images; "
                                    "transfer must be measured with other networks (e.g. efficientnet_lite1).")
    out = {}
    for name, b in named.items():
        x = images01
        size = b.preprocessing.input_size
        if resize and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        logits = b(x.to(b.device)).float()
        if logits.dim() != 2 or max(classes) >= logits.shape[1] or min(classes) < 0:
            raise RepscopeError(f"network '{name}' gives outputs {tuple(logits.shape)}; classes must index its "
                                "logits (use an ImageNet classifier).")
        target = logits[torch.arange(len(classes)), torch.tensor(classes)]
        ranks = 1 + (logits > target[:, None]).sum(1)
        out[name] = [{"top1": int(r) == 1, "top5": int(r) <= 5, "rank": int(r)} for r in ranks]
    return out


def transfer_to(images01: Tensor, classes: Sequence[int], names: Sequence[str], *, source: Model,
                device: torch.device | str = "cpu") -> list[dict[str, dict]]:
    """Per image, ``{name: {"top1", "top5", "rank"}}`` for networks loaded by name (:func:`repscope.models.load`).

    The per-item form of :func:`transfer` that ``repscope maximize --transfer-to`` records.
    """
    from .models import load

    named = {name: load(name, device=device) for name in dict.fromkeys(names)}
    per_network = transfer(images01.to(device), classes, named, source=source)
    return [{name: rows[i] for name, rows in per_network.items()} for i in range(images01.shape[0])]


def transfer_rates(per_image: Mapping[str, Sequence[Mapping]]) -> dict[str, dict[str, float]]:
    """Top-1 / top-5 rates and the median rank per network from :func:`transfer`'s output.

    Also ``"all"``: the rates over every (image, network) pair.
    """
    out = {}
    pooled: list[Mapping] = []
    for name, rows in per_image.items():
        rows = list(rows)
        pooled += rows
        out[name] = _rates(rows)
    if len(per_image) > 1:
        out["all"] = _rates(pooled)
    return out


def _rates(rows: Sequence[Mapping]) -> dict[str, float]:
    if not rows:
        return {"top1": float("nan"), "top5": float("nan"), "median_rank": float("nan")}
    ranks = sorted(int(r["rank"]) for r in rows)
    return {"top1": sum(bool(r["top1"]) for r in rows) / len(rows),
            "top5": sum(bool(r["top5"]) for r in rows) / len(rows),
            "median_rank": float(torch.tensor(ranks, dtype=torch.float64).median())}


def tv_per_pixel(images01: Tensor) -> Tensor:
    """(N,) mean absolute neighbour difference, (mean |Δh| + mean |Δv|)/2 over all channels, in [0, 1] units."""
    _check_images(images01)
    x = images01.double()
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3)) if x.shape[-1] > 1 else x.new_zeros(len(x))
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) if x.shape[-2] > 1 else x.new_zeros(len(x))
    return ((dh + dv) / 2).to(images01.dtype)


def saturation(images01: Tensor) -> Tensor:
    """(N,) mean HSV saturation (max_c − min_c)/max_c per pixel (0 where the pixel is black)."""
    _check_images(images01)
    high, low = images01.amax(1), images01.amin(1)
    s = torch.where(high > 0, (high - low) / high.clamp_min(1e-12), torch.zeros_like(high))
    return s.mean(dim=(1, 2))


def radial_power(images01: Tensor, window: bool = True) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum of each image's grey level.

    Args:
        images01: (N, C, H, W); the grey level is the channel mean, its mean subtracted.
        window: multiply by a 2-D Hann window first (keeps the image border's jump out of the spectrum).

    Returns:
        (frequencies (B,), in cycles per pixel, for integer radii 1..⌊min(H, W)/2⌋−1 of a square
        S = min(H, W) crop; power (N, B)).
    """
    if images01.dim() != 4:
        raise ShapeError(f"expected images (N, C, H, W), got {tuple(images01.shape)}.")
    s = min(images01.shape[-2:])
    if s < 8:
        raise ShapeError(f"images of {s} pixels are too small for a spectrum; use at least 8x8.")
    grey = images01[..., :s, :s].double().mean(1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    if window:
        hann = torch.hann_window(s, periodic=False, dtype=grey.dtype, device=grey.device)
        grey = grey * (hann[:, None] * hann[None, :])
    power = torch.fft.fft2(grey).abs().pow(2) / (s * s)
    f = torch.fft.fftfreq(s, dtype=grey.dtype, device=grey.device)
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt() * s  # in frequency bins
    bins = radius.round().long().flatten()
    count = s // 2
    sums = power.new_zeros(power.shape[0], count + 1).index_add_(1, bins.clamp_max(count), power.flatten(1))
    n = torch.bincount(bins.clamp_max(count), minlength=count + 1).to(power.dtype)
    keep = torch.arange(1, count)  # drop DC and the clipped corner bin
    return keep.to(power.dtype) / s, sums[:, keep] / n[keep]


def spectral_slope(images01: Tensor, window: bool = True) -> Tensor:
    """(N,) least-squares slope of log power against log frequency (:func:`radial_power`).

    White noise gives ≈ 0; an image with power ∝ |f|^−a gives ≈ −a; natural photos ≈ −2.
    """
    freqs, power = radial_power(images01, window=window)
    lx = freqs.log()
    ly = power.clamp_min(1e-300).log()
    lx_c = lx - lx.mean()
    slope = ((ly - ly.mean(1, keepdim=True)) * lx_c).sum(1) / lx_c.pow(2).sum()
    return slope.to(images01.dtype)


def image_statistics(images01: Tensor) -> dict[str, Tensor]:
    """``{"tv_per_pixel", "saturation", "spectral_slope"}``, each (N,), for images (N, 3, H, W) in [0, 1]."""
    return {"tv_per_pixel": tv_per_pixel(images01), "saturation": saturation(images01),
            "spectral_slope": spectral_slope(images01)}
