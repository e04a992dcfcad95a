"""Transforms g on images and g' on feature maps: exact index maps, strides, masks, composition."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from repscope.errors import RepscopeError, ShapeError
from repscope.transforms import TransformError, parse_transform, rotate, shift


@pytest.fixture
def image():
    return torch.rand(2, 3, 10, 7, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "name, reference",
    [
        ("identity", lambda x: x),
        ("hflip", lambda x: x.flip(-1)),
        ("vflip", lambda x: x.flip(-2)),
        ("rot90", lambda x: torch.rot90(x, 1, (-2, -1))),
        ("rot180", lambda x: torch.rot90(x, 2, (-2, -1))),
        ("rot270", lambda x: torch.rot90(x, 3, (-2, -1))),
        ("rot:-90", lambda x: torch.rot90(x, -1, (-2, -1))),
        ("hflip+rot90", lambda x: torch.rot90(x.flip(-1), 1, (-2, -1))),
        ("rot90+hflip", lambda x: torch.rot90(x, 1, (-2, -1)).flip(-1)),
        ("shift:2,-3", lambda x: F.pad(x, (2, 0, 0, 3))[..., 3:, :-2]),
    ],
)
def test_images_exact_index_maps(image, name, reference):
    """Flips, quarter turns and integer shifts are exact gathers on images (zeros where uncovered)."""
    assert torch.equal(parse_transform(name)(image), reference(image))


def test_composition_and_inverse_algebra():
    g = parse_transform("rot:30+scale:1.5+shift:3,1")
    both = g.then(g.inverse())
    assert torch.allclose(torch.tensor(both.matrix, dtype=torch.float64), torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert max(abs(v) for v in both.shift) < 1e-12
    four = parse_transform("rot90+rot90+rot90+rot90")
    assert four.matrix == ((1.0, 0.0), (0.0, 1.0))
    assert parse_transform("rot:45+rot:45").swaps_axes and parse_transform("hflip+hflip").matrix == ((1, 0), (0, 1))


def test_rot90_swaps_the_shape_of_maps():
    phi = torch.rand(1, 4, 5, 8)
    out, mask = parse_transform("rot90").warp(phi, stride=4)
    assert out.shape == (1, 4, 8, 5) and mask.all()
    assert torch.equal(out, torch.rot90(phi, 1, (-2, -1)))


def test_feature_warp_through_stride_matches_pooled_shift():
    """Φ = s×s average pooling: Φ(shift by s px) equals g'(Φ(x)) (1 cell) on valid cells, exactly."""
    s = 4
    x = torch.rand(1, 3, 32, 32)
    phi = lambda img: F.avg_pool2d(img, s)  # noqa: E731
    g = shift(2 * s, -s)
    warped, mask = g.warp(phi(x), stride=s)
    assert mask.sum() == (8 - 1) * (8 - 2)
    assert torch.allclose(warped[..., mask], phi(g(x))[..., mask], atol=1e-6)
    assert (warped[..., ~mask] == 0).all()


def test_bilinear_warp_reproduces_linear_ramps():
    """A half-cell shift of a linear ramp is exact under bilinear interpolation."""
    h, w = 6, 9
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = (3 * ii + 2 * jj)[None, None]
    out, mask = shift(1, 0).warp(ramp, stride=2)  # 1 px = half a cell to the right
    assert torch.allclose(out[0, 0][mask], (ramp[0, 0] - 2 * 0.5)[mask])
    assert not mask[:, 0].any() and mask[:, 1:].all()


def test_rotation_mask_is_the_valid_region():
    phi = torch.ones(1, 1, 21, 21)
    out, mask = rotate(45).warp(phi)
    assert not mask[0, 0] and not mask[-1, -1] and mask[10, 10] and mask[10, 0] and mask[0, 10]
    assert torch.equal(mask, torch.rot90(mask, 1, (0, 1)))  # the rotated square is symmetric
    area = mask.float().mean().item()
    assert abs(area - (2 * math.sqrt(2) - 2)) < 0.08  # the area of the square rotated into itself
    assert torch.equal(out[0, 0] > 0.99, mask)


def test_scale_zoom_masks_the_border_when_shrinking():
    phi = torch.rand(1, 2, 9, 9)
    small, mask = parse_transform("scale:0.5").warp(phi)
    assert mask[4, 4] and not mask[0, 0] and mask.sum() == 25
    assert torch.allclose(small[..., 4, 4], phi[..., 4, 4])
    big, mask_big = parse_transform("scale:2").warp(phi)
    assert mask_big.all() and torch.allclose(big[..., 4, 4], phi[..., 4, 4])


def test_explicit_offset_matches_centred_and_detects_misalignment():
    phi = torch.rand(1, 3, 8, 8)
    centred = parse_transform("hflip").warp(phi, stride=2)[0]
    # stride 2 on a 16-px image: a centred map has cell 0 at pixel 1.0
    same = parse_transform("hflip").warp(phi, stride=2, offset=1.0, image_size=(16, 16))[0]
    assert torch.equal(centred, same)
    shifted, mask = parse_transform("hflip").warp(phi, stride=2, offset=1.5, image_size=(16, 16))
    assert not torch.equal(shifted, centred) and mask[:, :-1].all() and not mask[:, -1].any()
    with pytest.raises(ShapeError):
        parse_transform("hflip").warp(phi, stride=2, offset=1.5)


def test_vectors_are_unchanged_and_device_dtype_follow_input():
    v = torch.rand(3, 10, dtype=torch.float64)
    out, mask = parse_transform("rot:45").warp(v)
    assert out is v and bool(mask)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    out, _ = parse_transform("rot:30").warp(x)
    assert out.dtype == torch.float64 and out.device == x.device


@pytest.mark.parametrize("bad", ["flip", "rot:abc", "scale:-1", "shift:1", "", "hflip+", "scale:"])
def test_bad_names_raise_one_line_errors(bad):
    with pytest.raises(TransformError) as err:
        parse_transform(bad)
    assert isinstance(err.value, RepscopeError) and "\n" not in str(err.value)


def test_parse_names_and_aliases():
    assert parse_transform("rot45").matrix == parse_transform("rot:45").matrix
    assert parse_transform("ROT90").name == "rot90"
    assert parse_transform("shift:3,4").shift == (3.0, 4.0)
    assert parse_transform("hflip + vflip").matrix == parse_transform("rot180").matrix


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(-3, 3), flip=st.booleans())
def test_quarter_turns_and_flips_are_exact_on_any_shape(h, w, k, flip):
    x = torch.rand(1, 2, h, w)
    g = rotate(90 * k)
    if flip:
        g = parse_transform("hflip").then(g)
    expected = torch.rot90(x.flip(-1) if flip else x, k, (-2, -1))
    out, mask = g.warp(x, stride=3)
    assert torch.equal(out, expected) and mask.all()
    back, _ = g.inverse().warp(out, stride=3)
    assert torch.equal(back, x)


def test_measure_grids_from_receptive_fields():
    """Stride and offset (pixel centre of cell 0) of pooling / 'same'-padded convolutions / clipped maps."""
    from torch import nn

    from repscope.geometry import measure_grids

    same = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 2, 3, stride=2))  # TensorFlow 'same', even H
    maps = {"pool": lambda x: F.avg_pool2d(x, 4), "same": same, "wide": lambda x: F.adaptive_avg_pool2d(x, 2)}
    grids = measure_grids(lambda x: {k: f(x) for k, f in maps.items()}, list(maps), torch.zeros(1, 3, 32, 32))
    assert grids["pool"] == (4.0, (2.0, 2.0))  # cell u covers pixels 4u..4u+3: centre 4u + 2
    assert grids["same"] == (2.0, (1.5, 1.5))  # pixels 2u..2u+2: centre 2u + 1.5 (centred would be 1.0)
    assert "wide" not in grids  # receptive fields touch the border: not measurable
