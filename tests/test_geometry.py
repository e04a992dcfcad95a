"""Cell geometry: stride, offset and receptive field against hand-computed cases and closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repscope import geometry, layers, models
from repscope.errors import ShapeError
from repscope.geometry import CellGeometry, cell_geometry
from repscope.hog import HOG


def test_two_convolutions_by_hand():
    """conv 3×3/2 pad 1, then conv 3×3 pad 1 on 33²: cell u is centred at 2u + 0.5 and sees 3 + 2·2 = 7 pixels."""
    phi = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    g = cell_geometry(phi, 33, receptive_field=True)
    assert g.shape == (4, 17, 17) and g.input_size == (33, 33)
    assert g.stride == (2.0, 2.0) and g.offset == (0.5, 0.5) and g.receptive_field == 7
    assert g.spatial_scale == 0.5 and g.cell_centre(16, 16) == (32.5, 32.5) and g.cell_centre(0, 3) == (0.5, 6.5)


def test_same_padding_on_an_even_input_is_half_a_pixel_off_centre():
    """TensorFlow 'same' (pad right/bottom) 3×3/2 on 32²: cell u sees pixels 2u..2u+2, centred at 2u + 1.5."""
    phi = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, stride=2))
    g = cell_geometry(phi, 32, receptive_field=True)
    assert g.offset == (1.5, 1.5) and g.stride == (2.0, 2.0) and g.receptive_field == 3
    centred = CellGeometry(g.input_size, g.shape, g.stride)  # offset unknown: the map is taken as centred
    assert centred.centre_of_first_cell() == (1.0, 1.0)


def _offset_recurrence(layers_kps):
    """Textbook recurrence: o ← o + s·((k − 1)/2 − p), s ← s·stride, from pixel centres (o, s) = (0.5, 1)."""
    o, s, out = 0.5, 1, []
    for k, stride, p in layers_kps:
        o, s = o + s * ((k - 1) / 2 - p), s * stride
        out.append((o, s))
    return out


def test_alexnet_offsets_and_strides_follow_the_recurrence():
    model = models.load("torchvision:alexnet", random_init=True)
    extract = lambda x: layers.features(model, x, ["features.0", "features.2", "features.3", "features.6"])  # noqa: E731
    cells = geometry.measure(extract, ["features.0", "features.2", "features.3", "features.6"],
                             torch.zeros(1, 3, 224, 224))
    # conv 11/4 pad 2, max-pool 3/2, conv 5 pad 2, max-pool 3/2, conv 3 pad 1
    expected = _offset_recurrence([(11, 4, 2), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1)])
    for name, i in (("features.0", 0), ("features.2", 1), ("features.3", 2), ("features.6", 4)):
        o, s = expected[i]
        assert cells[name].offset == (o, o) and cells[name].stride == (s, s), name
    assert expected[0] == (3.5, 4) and expected[4] == (15.5, 16)


def test_receptive_field_of_a_representation_equals_the_layer_table():
    model = models.load("torchvision:alexnet", random_init=True)
    phi = layers.Representation(model, "features.3")
    assert phi.stride == 8 and phi.receptive_field == 51  # closed form: 11 + 2·4 + 4·8 (tests/test_layer_info.py)
    assert cell_geometry(phi, 224, offset=False).spatial_scale == 1 / 8


@pytest.mark.parametrize("name", ["hog:uoctti", "hog:uoctti,cell=5", "hog:dalal-triggs,orientations=8,cell=8,block=2",
                                  "hog:dalal-triggs,cell=6,block=3"])
def test_hog_closed_form_equals_the_measured_geometry(name):
    from repscope.hog import hog_from_name

    phi = hog_from_name(name)
    images = torch.zeros(1, 3, 96, 96)
    known = cell_geometry(phi, (96, 96))
    measured = geometry.measure(lambda x: {"hog": phi(x)}, ["hog"], images)["hog"]
    assert known.shape == measured.shape == tuple(phi(images).shape[1:])
    assert known.stride == measured.stride and known.offset == measured.offset, (known, measured)
    assert known.receptive_field == phi.receptive_field  # not clipped at 96 pixels


def test_hog_non_square_cells_have_a_stride_pair():
    phi = HOG("dalal-triggs", cell=(8, 6), cells_per_block=2)
    known = cell_geometry(phi, (64, 60))
    measured = geometry.measure(lambda x: {"hog": phi(x)}, ["hog"], torch.zeros(1, 3, 64, 60), offsets=False)["hog"]
    assert known.stride == measured.stride == (8.0, 6.0) and known.offset == (8.0, 6.0) and phi.stride == (8, 6)
    with pytest.raises(ShapeError, match="non-square"):
        known.spatial_scale


def test_adaptive_pooling_bare_callables_and_vectors():
    wide = cell_geometry(nn.AdaptiveAvgPool2d(3), 33)
    assert wide.stride == (11.0, 11.0) and wide.offset is None  # clipped supports: centred, stride H / h
    assert wide.centre_of_first_cell() == (5.5, 5.5)
    bare = cell_geometry(lambda x: F.avg_pool2d(x, 4), 32, receptive_field=True)  # not a module: real gradients
    assert bare.stride == (4.0, 4.0) and bare.offset == (2.0, 2.0) and bare.receptive_field == 4
    vector = cell_geometry(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), 16, receptive_field=True)
    assert not vector.spatial and vector.stride is None and vector.receptive_field == 16
    with pytest.raises(ShapeError, match="vectors"):
        vector.scalar_stride()
