"""Streaming ridge: equals the all-in-memory solution, exact recovery, held-out λ, conv maps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repscope.errors import ShapeError
from repscope.regression import (
    StreamingRidge,
    apply_map,
    ridge,
    select_ridge,
    stack_neighbours,
    to_rows,
)


def _data(n=600, d_in=12, d_out=5, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g) * torch.linspace(0.1, 3, d_in) + 2.0
    w = torch.randn(d_out, d_in, generator=g)
    y = x @ w.T + torch.randn(d_out, generator=g) + noise * torch.randn(n, d_out, generator=g)
    return x, y, w


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lam", [1e-3, 1.0, 100.0])
def test_streaming_equals_batch_ridge(bias, lam):
    x, y, _ = _data()
    acc = StreamingRidge(x.shape[1], y.shape[1], bias=bias)
    sizes = [1, 7, 50, 142, 400]  # uneven batches
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        acc.update(xb, yb)
    assert acc.n == len(x)
    w_s, b_s = acc.solve(lam)
    w_b, b_b = ridge(x, y, lam, bias=bias)
    assert torch.allclose(w_s, w_b, atol=1e-5, rtol=0) and torch.allclose(b_s, b_b, atol=1e-5, rtol=0)
    if not bias:
        assert (b_s == 0).all()


def test_noise_free_recovery_and_residual():
    x, y, w = _data(noise=0.0)
    acc = StreamingRidge(12, 5)
    for xb, yb in zip(x.split(64), y.split(64)):
        acc.update(xb, yb)
    w_hat, b_hat = acc.solve(1e-9)
    assert torch.allclose(w_hat, w.double(), atol=1e-5)
    assert acc.residual(w_hat, b_hat) / acc.total() < 1e-10
    # residual() from statistics equals the direct sum for an arbitrary map
    w_any, b_any = torch.randn(5, 12, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    direct = ((y.double() - x.double() @ w_any.T - b_any) ** 2).sum()
    assert acc.residual(w_any, b_any) == pytest.approx(float(direct), rel=1e-9)
    assert acc.residual(w_any) == pytest.approx(float(((y.double() - x.double() @ w_any.T) ** 2).sum()), rel=1e-9)


def test_merge_equals_one_accumulator_and_path_equals_solve():
    x, y, _ = _data()
    a, b, both = StreamingRidge(12, 5), StreamingRidge(12, 5), StreamingRidge(12, 5)
    a.update(x[:250], y[:250])
    b.update(x[250:], y[250:])
    both.update(x, y)
    merged = a.merge(b)
    for lam in (0.01, 10.0):
        assert torch.allclose(merged.solve(lam)[0], both.solve(lam)[0], atol=1e-9)
    path = both.solve_path([0.1, 5.0])
    assert torch.allclose(path[1][0], both.solve(5.0)[0], atol=1e-12)


def test_select_ridge_is_the_held_out_argmin():
    """λ is the minimiser of the held-out error, recomputed here directly from held-out rows."""
    x, y, _ = _data(n=60, noise=3.0, seed=1)
    xv, yv, _ = _data(n=400, noise=3.0, seed=1)
    train, val = StreamingRidge(12, 5), StreamingRidge(12, 5)
    train.update(x, y)
    val.update(xv, yv)
    best, errors = select_ridge(train, val)
    for lam, err in errors.items():
        w, b = ridge(x, y, lam)
        direct = ((yv.double() - xv.double() @ w.T - b) ** 2).sum() / (yv.double() ** 2).sum()
        assert err == pytest.approx(float(direct), rel=1e-6, abs=1e-12)
    assert errors[best] == min(errors.values())
    assert len(set(errors.values())) > 1


def test_correlation_matches_numpy():
    x, y, _ = _data(n=300)
    acc = StreamingRidge(12, 5, bias=False).update(x[:100], y[:100]).update(x[100:], y[100:])
    ref = np.corrcoef(np.concatenate([x.numpy(), y.numpy()], 1).T)[:12, 12:]
    assert np.allclose(acc.correlation().numpy(), ref, atol=1e-8)


def test_spatial_kxk_map_is_recovered_and_applied_as_a_convolution():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    acc = StreamingRidge(3 * 9, 4)
    for _ in range(3):
        phi = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
        target = F.conv2d(phi, weight, bias, padding=1)
        acc.update(to_rows(stack_neighbours(phi, 3)), to_rows(target))
    w_hat, b_hat = acc.solve(1e-10)
    assert torch.allclose(w_hat.reshape(4, 3, 3, 3), weight, atol=1e-6) and torch.allclose(b_hat, bias, atol=1e-6)
    phi = torch.randn(1, 3, 6, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(apply_map(phi, w_hat, b_hat, 3), F.conv2d(phi, weight, bias, padding=1), atol=1e-6)


def test_rows_with_mask_and_vectors():
    phi = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mask = torch.tensor([[True, False], [False, True]])
    rows = to_rows(phi, mask)
    assert rows.shape == (4, 3) and torch.equal(rows[1], phi[0, :, 1, 1])
    v = torch.rand(4, 7)
    assert to_rows(v) is v and stack_neighbours(phi, 1) is phi
    assert apply_map(v, torch.eye(7, dtype=torch.float64)).allclose(v)


def test_bad_shapes_raise():
    acc = StreamingRidge(3, 2)
    with pytest.raises(ShapeError):
        acc.update(torch.rand(5, 4), torch.rand(5, 2))
    with pytest.raises(ShapeError):
        acc.update(torch.rand(5, 3), torch.rand(4, 2))
    with pytest.raises(ShapeError):
        acc.solve(1.0)  # nothing accumulated
    with pytest.raises(ShapeError):
        stack_neighbours(torch.rand(1, 2, 4, 4), 2)


def test_accumulators_follow_the_data_dtype_and_memory_is_independent_of_rows():
    acc = StreamingRidge(8, 3)
    sizes = {k: v.numel() for k, v in vars(acc).items() if isinstance(v, torch.Tensor)}
    for _ in range(5):
        acc.update(torch.rand(1000, 8), torch.rand(1000, 3))
    assert {k: v.numel() for k, v in vars(acc).items() if isinstance(v, torch.Tensor)} == sizes
    assert acc.xx.dtype == torch.float64 and acc.n == 5000
