"""Options of the one pre-image engine that make class visualisations natural: colour basis, Fourier
canvas, scale/rotation jitter (pure parts against hand-computed cases; engine hooks: off is today's loop)."""

from __future__ import annotations

import pytest
import torch

from repscope.preimage import colour, fourier, warp


def test_colour_basis_round_trip_adjoint_and_speeds():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(colour.to_rgb(colour.from_rgb(x)), x, atol=1e-12)
    y, g = torch.randn_like(x), torch.randn_like(x)
    assert (colour.to_rgb(y) * g).sum().item() == pytest.approx((y * colour.to_rgb_adjoint(g)).sum().item(), rel=1e-12)
    c = colour.colour_matrix(x)
    # brightness moves at full speed, the two opponent directions at 0.27 and 0.13 of it
    assert c.norm(dim=0).tolist() == pytest.approx([1.0, 0.2755, 0.1334], abs=2e-4)
    grey = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    grey[0, 0] = 1.0
    rgb = colour.to_rgb(grey).flatten()
    assert (rgb.max() - rgb.min()).item() < 0.04 * rgb.mean().item()  # the first basis vector is (nearly) grey


@pytest.mark.parametrize("size", [(8, 10), (9, 7), (16, 16)])
def test_fourier_round_trip_and_exact_adjoint(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    w = fourier.weights(*size, like=x)
    assert w.shape == (size[0], size[1] // 2 + 1)
    assert torch.allclose(fourier.to_image(fourier.from_image(x, w), w, size), x, atol=1e-12)
    s = torch.randn(2, 3, size[0], size[1] // 2 + 1, 2, dtype=torch.float64)
    g = torch.randn_like(x)
    lhs = (fourier.to_image(s, w, size) * g).sum().item()
    assert lhs == pytest.approx((s * fourier.to_image_adjoint(g, w)).sum().item(), rel=1e-10)


def test_fourier_weights_unit_rms_and_one_over_f():
    w = fourier.weights(64, 64, like=torch.zeros((), dtype=torch.float64))
    full = torch.cat([w, w[:, 1:-1].flip(-1)], -1)  # the half spectrum mirrored back to 64 columns
    assert full.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=0.05)
    assert (w[0, 2] / w[0, 4]).item() == pytest.approx(2.0)  # amplitude ∝ 1/|f| (decay 1)
    assert w[0, 0].item() == pytest.approx(w[0, 1].item())  # DC clipped at the lowest frequency
    # a constant step on every coefficient moves low frequencies most: the image is smooth
    s = torch.ones(1, 1, 64, 33, 2, dtype=torch.float64)
    img = fourier.to_image(s * torch.randn(1, 1, 64, 33, 2, generator=torch.Generator().manual_seed(0),
                                           dtype=torch.float64).sign(), w, (64, 64))
    from repscope.naturalness import spectral_slope
    assert spectral_slope(img.expand(1, 3, 64, 64)).item() == pytest.approx(-2.0, abs=0.3)


def test_warp_identity_rotations_and_scale():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert torch.allclose(warp.warp(x, torch.ones(2), torch.zeros(2)), x, atol=1e-12)
    r90 = warp.warp(x, torch.ones(2), torch.full((2,), 90.0))
    assert torch.allclose(r90, torch.rot90(x, 1, (2, 3)), atol=1e-12)
    wide = torch.rand(1, 3, 12, 20, dtype=torch.float64)
    assert torch.allclose(warp.warp(wide, torch.ones(1), torch.full((1,), 180.0)), wide.flip(2, 3), atol=1e-12)
    ramp = torch.arange(16, dtype=torch.float64).expand(1, 3, 16, 16)  # value = column index
    zoom = warp.warp(ramp, torch.full((1,), 2.0), torch.zeros(1))
    assert (zoom[0, 0, 8, 9] - zoom[0, 0, 8, 8]).item() == pytest.approx(0.5)  # ×2: half a column per pixel


def test_warp_draws_per_image_generators():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    scales, degrees = warp.draw(gens, 0.1, 10.0)
    alone = warp.draw([torch.Generator().manual_seed(1)], 0.1, 10.0)
    assert scales[1] == alone[0][0] and degrees[1] == alone[1][0]
    assert ((scales - 1).abs() <= 0.1).all() and (degrees.abs() <= 10).all()


# --- the engine hooks -------------------------------------------------------------------------------

import hashlib  # noqa: E402

from repscope.errors import RepscopeError  # noqa: E402
from repscope.preimage import PreimageConfig, invert, maximize  # noqa: E402
from repscope.preimage import bases, engine  # noqa: E402


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3, stride=2),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).double()
    net.stride = 8  # jitter 2
    return net


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().double().contiguous().numpy().tobytes()).hexdigest()[:16]


def _runs(config: PreimageConfig | None = None):
    net = _tiny()
    m = maximize(net, [1, 3], size=(24, 24), iters=12, seed=3, config=config)
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return m, invert(net, x, iters=12, seed=1, config=config)


OFF = dict(canvas="pyramid", colour="rgb", fourier_decay=1.0, jitter_scale=0.0, jitter_rotate=0.0)


def test_options_off_keep_todays_iterates_bit_for_bit():
    """The digests were taken at commit 89a8055, before these options existed (float64, CPU)."""
    for config in (None, PreimageConfig(**OFF)):
        m, r = _runs(config)
        assert (_digest(m.images01), _digest(m.losses)) == ("a30379e90adc007c", "370254d97ed509c7")
        assert (_digest(r.images01), _digest(r.losses)) == ("fd1593eec3a000f9", "9fd4a92586f1da2e")


@pytest.mark.parametrize("option", [dict(colour="decorrelated"), dict(canvas="fourier"), dict(jitter_scale=0.1),
                                    dict(jitter_rotate=10.0), dict(canvas="fourier", fourier_decay=0.5)])
def test_each_option_changes_the_iterates_only_when_enabled(option):
    base, _ = _runs()
    m, _ = _runs(PreimageConfig(**option))
    assert not torch.equal(m.losses, base.losses)
    assert (m.images01 - base.images01).abs().max() > 1e-3
    assert m.losses[-1].sum() < m.losses[0].sum()  # and the energy still goes down
    assert m.hyperparameters[next(iter(option))] == next(iter(option.values()))


def test_basis_canvas_with_identity_basis_is_the_pyramid_canvas(monkeypatch):
    """The generic x ← Π(A(θ)), θ ← A⁻¹(x) with A = compose is the folded pyramid's loop (float64)."""
    base_m, base_r = _runs()
    monkeypatch.setattr(engine, "canvas_type", lambda cfg: bases.BasisCanvas)
    m, r = _runs()
    assert torch.allclose(m.images01, base_m.images01, atol=1e-9)
    assert torch.allclose(r.losses, base_r.losses, rtol=1e-9)


def test_fourier_canvas_reproducible_and_projected():
    cfg = PreimageConfig(canvas="fourier", colour="decorrelated")
    a, _ = _runs(cfg)
    b, _ = _runs(cfg)
    assert torch.equal(a.images01, b.images01)
    assert a.images01.min() >= 0 and a.images01.max() <= 1


def test_option_errors_name_the_fix():
    with pytest.raises(RepscopeError, match="'pyramid' or 'fourier'"):
        PreimageConfig(canvas="wavelet").resolve(stride=1)
    with pytest.raises(RepscopeError, match="'rgb' or 'decorrelated'"):
        PreimageConfig(colour="lab").resolve(stride=1)
    with pytest.raises(RepscopeError, match=r"\[0, 1\)"):
        PreimageConfig(jitter_scale=1.5).resolve(stride=1)
