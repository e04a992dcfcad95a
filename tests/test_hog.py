"""repscope.hog: Dalal–Triggs against scikit-image, UoCTTI against a literal port of VLFeat's
``vl_hog``, closed-form cases (oriented ramps, folding, brightness offsets), rotation acting on
orientation bins, gradcheck, batching, names and glyphs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.feature import hog as skimage_hog

from repscope.errors import ModelError, ShapeError
from repscope.hog import (
    HOG,
    hog,
    hog_from_name,
    parse_hog_name,
    render_glyphs,
    to_skimage_layout,
    uoctti_histograms,
)


def photo(name: str, top: int = 0, left: int = 0, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A scikit-image sample photo (or crop) as ``(1, 3, H, W)`` float64 in [0, 1]."""
    img = getattr(data, name)().astype(np.float64) / 255.0
    if size is not None:
        img = img[top : top + size[0], left : left + size[1]]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def ramp(theta_deg: float, size: int = 48, slope: float = 0.002) -> torch.Tensor:
    """``I(x, y) = 1/2 + slope (x cos θ + y sin θ)`` (y down): gradient direction θ everywhere."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    t = math.radians(theta_deg)
    img = 0.5 + slope * ((x - size / 2) * math.cos(t) + (y - size / 2) * math.sin(t))
    return img.expand(1, 3, size, size).clone()


# ------------------------------------------------------------------------------ Dalal–Triggs
DT_PARAMS = [
    dict(orientations=9, cell=8, cells_per_block=3, block_norm="L2-Hys"),
    dict(orientations=8, cell=8, cells_per_block=2, block_norm="L1"),
    dict(orientations=12, cell=6, cells_per_block=2, block_norm="L1-sqrt"),
    dict(orientations=8, cell=(8, 6), cells_per_block=(2, 3), block_norm="L2"),
    dict(orientations=7, cell=5, cells_per_block=3, block_norm="L2-Hys"),
]


@pytest.mark.parametrize("params", DT_PARAMS, ids=lambda p: f"o{p['orientations']}-{p['block_norm']}")
@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_dalal_triggs_equals_skimage(name, params):
    x = photo(name, 40, 60, (203, 251))  # sizes that are not multiples of the cell
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    ref = skimage_hog(x[0].permute(1, 2, 0).numpy(), orientations=params["orientations"],
                      pixels_per_cell=pair(params["cell"]), cells_per_block=pair(params["cells_per_block"]),
                      block_norm=params["block_norm"], channel_axis=-1, feature_vector=False)
    ours = to_skimage_layout(hog(x, "dalal-triggs", **params), params["orientations"], params["cells_per_block"])
    ours = ours[0].numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_dalal_triggs_equals_skimage_full_photo_with_diagonal_edges():
    # 8 orientations put bin edges on 45°/135°, where numpy's and torch's atan2 may disagree
    x = photo("astronaut")
    ref = skimage_hog(x[0].permute(1, 2, 0).numpy(), orientations=8, pixels_per_cell=(16, 16),
                      cells_per_block=(2, 2), block_norm="L1", channel_axis=-1, feature_vector=False)
    ours = to_skimage_layout(hog(x, "dalal-triggs", orientations=8, cell=16, cells_per_block=2, block_norm="L1"), 8, 2)
    np.testing.assert_allclose(ours[0].numpy(), ref, rtol=1e-4, atol=1e-6)


def test_dalal_triggs_float32_equals_skimage_float32():
    # skimage keeps float32 gradients but bins in float64; flagged tie pixels follow that exactly
    x = photo("coffee").float()
    ref = skimage_hog(x[0].permute(1, 2, 0).numpy(), orientations=8, channel_axis=-1, feature_vector=False)
    ours = to_skimage_layout(hog(x, "dalal-triggs", orientations=8), 8, 3)[0].numpy()
    assert ref.dtype == ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("theta, expected", [(10, 0), (75, 3), (215, 1), (290, 5)])
def test_dalal_triggs_ramp_lights_its_bin(theta, expected):
    cells = hog(ramp(theta), "dalal-triggs", orientations=9, cell=8, cells_per_block=1, block_norm="L1")
    inner = cells[0, :, 1:-1, 1:-1]  # unsigned angle θ mod 180 falls in bin floor(·/20°)
    assert (inner.argmax(0) == expected).all()
    others = torch.cat([inner[:expected], inner[expected + 1 :]])
    assert others.abs().max() == 0
    m = 2 * 0.002  # |g| of the ramp (central differences); L1 block of one cell: m / (m + 1e-5)
    torch.testing.assert_close(inner[expected], torch.full_like(inner[expected], m / (m + 1e-5)))


# ------------------------------------------------------------------------------ UoCTTI
def vlfeat_reference(image: np.ndarray, cell: int, n: int, bilinear: bool, float_tables: bool) -> np.ndarray:
    """Literal port of VLFeat ``vl_hog_put_image`` + ``vl_hog_extract`` (UoCTTI), image (C, H, W)."""
    C, H, W = image.shape
    hw, hh = (W + cell // 2) // cell, (H + cell // 2) // cell
    hist = np.zeros((2 * n, hh, hw))
    cast = (lambda v: float(np.float32(v))) if float_tables else float
    ox = [cast(math.cos(o * math.pi / n)) for o in range(n)]
    oy = [cast(math.sin(o * math.pi / n)) for o in range(n)]
    for y in range(1, H - 1):
        for x in range(1, W - 1):
            gx = gy = g2 = 0.0
            for k in range(C):
                gx_, gy_ = image[k, y, x + 1] - image[k, y, x - 1], image[k, y + 1, x] - image[k, y - 1, x]
                if gx_ * gx_ + gy_ * gy_ > g2:
                    gx, gy, g2 = gx_, gy_, gx_ * gx_ + gy_ * gy_
            grad = math.sqrt(g2)
            gx, gy = gx / max(grad, 1e-10), gy / max(grad, 1e-10)
            ws, bs = [0.0, 0.0], [-1, -1]
            for k in range(n):
                s, b = gx * ox[k] + gy * oy[k], k
                if s < 0:
                    s, b = -s, k + n
                if s > ws[0]:
                    bs[1], ws[1], bs[0], ws[0] = bs[0], ws[0], b, s
                elif s > ws[1]:
                    bs[1], ws[1] = b, s
            if bilinear:
                ws[1] = math.acos(min(ws[0], 1.0)) / (math.pi / n)
                ws[0] = 1 - ws[1]
            else:
                ws[0], bs[1] = 1.0, -1
            hx, hy = (x + 0.5) / cell - 0.5, (y + 0.5) / cell - 0.5
            bx, by = math.floor(hx), math.floor(hy)
            wx2, wy2 = hx - bx, hy - by
            for o in range(2):
                if bs[o] < 0:
                    continue
                v = grad * ws[o]
                for cx, cy, w in ((bx, by, (1 - wx2) * (1 - wy2)), (bx + 1, by, wx2 * (1 - wy2)),
                                  (bx + 1, by + 1, wx2 * wy2), (bx, by + 1, (1 - wx2) * wy2)):
                    if 0 <= cx < hw and 0 <= cy < hh:
                        hist[bs[o], cy, cx] += v * w
    norm = ((hist[:n] + hist[n:]) ** 2).sum(0)
    out = np.zeros((3 * n + 4, hh, hw))
    for y in range(hh):
        for x in range(hw):
            xm, xp, ym, yp = max(x - 1, 0), min(x + 1, hw - 1), max(y - 1, 0), min(y + 1, hh - 1)
            fs = [1 / math.sqrt(norm[a, b] + norm[a, c] + norm[d, b] + norm[d, c] + 1e-4)
                  for (a, d), (b, c) in (((ym, y), (xm, x)), ((ym, y), (x, xp)), ((y, yp), (xm, x)), ((y, yp), (x, xp)))]
            t = [0.0] * 4
            for k in range(n):
                ha, hb = hist[k, y, x], hist[k + n, y, x]
                hc = [min(0.2, f * (ha + hb)) for f in fs]
                out[k, y, x] = 0.5 * sum(min(0.2, f * ha) for f in fs)
                out[k + n, y, x] = 0.5 * sum(min(0.2, f * hb) for f in fs)
                out[k + 2 * n, y, x] = 0.5 * sum(hc)
                t = [a + b for a, b in zip(t, hc)]
            out[3 * n :, y, x] = np.array(t) / math.sqrt(18)
    return out


@pytest.mark.parametrize("cell, n, bilinear", [(8, 9, False), (5, 6, False), (4, 9, False), (8, 9, True), (6, 8, True)])
def test_uoctti_equals_vlfeat_port(cell, n, bilinear):
    x = photo("astronaut", 100, 200, (42, 54))
    ref = vlfeat_reference(x[0].numpy(), cell, n, bilinear, float_tables=not bilinear)
    ours = hog(x, "uoctti", cell=cell, orientations=n, bilinear_orientations=bilinear)[0].numpy()
    assert ours.shape == ref.shape == (3 * n + 4, (42 + cell // 2) // cell, (54 + cell // 2) // cell)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7 if bilinear else 1e-12)


def test_uoctti_has_31_channels_per_8px_cell():
    phi = HOG()
    f = phi(torch.rand(2, 3, 70, 90))
    assert f.shape == (2, 31, 9, 11) == (2, *phi.output_shape(70, 90))
    assert phi.stride == 8 and phi.channels == 31


@pytest.mark.parametrize("theta, directed", [(0, 0), (60, 3), (200, 10), (300, 15), (125, 6)])
def test_uoctti_oriented_ramp_lights_the_right_bins(theta, directed):
    f = hog(ramp(theta), "uoctti")[0, :, 1:-1, 1:-1]  # interior cells; bins centred at k·20°
    sensitive, insensitive = f[:18], f[18:27]
    assert (sensitive.argmax(0) == directed).all()
    others = torch.cat([sensitive[:directed], sensitive[directed + 1 :]])
    assert others.abs().max() == 0
    assert (insensitive.argmax(0) == directed % 9).all()
    assert torch.allclose(insensitive[directed % 9], sensitive[directed])


def test_uoctti_contrast_insensitive_bins_are_the_folded_sensitive_ones():
    # before normalisation: histograms; after, where nothing is clamped (low contrast), linearity
    x = photo("coffee", 50, 80, (64, 80))
    h = uoctti_histograms(x)
    assert h.shape == (1, 18, 8, 10)
    faint = 0.5 + 1e-5 * (x - 0.5)  # block factors ~ 1/sqrt(1e-4): no value reaches the 0.2 clamp
    f = hog(faint, "uoctti")
    assert f.abs().max() < 0.2
    torch.testing.assert_close(f[:, 18:27], f[:, :9] + f[:, 9:18], rtol=1e-10, atol=1e-14)
    hf = uoctti_histograms(faint)  # each cell's total vote mass is linear in contrast
    torch.testing.assert_close(hf.sum(1), 1e-5 * h.sum(1), rtol=1e-8, atol=0)
    f_full = hog(x, "uoctti")  # with clamping the identity breaks, as it should
    assert (f_full[:, 18:27] - (f_full[:, :9] + f_full[:, 9:18])).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["uoctti", "dalal-triggs"])
def test_invariant_to_a_global_brightness_offset(variant):
    x = torch.round(photo("chelsea", 30, 40, (96, 128)) * 192) / 256  # on a 1/256 grid: exact sums
    f0, f1 = hog(x, variant), hog(x + 0.125, variant)
    assert torch.equal(f0, f1)
    assert not torch.equal(f0, hog(x * 0.5, variant) if variant == "uoctti" else hog(x ** 2, variant))


# ------------------------------------------------------------------------------ both
@pytest.mark.parametrize("kwargs", [
    dict(variant="dalal-triggs", cell=4, cells_per_block=2, block_norm="L2-Hys", orientations=6),
    dict(variant="dalal-triggs", cell=4, cells_per_block=2, block_norm="L1-sqrt", orientations=9),
    dict(variant="uoctti", cell=4, orientations=9),
    dict(variant="uoctti", cell=4, orientations=9, bilinear_orientations=True),
], ids=["dt-L2Hys", "dt-L1sqrt", "uoctti", "uoctti-bilinear"])
def test_gradcheck_float64(kwargs):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: hog(t, **kwargs), (x,), eps=1e-6, atol=1e-5)


def test_gradient_is_finite_on_flat_images():
    x = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    for variant in ("uoctti", "dalal-triggs"):
        (g,) = torch.autograd.grad(hog(x, variant, block_norm="L1-sqrt").sum(), x)
        assert torch.isfinite(g).all()


def test_rot90_permutes_dalal_triggs_orientation_bins():
    # rot90 (counter-clockwise on screen): g' = (g_y, -g_x), the angle drops by 90° = 4 bins of 22.5°,
    # and the block grid and the cells inside each block rotate with the image
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    kw = dict(orientations=8, cell=8, cells_per_block=2, block_norm="L2-Hys")
    f = to_skimage_layout(hog(x, "dalal-triggs", **kw), 8, 2)  # (1, R, C, 2, 2, 8)
    f_rot = to_skimage_layout(hog(torch.rot90(x, 1, (2, 3)), "dalal-triggs", **kw), 8, 2)
    expected = torch.roll(torch.rot90(torch.rot90(f, 1, (1, 2)), 1, (3, 4)), -4, dims=-1)
    torch.testing.assert_close(f_rot, expected, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(f_rot, torch.rot90(torch.rot90(f, 1, (1, 2)), 1, (3, 4)))


def test_rot90_permutes_uoctti_orientation_bins():
    # 8 orientations: directed bins (22.5° apart) shift by -4 of 16, undirected by -4 of 8; the four
    # texture blocks (up-left, up-right, down-left, down-right) come from (UR, DR, UL, DL)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    f = hog(x, "uoctti", orientations=8)[0]
    f_rot = hog(torch.rot90(x, 1, (2, 3)), "uoctti", orientations=8)[0]
    g = torch.rot90(f, 1, (1, 2))
    expected = torch.cat([torch.roll(g[:16], -4, 0), torch.roll(g[16:24], -4, 0), g[24:][[1, 3, 0, 2]]])
    torch.testing.assert_close(f_rot, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["uoctti", "dalal-triggs"])
def test_batch_equals_per_image(variant):
    x = torch.cat([photo("chelsea", 0, 0, (80, 96)), photo("coffee", 10, 10, (80, 96)),
                   torch.rand(1, 3, 80, 96, dtype=torch.float64)])
    batched = hog(x, variant)
    single = torch.cat([hog(x[i : i + 1], variant) for i in range(3)])
    assert torch.equal(batched, single)
    assert torch.equal(HOG(variant)(x), batched)  # function / module pair agree


@pytest.mark.parametrize("variant", ["uoctti", "dalal-triggs"])
def test_eager_slices_give_the_unsliced_values_and_gradient(variant, monkeypatch):
    import repscope.hog.api as api

    x = torch.rand(5, 3, 40, 48, dtype=torch.float64, requires_grad=True)
    whole = hog(x, variant)
    (g_whole,) = torch.autograd.grad(whole.pow(2).sum(), x)
    monkeypatch.setattr(api, "EAGER_SLICE_VALUES", 2 * 3 * 40 * 48)  # slices of 2, 2 and 1 images
    sliced = hog(x, variant)
    (g_sliced,) = torch.autograd.grad(sliced.pow(2).sum(), x)
    assert torch.equal(sliced, whole) and torch.equal(g_sliced, g_whole)


@pytest.mark.parametrize("name", ["hog", "hog:uoctti,cell=8,orientations=9", "hog:dalal-triggs,orientations=8,cell=8"])
def test_receptive_field_bounds_the_gradient_support(name):
    phi = hog_from_name(name)
    x = torch.rand(1, 3, 96, 96, dtype=torch.float64, requires_grad=True)
    f = phi(x)
    h, w = f.shape[-2:]
    (g,) = torch.autograd.grad(f[0, :, h // 2, w // 2].sum(), x)
    support = g[0].abs().sum(0) > 0
    rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
    assert rows.max() - rows.min() + 1 == phi.receptive_field
    assert cols.max() - cols.min() + 1 == phi.receptive_field


def test_names_parse_and_round_trip():
    default = hog_from_name("hog")
    assert (default.variant, default.orientations, default.cell, default.bilinear_orientations) == ("uoctti", 9, 8, False)
    dt = parse_hog_name("hog:dalal-triggs,orientations=8,cell=8x6,block=2,norm=l1-sqrt")
    assert (dt.variant, dt.orientations, dt.cell, dt.cells_per_block, dt.block_norm) == (
        "dalal-triggs", 8, (8, 6), 2, "L1-sqrt")
    assert dt.stride == (8, 6) and dt.receptive_field == 18 and dt.channels == 32
    again = hog_from_name(dt.name)
    assert again.name == dt.name
    assert hog_from_name("hog:uoctti,bilinear=1").bilinear_orientations
    assert default.receptive_field == 34


@pytest.mark.parametrize("bad, fragment", [
    ("hog:dalal-trigs", "dalal-triggs"),
    ("hog:uoctti,orientaions=9", "orientations"),
    ("hog:dalal-triggs,norm=L3", "L2-Hys"),
    ("hog:uoctti,cell=8x6", "square"),
    ("hog:uoctti,cell=eight", "integer"),
    ("hug", "HOG name"),
])
def test_bad_names_raise_model_error_naming_the_fix(bad, fragment):
    with pytest.raises(ModelError, match=fragment):
        hog_from_name(bad)


def test_bad_inputs_raise_shape_error():
    with pytest.raises(ShapeError, match="unsqueeze"):
        hog(torch.rand(3, 32, 32))
    with pytest.raises(ShapeError, match="3x3 block"):
        hog(torch.rand(1, 3, 20, 20), "dalal-triggs", cells_per_block=3)
    with pytest.raises(ShapeError, match="at least"):
        hog(torch.rand(1, 3, 6, 6), "uoctti")
    with pytest.raises(ShapeError, match="floating"):
        hog(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_render_glyphs_draws_strokes_along_edges():
    f = hog(ramp(0.0, size=64), "uoctti")  # gradient to the right: vertical edges, vertical strokes
    img = render_glyphs(f[0], cell_px=15)
    assert img.shape == (3, 8 * 15, 8 * 15) and img.min() >= 0 and img.max() == 1
    tile = img[0, 3 * 15 : 4 * 15, 3 * 15 : 4 * 15]
    assert tile[:, 7].mean() > 0.8 and tile[7, :].mean() < 0.3
    dt = HOG("dalal-triggs", orientations=9, cells_per_block=2)
    g = render_glyphs(dt(ramp(90.0, size=64)), dt, cell_px=9)  # horizontal edges
    tile = g[0, 0, 2 * 9 : 3 * 9, 2 * 9 : 3 * 9]
    assert g.shape == (1, 3, 7 * 9, 7 * 9) and tile[4, :].mean() > tile[:, 4].mean()
    with pytest.raises(ShapeError, match="hog="):
        render_glyphs(dt(ramp(0.0, size=64))[0])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["uoctti", "dalal-triggs"])
def test_compiled_path_equals_eager(variant):
    x = torch.rand(2, 3, 64, 80, requires_grad=True)
    eager, fast = hog(x, variant), hog(x, variant, compiled=True)
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-6)
    (g0,) = torch.autograd.grad(eager.square().sum(), x)
    (g1,) = torch.autograd.grad(fast.square().sum(), x)
    torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-5)
