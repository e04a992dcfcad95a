"""Streaming ridge regression: the one linear solver behind equivariance and stitching.

Fits ``y ≈ W x + b`` over rows streamed in batches, without ever holding the data. Each batch
adds to the sufficient statistics (float64)::

    n,  Σx,  Σy,  XᵀX (d_in×d_in),  XᵀY (d_in×d_out),  Σy² (per output)

so memory is O(d_in² + d_in·d_out), independent of the number of rows. The solution is closed form
on the centred statistics (the bias is not penalised)::

    C_xx = XᵀX − n μx μxᵀ,   C_xy = XᵀY − n μx μyᵀ
    W = (C_xx + λ I)⁻¹ C_xy,   b = μy − Wᵀ μx

Several λ cost one eigendecomposition of C_xx. The residual Σ‖y − Wᵀx − b‖² of *any* linear map on a
set of rows follows from that set's statistics alone, so λ is chosen on held-out rows
(:func:`select_ridge`) without a second pass over the data.

For feature maps, :func:`stack_neighbours` turns a ``k×k`` neighbourhood into channels (the layout of a
``conv2d`` weight), :func:`to_rows` flattens cells into rows, and :func:`apply_map` applies a fitted
``(W, b)`` as a convolution: a 1×1 channel map (``k = 1``) or a small spatial support.

Example:
    >>> import torch
    >>> from repscope.regression import StreamingRidge
    >>> x = torch.randn(1000, 5); y = x @ torch.randn(5, 3) + 1.0
    >>> acc = StreamingRidge(5, 3)
    >>> for xb, yb in zip(x.split(100), y.split(100)):
    ...     _ = acc.update(xb, yb)
    >>> w, b = acc.solve(1e-6)
    >>> bool(torch.allclose(b, torch.ones(3, dtype=torch.float64), atol=1e-4))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ShapeError

DEFAULT_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class StreamingRidge:
    """Sufficient statistics of a linear regression ``y ≈ W x + b``, accumulated batch by batch.

    Args:
        in_features: ``d_in``, the width of the inputs ``x``.
        out_features: ``d_out``, the width of the targets ``y``.
        bias: fit an (unpenalised) intercept ``b``.
        device: where the statistics live (default: that of the first batch).
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, device=None):
        self.in_features, self.out_features, self.bias = int(in_features), int(out_features), bias
        dd = dict(dtype=torch.float64, device=device)
        self.n = 0
        self.sx = torch.zeros(in_features, **dd)
        self.sy = torch.zeros(out_features, **dd)
        self.xx = torch.zeros(in_features, in_features, **dd)
        self.xy = torch.zeros(in_features, out_features, **dd)
        self.yy = torch.zeros(out_features, **dd)

    def update(self, x: Tensor, y: Tensor) -> StreamingRidge:
        """Add rows ``x (n, d_in)`` and targets ``y (n, d_out)``; returns ``self``."""
        if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
            raise ShapeError(f"update() needs x (n, d_in) and y (n, d_out), got {tuple(x.shape)} and {tuple(y.shape)}.")
        if x.shape[1] != self.in_features or y.shape[1] != self.out_features:
            raise ShapeError(
                f"update() expects widths {self.in_features} -> {self.out_features}, got {x.shape[1]} -> {y.shape[1]}."
            )
        if self.n == 0 and self.xx.device != x.device:
            self._to(x.device)
        x, y = x.detach().to(self.xx.device, torch.float64), y.detach().to(self.xx.device, torch.float64)
        self.n += x.shape[0]
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.xx += x.T @ x
        self.xy += x.T @ y
        self.yy += (y * y).sum(0)
        return self

    def merge(self, other: StreamingRidge) -> StreamingRidge:
        """A new accumulator holding the rows of both ``self`` and ``other`` (same widths and ``bias``)."""
        if (other.in_features, other.out_features, other.bias) != (self.in_features, self.out_features, self.bias):
            raise ShapeError(f"merge() needs the same widths and bias, got {self.in_features} -> {self.out_features} "
                             f"(bias {self.bias}) and {other.in_features} -> {other.out_features} (bias {other.bias}).")
        out = StreamingRidge(self.in_features, self.out_features, bias=self.bias, device=self.xx.device)
        out.n = self.n + other.n
        for name in ("sx", "sy", "xx", "xy", "yy"):
            setattr(out, name, getattr(self, name) + getattr(other, name).to(self.xx.device))
        return out

    def centred(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(C_xx, C_xy, μx, μy)``: centred statistics when ``bias`` is on, raw ones (μ = 0) when off."""
        if not self.bias or self.n == 0:
            return self.xx, self.xy, torch.zeros_like(self.sx), torch.zeros_like(self.sy)
        mx, my = self.sx / self.n, self.sy / self.n
        return self.xx - self.n * torch.outer(mx, mx), self.xy - self.n * torch.outer(mx, my), mx, my

    def lambdas(self, alphas: Sequence[float] = DEFAULT_ALPHAS) -> list[float]:
        """Absolute λ values ``α · trace(C_xx) / d_in`` for relative strengths ``alphas``."""
        cxx = self.centred()[0]
        scale = float(torch.diagonal(cxx).sum()) / max(self.in_features, 1)
        return [a * max(scale, 1e-12) for a in alphas]

    def solve(self, lam: float) -> tuple[Tensor, Tensor]:
        """The ridge solution at ``λ = lam``: weight ``(d_out, d_in)`` and bias ``(d_out,)`` (float64)."""
        return self.solve_path([lam])[0]

    def solve_path(self, lams: Sequence[float]) -> list[tuple[Tensor, Tensor]]:
        """Ridge solutions for every λ in ``lams`` from one eigendecomposition."""
        if self.n == 0:
            raise ShapeError("no rows were accumulated; feed at least one batch before solving.")
        cxx, cxy, mx, my = self.centred()
        evals, evecs = torch.linalg.eigh(cxx)
        proj = evecs.T @ cxy
        out = []
        for lam in lams:
            theta = evecs @ (proj / (evals.clamp_min(0) + lam).unsqueeze(1))  # (d_in, d_out)
            out.append((theta.T.contiguous(), my - theta.T @ mx))
        return out

    def total(self) -> float:
        """``Σ‖y‖²`` over the accumulated rows."""
        return float(self.yy.sum())

    def residual(self, weight: Tensor, bias: Tensor | None = None) -> float:
        """``Σ‖y − W x − b‖²`` over the accumulated rows, for any ``weight (d_out, d_in)``, ``bias (d_out,)``."""
        theta = weight.to(self.xx.device, torch.float64).T
        r = self.yy.sum() - 2 * (theta * self.xy).sum() + (theta * (self.xx @ theta)).sum()
        if bias is not None:
            b = bias.to(self.xx.device, torch.float64)
            r = r - 2 * (b * self.sy).sum() + 2 * b @ (theta.T @ self.sx) + self.n * (b * b).sum()
        return max(float(r), 0.0)

    def correlation(self) -> Tensor:
        """Pearson correlation ``(d_in, d_out)`` between every input and every target column."""
        n = max(self.n, 1)
        mx, my = self.sx / n, self.sy / n
        cxx_diag = torch.diagonal(self.xx) - self.n * mx * mx
        cxy = self.xy - self.n * torch.outer(mx, my)
        vx = cxx_diag.clamp_min(1e-12)
        vy = (self.yy - self.n * my * my).clamp_min(1e-12)
        return cxy / torch.sqrt(torch.outer(vx, vy))

    def _to(self, device) -> None:
        for name in ("sx", "sy", "xx", "xy", "yy"):
            setattr(self, name, getattr(self, name).to(device))


def select_ridge(
    train: StreamingRidge, held_out: StreamingRidge, alphas: Sequence[float] = DEFAULT_ALPHAS
) -> tuple[float, dict[float, float]]:
    """Choose λ minimising the held-out residual of the ridge fitted on ``train``.

    Returns:
        ``(best λ, {λ: held-out relative error Σ‖y − Wx − b‖² / Σ‖y‖²})``.
    """
    lams = train.lambdas(alphas)
    total = max(held_out.total(), 1e-30)
    errors = {lam: held_out.residual(w, b) / total for lam, (w, b) in zip(lams, train.solve_path(lams))}
    return min(errors, key=errors.get), errors


def ridge(x: Tensor, y: Tensor, lam: float, *, bias: bool = True) -> tuple[Tensor, Tensor]:
    """All-in-memory ridge regression (the reference for :class:`StreamingRidge`), float64.

    Args:
        x: inputs ``(n, d_in)``. y: targets ``(n, d_out)``. lam: λ ≥ 0. bias: fit an unpenalised intercept.

    Returns:
        weight ``(d_out, d_in)`` and bias ``(d_out,)``.
    """
    x, y = x.double(), y.double()
    mx, my = (x.mean(0), y.mean(0)) if bias else (x.new_zeros(x.shape[1]), y.new_zeros(y.shape[1]))
    xc, yc = x - mx, y - my
    a = xc.T @ xc + lam * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    theta = torch.linalg.solve(a, xc.T @ yc)
    return theta.T, my - theta.T @ mx


def stack_neighbours(features: Tensor, kernel: int = 1) -> Tensor:
    """Stack each cell's ``k×k`` neighbourhood as channels (zero padding).

    Args:
        features: ``(N, C, h, w)``.
        kernel: odd ``k``; 1 returns ``features`` unchanged.

    Returns:
        ``(N, C·k·k, h, w)``, channel ``c·k² + dy·k + dx`` holding ``features[c]`` at offset
        ``(dy − k//2, dx − k//2)``: the layout of a ``conv2d`` weight ``(out, C, k, k)``.
    """
    if kernel == 1:
        return features
    if kernel < 1 or kernel % 2 == 0:
        raise ShapeError(f"kernel must be a positive odd integer, got {kernel}; use 1 or 3.")
    n, c, h, w = features.shape
    cols = F.unfold(features, kernel, padding=kernel // 2)  # (N, C·k·k, h·w)
    return cols.reshape(n, c * kernel * kernel, h, w)


def to_rows(features: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cells as rows: ``(N, C, h, w)`` → ``(N·valid cells, C)``; ``(N, D)`` is returned as is."""
    if features.dim() == 2:
        return features
    rows = features.permute(0, 2, 3, 1)
    if mask is not None and mask.dim() == 2:
        return rows[:, mask].reshape(-1, features.shape[1])
    return rows.reshape(-1, features.shape[1])


def apply_map(features: Tensor, weight: Tensor, bias: Tensor | None = None, kernel: int = 1) -> Tensor:
    """Apply a fitted channel map to features: ``W * Φ + b`` (a ``k×k`` convolution, zero padding).

    Args:
        features: ``(N, C, h, w)`` or vectors ``(N, C)``.
        weight: ``(C_out, C·k·k)`` from :meth:`StreamingRidge.solve` on :func:`stack_neighbours` rows.
        bias: ``(C_out,)`` or None.
        kernel: the ``k`` used when fitting.

    Returns:
        ``(N, C_out, h, w)`` (or ``(N, C_out)``), in the dtype of ``features``.
    """
    weight = weight.to(features.device, features.dtype)
    bias = None if bias is None else bias.to(features.device, features.dtype)
    if features.dim() == 2:
        return F.linear(features, weight, bias)
    c = features.shape[1]
    return F.conv2d(features, weight.reshape(weight.shape[0], c, kernel, kernel), bias, padding=kernel // 2)
