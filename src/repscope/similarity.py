"""Similarity indices between representations: linear, RBF and debiased CKA, and minibatch CKA.

Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited", ICML 2019.
For features ``X (n, d_x)`` and ``Y (n, d_y)`` of the same ``n`` inputs, with Gram matrices
``K = k(X, X)`` and ``L = k(Y, Y)`` (``n × n``) and the centring matrix ``H = I − 11ᵀ/n``::

    HSIC(K, L) = tr(K H L H) / (n − 1)²
    CKA(K, L)  = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

Linear CKA (``k(x, x') = xᵀx'``) needs no Gram matrix when ``n > d``: with column-centred X, Y,
``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``. It is invariant to orthogonal maps and isotropic scaling of
either side, not to general invertible maps. RBF CKA uses ``k(x, x') = exp(−‖x − x'‖² / (2 σ² m))``
with ``m`` the median squared distance, so ``sigma`` is a fraction of the median distance (the paper's
heuristic; 0.5 in its notebook).

*Debiased* CKA replaces each HSIC by the unbiased estimator of Song et al. (2007, 2012), written
through U-centring (Székely & Rizzo 2014): zero the diagonal of K, subtract row and column sums
``/(n − 2)``, add back the total ``/((n − 1)(n − 2))``, zero the diagonal again; then
``HSIC₁(K, L) = ⟨Ũ(K), Ũ(L)⟩ / (n (n − 3))``. Biased CKA of independent inputs is large when n is
small compared with d; debiased CKA is near 0 (it can be negative).

*Minibatch* CKA (Nguyen, Raghu & Kornblith, ICLR 2021) streams over batches of ``b ≥ 4`` inputs and
averages the unbiased HSIC of each batch's Gram matrices::

    CKA_mb = mean_i HSIC₁(K_i, L_i) / sqrt(mean_i HSIC₁(K_i, K_i) · mean_i HSIC₁(L_i, L_i))

so memory is ``O(b²)`` per layer pair, independent of the number of inputs (:class:`MinibatchCKA`);
with one batch it is exactly debiased linear CKA. :class:`CKAMatrix` does it for every pair of two
lists of layers, computing each layer's Gram matrix once per batch.

Feature maps ``(N, C, h, w)`` are flattened per input (``(N, C·h·w)``) by :func:`flatten_features`;
``positions=P`` samples ``P`` spatial cells per input instead (rows ``(N·P, C)``, the same cells for
both representations when their grids match), an explicit option.

Example:
    >>> import torch
    >>> from repscope.similarity import linear_cka
    >>> x = torch.randn(200, 10, dtype=torch.float64)
    >>> q, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    >>> round(linear_cka(x, 3 * x @ q), 6)
    1.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ShapeError

__all__ = ["CKAMatrix", "MinibatchCKA", "center_gram", "cka", "flatten_features", "gram_linear", "gram_rbf",
           "hsic_unbiased", "linear_cka", "rbf_cka"]


def flatten_features(features: Tensor, *, positions: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """Features as rows for CKA: ``(N, C, h, w)`` → ``(N, C·h·w)``; ``(N, D)`` unchanged.

    Args:
        features: ``(N, D)`` or ``(N, C, h, w)``.
        positions: if given, sample this many cells per input (with ``generator``) and return
            ``(N·positions, C)``: cells become the examples (per-position sampling).
        generator: the random source of the sampled cells (a fixed seed gives the same cells).
    """
    if features.dim() == 2 and positions is None:
        return features
    if features.dim() != 4:
        if features.dim() >= 2 and positions is None:
            return features.reshape(features.shape[0], -1)
        raise ShapeError(f"per-position sampling needs (N, C, h, w) features, got {tuple(features.shape)}.")
    n, c, h, w = features.shape
    if positions is None:
        return features.reshape(n, -1)
    cells = torch.randint(0, h * w, (n, int(positions)), generator=generator).to(features.device)
    flat = features.reshape(n, c, h * w)
    return torch.gather(flat, 2, cells[:, None, :].expand(n, c, -1)).permute(0, 2, 1).reshape(-1, c)


def _rows(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = flatten_features(x), flatten_features(y)
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"CKA needs the same inputs on both sides, got {x.shape[0]} and {y.shape[0]} rows.")
    if x.shape[0] < 4:
        raise ShapeError(f"CKA needs at least 4 inputs, got {x.shape[0]}. Use more images.")
    return x.double(), y.double()


def gram_linear(x: Tensor) -> Tensor:
    """Linear kernel ``K = X Xᵀ``: ``(n, d)`` → ``(n, n)``."""
    return x @ x.T


def gram_rbf(x: Tensor, sigma: float = 1.0) -> Tensor:
    """RBF kernel ``exp(−‖xᵢ − xⱼ‖² / (2 σ² m))``, ``m`` = median squared distance (diagonal included).

    Args:
        x: ``(n, d)``. sigma: bandwidth as a fraction of the median distance.
    """
    dots = x @ x.T
    sq = torch.diagonal(dots)
    dist = (sq[:, None] + sq[None, :] - 2 * dots).clamp_min(0)
    median = torch.quantile(dist.flatten(), 0.5)  # numpy's median: the mean of the two middle values
    return torch.exp(-dist / (2 * sigma ** 2 * median.clamp_min(1e-30)))


def center_gram(gram: Tensor, unbiased: bool = False) -> Tensor:
    """``H K H`` (biased), or the U-centred Gram matrix of the unbiased HSIC estimator.

    Args:
        gram: a symmetric ``(n, n)`` matrix. unbiased: U-centre (``n ≥ 4``; zero diagonal).
    """
    gram = gram.clone()
    n = gram.shape[0]
    if unbiased:
        gram.fill_diagonal_(0)
        means = gram.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        gram = gram - means[:, None] - means[None, :]
        return gram.fill_diagonal_(0)
    means = gram.mean(0)
    means = means - means.mean() / 2
    return gram - means[:, None] - means[None, :]


def hsic_unbiased(gram_x: Tensor, gram_y: Tensor) -> Tensor:
    """The unbiased HSIC₁ of two ``(n, n)`` Gram matrices: ``⟨Ũ(K), Ũ(L)⟩ / (n (n − 3))`` (scalar)."""
    n = gram_x.shape[0]
    return (center_gram(gram_x, True) * center_gram(gram_y, True)).sum() / (n * (n - 3))


def cka(gram_x: Tensor, gram_y: Tensor, debiased: bool = False) -> float:
    """CKA of two ``(n, n)`` Gram matrices: ``⟨K̃, L̃⟩ / (‖K̃‖_F ‖L̃‖_F)``, K̃ the (U-)centred K."""
    kx, ky = center_gram(gram_x.double(), debiased), center_gram(gram_y.double(), debiased)
    return float((kx * ky).sum() / (torch.linalg.norm(kx) * torch.linalg.norm(ky)).clamp_min(1e-300))


def _debiased_dot(xty_sq: Tensor, rows_x: Tensor, rows_y: Tensor, n: int) -> Tensor:
    """Unbiased linear HSIC (times n(n−3)) from feature-space statistics (Kornblith et al., appendix)."""
    return xty_sq - n / (n - 2) * rows_x @ rows_y + rows_x.sum() * rows_y.sum() / ((n - 1) * (n - 2))


def linear_cka(x: Tensor, y: Tensor, debiased: bool = False) -> float:
    """Linear CKA of ``x (n, d_x)`` and ``y (n, d_y)`` (feature maps are flattened per input).

    Computed in feature space when ``n`` exceeds both widths, else through the ``(n, n)`` Gram matrices
    (the two are equal). ``debiased`` uses the unbiased HSIC estimator (``n ≥ 4``). float64 throughout.
    """
    x, y = _rows(x, y)
    n = x.shape[0]
    if max(x.shape[1], y.shape[1]) >= n:
        return cka(gram_linear(x), gram_linear(y), debiased)
    x, y = x - x.mean(0), y - y.mean(0)
    xy, xx, yy = (torch.linalg.norm(y.T @ x) ** 2, torch.linalg.norm(x.T @ x) ** 2, torch.linalg.norm(y.T @ y) ** 2)
    if debiased:
        rx, ry = (x * x).sum(1), (y * y).sum(1)
        xy, xx, yy = _debiased_dot(xy, rx, ry, n), _debiased_dot(xx, rx, rx, n), _debiased_dot(yy, ry, ry, n)
    return float(xy / torch.sqrt(xx * yy).clamp_min(1e-300))


def rbf_cka(x: Tensor, y: Tensor, sigma: float = 0.5, debiased: bool = False) -> float:
    """RBF CKA of ``x (n, d_x)`` and ``y (n, d_y)``; ``sigma`` is a fraction of the median distance."""
    if not sigma > 0:
        raise ShapeError(f"sigma must be a positive fraction of the median distance, got {sigma}; try 0.5.")
    x, y = _rows(x, y)
    return cka(gram_rbf(x, sigma), gram_rbf(y, sigma), debiased)


class MinibatchCKA:
    """Minibatch linear CKA (Nguyen et al. 2021), streamed: memory independent of the number of inputs.

    Each :meth:`update` adds one batch's unbiased HSIC₁(K, L), HSIC₁(K, K), HSIC₁(L, L) (linear
    kernels); :meth:`value` is their mean ratio. Batches need at least 4 inputs.
    """

    def __init__(self):
        self.xy = self.xx = self.yy = 0.0
        self.batches = 0

    def update(self, x: Tensor, y: Tensor) -> MinibatchCKA:
        """Add a batch ``x (b, d_x)``, ``y (b, d_y)`` (feature maps flattened); returns ``self``."""
        x, y = _rows(x.detach(), y.detach())
        return self.update_grams(gram_linear(x), gram_linear(y))

    def update_grams(self, gram_x: Tensor, gram_y: Tensor) -> MinibatchCKA:
        """Add a batch given its two ``(b, b)`` Gram matrices."""
        if gram_x.shape[0] < 4:
            raise ShapeError(f"minibatch CKA needs batches of at least 4 inputs, got {gram_x.shape[0]}.")
        return self.update_centred(center_gram(gram_x.double(), True), center_gram(gram_y.double(), True))

    def update_centred(self, ux: Tensor, uy: Tensor) -> MinibatchCKA:
        """Add a batch given its two U-centred Gram matrices (:func:`center_gram` ``unbiased=True``)."""
        scale = ux.shape[0] * (ux.shape[0] - 3)
        self.xy += float((ux * uy).sum()) / scale
        self.xx += float((ux * ux).sum()) / scale
        self.yy += float((uy * uy).sum()) / scale
        self.batches += 1
        return self

    def value(self) -> float:
        """``Σ HSIC₁(K_i, L_i) / sqrt(Σ HSIC₁(K_i, K_i) Σ HSIC₁(L_i, L_i))``."""
        if self.batches == 0:
            raise ShapeError("no batch was added; call update() before value().")
        return self.xy / max((self.xx * self.yy) ** 0.5, 1e-300)


class CKAMatrix:
    """Minibatch CKA between every layer of ``names_a`` and every layer of ``names_b``.

    :meth:`update` takes ``{name: features}`` for both sides of one batch; each Gram matrix is computed
    once per batch. :meth:`value` returns a ``(len(names_a), len(names_b))`` float64 tensor.
    """

    def __init__(self, names_a, names_b):
        self.names_a, self.names_b = list(names_a), list(names_b)
        self.cells = {(a, b): MinibatchCKA() for a in self.names_a for b in self.names_b}

    def update(self, feats_a: dict[str, Tensor], feats_b: dict[str, Tensor]) -> CKAMatrix:
        n = next(iter(feats_a.values())).shape[0]
        if n < 4:
            raise ShapeError(f"minibatch CKA needs batches of at least 4 inputs, got {n}.")
        centred = lambda f: center_gram(gram_linear(flatten_features(f.detach()).double()), True)  # noqa: E731
        grams_a = {a: centred(feats_a[a]) for a in self.names_a}
        grams_b = {b: centred(feats_b[b]) for b in self.names_b}
        for (a, b), cell in self.cells.items():
            cell.update_centred(grams_a[a], grams_b[b])
        return self

    def value(self) -> Tensor:
        return torch.tensor([[self.cells[a, b].value() for b in self.names_b] for a in self.names_a],
                            dtype=torch.float64)
