"""CKA: agreement with an independent numpy derivation and the published notebook values, invariances,
debiasing, minibatch streaming."""

import numpy as np
import pytest
import torch

from repscope.errors import ShapeError
from repscope.similarity import (CKAMatrix, MinibatchCKA, cka, flatten_features, gram_linear, gram_rbf,
                                 hsic_unbiased, linear_cka, rbf_cka)


# ---- an independent numpy reference (explicit centring matrix; Song et al.'s unbiased HSIC) ----------
def _np_hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def _np_hsic_unbiased(k, l):
    """Song et al. (2012), eq. 5:
    [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)), K̃ = K with a zero diagonal."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def _np_cka(k, l, debiased=False):
    hsic = _np_hsic_unbiased if debiased else _np_hsic_biased
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _np_rbf(x, sigma):
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d / (2 * sigma ** 2 * np.median(d)))


@pytest.fixture(scope="module")
def notebook_data():
    """The notebook's own example: seed 1337, X ~ N(0, 1) 100×10, Y = X + N(0, 1)."""
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_agrees_with_the_published_notebook_values(notebook_data):
    x, y = (torch.from_numpy(a) for a in notebook_data)
    # values printed in google-research/representation_similarity/Demo.ipynb (5 decimals)
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=1e-5)
    assert linear_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=1e-5)
    assert rbf_cka(x, y, 0.5) == pytest.approx(0.65483, abs=1e-5)


def test_agrees_with_independent_numpy_derivation(notebook_data):
    x, y = notebook_data
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    kx, ky = x @ x.T, y @ y.T
    for debiased in (False, True):
        ref = _np_cka(kx, ky, debiased)
        assert abs(linear_cka(tx, ty, debiased) - ref) < 1e-10           # feature-space path (n > d)
        assert abs(cka(gram_linear(tx), gram_linear(ty), debiased) - ref) < 1e-10  # Gram path
        assert abs(rbf_cka(tx, ty, 0.5, debiased) - _np_cka(_np_rbf(x, .5), _np_rbf(y, .5), debiased)) < 1e-10
    assert float(hsic_unbiased(gram_linear(tx), gram_linear(ty))) == pytest.approx(_np_hsic_unbiased(kx, ky), rel=1e-10)
    # wide features (d > n) take the Gram path: same numbers
    rng = np.random.default_rng(0)
    wx, wy = rng.normal(size=(30, 80)), rng.normal(size=(30, 50))
    wy[:, :10] += wx[:, :10]
    for debiased in (False, True):
        ref = _np_cka(wx @ wx.T, wy @ wy.T, debiased)
        assert abs(linear_cka(torch.from_numpy(wx), torch.from_numpy(wy), debiased) - ref) < 1e-10


def test_identical_inputs_give_one_and_invariances():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    general = torch.randn(16, 16, generator=g, dtype=torch.float64) * torch.logspace(-1, 1, 16, dtype=torch.float64)
    for debiased in (False, True):
        assert linear_cka(x, x, debiased) == pytest.approx(1.0, abs=1e-12)
        assert linear_cka(x, x @ q, debiased) == pytest.approx(1.0, abs=1e-10)        # orthogonal map
        assert linear_cka(x, 7.5 * x, debiased) == pytest.approx(1.0, abs=1e-10)      # isotropic scaling
        assert linear_cka(x, x + 3.0, debiased) == pytest.approx(1.0, abs=1e-10)      # translation
        assert linear_cka(x, x @ general, debiased) < 0.9                             # not invariant
    assert rbf_cka(x, x @ q * 2.0, 0.5) == pytest.approx(1.0, abs=1e-10)  # distances scale: median follows


def test_debiased_is_near_zero_on_independent_inputs_where_biased_is_not():
    g = torch.Generator().manual_seed(1)
    biased, debiased = [], []
    for _ in range(5):
        x, y = torch.randn(40, 400, generator=g), torch.randn(40, 400, generator=g)
        biased.append(linear_cka(x, y))
        debiased.append(linear_cka(x, y, debiased=True))
    assert min(biased) > 0.5          # n = 40 ≪ d = 400: biased CKA of independent data is large
    assert abs(np.mean(debiased)) < 0.03 and max(abs(d) for d in debiased) < 0.1  # spread ≈ 0.05 at n = 40


def test_minibatch_one_batch_is_debiased_cka_and_stream_matches_in_memory():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(96, 12, 3, 3, generator=g)
    y = torch.nn.functional.conv2d(x, torch.randn(8, 12, 1, 1, generator=g)).relu()
    y = y + 0.1 * torch.randn(96, 8, 3, 3, generator=g)
    whole = MinibatchCKA().update(x, y).value()
    assert whole == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)
    stream = MinibatchCKA()
    for xb, yb in zip(x.split(16), y.split(16)):
        stream.update(xb, yb)
    # the in-memory form: Song et al.'s estimator on each diagonal block of the full Gram matrices
    kx, ky = (f.reshape(96, -1).double().numpy() for f in (x, y))
    kx, ky = kx @ kx.T, ky @ ky.T
    blocks = [slice(i, i + 16) for i in range(0, 96, 16)]
    hs = lambda a, b: np.mean([_np_hsic_unbiased(a[s, s], b[s, s]) for s in blocks])  # noqa: E731
    assert stream.value() == pytest.approx(hs(kx, ky) / np.sqrt(hs(kx, kx) * hs(ky, ky)), abs=1e-10)
    assert stream.batches == 6 and abs(stream.value() - whole) < 0.1  # and close to the full-data estimate
    matrix = CKAMatrix(["x", "y"], ["y"])
    for xb, yb in zip(x.split(16), y.split(16)):
        matrix.update({"x": xb, "y": yb}, {"y": yb})
    assert matrix.value().shape == (2, 1)
    assert float(matrix.value()[0, 0]) == pytest.approx(stream.value(), abs=1e-12)
    assert float(matrix.value()[1, 0]) == pytest.approx(1.0, abs=1e-12)


def test_flatten_and_per_position_sampling():
    f = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert flatten_features(f).shape == (2, 12)
    rows = flatten_features(f, positions=5, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (10, 3)
    cells = f.permute(0, 2, 3, 1).reshape(2, 4, 3)
    for i, row in enumerate(rows):  # every sampled row is one cell's channel vector of its own image
        assert any(torch.equal(row, c) for c in cells[i // 5])
    again = flatten_features(f, positions=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rows, again)


def test_errors_name_the_fix():
    with pytest.raises(ShapeError, match="same inputs"):
        linear_cka(torch.randn(10, 3), torch.randn(9, 3))
    with pytest.raises(ShapeError, match="at least 4"):
        MinibatchCKA().update(torch.randn(3, 2), torch.randn(3, 2))
    with pytest.raises(ShapeError, match="sigma"):
        rbf_cka(torch.randn(10, 3), torch.randn(10, 3), 0.0)
    assert gram_rbf(torch.zeros(5, 2)).shape == (5, 5)


def test_cli_similarity_matrix_and_heatmap(capsys, tmp_path):
    import json

    from repscope.cli import main

    code = main(["similarity", "--model", "efficientnet_lite0", "--layer-a", "blocks.0", "--layer-a", "blocks.2",
                 "--layer-b", "blocks.0", "--layer-b", "blocks.2", "--layer-b", "blocks.4", "--crops", "16",
                 "--size", "65", "--batch-size", "8", "--out", str(tmp_path / "s"), "--json", "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    m = np.array(result["cka"])
    assert m.shape == (2, 3) and result["crops"] == 16
    assert m[0, 0] == pytest.approx(1.0, abs=1e-9) and m[1, 1] == pytest.approx(1.0, abs=1e-9)  # a layer with itself
    assert m[0, 2] < m[1, 2] < 1.0  # blocks.4 is closer to blocks.2 than to blocks.0
    assert (tmp_path / "s" / "cka.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["similarity", "--model", "a", "--model", "b", "--model", "c", "--out", str(tmp_path / "t")]) == 2
