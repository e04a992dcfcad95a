"""The layer table: shapes, strides and receptive fields against real forward passes and closed forms."""

from __future__ import annotations

import pytest
import torch

from repscope import layers, models
from repscope.layer_info import describe


def _check_against_forward(model, rows, size):
    spatial = [r for r in rows if len(r.shape) == 3 and r.name != "input"]
    names = [r.name for r in spatial]
    with torch.no_grad():
        at_size = layers.features(model, torch.rand(1, 3, size, size), names)
        grown = layers.features(model, torch.rand(1, 3, size + 64, size + 64), names)
    for row in spatial:
        assert tuple(at_size[row.name].shape[1:]) == row.shape, row.name
        if grown[row.name].shape == at_size[row.name].shape:  # adaptive pooling: fixed output size
            assert row.stride == round(size / row.shape[-1]), row.name
            continue
        # Growing the input by 64 pixels adds 64 / stride cells: the stride is the real one.
        assert grown[row.name].shape[-1] - at_size[row.name].shape[-1] == 64 // row.stride, row.name


def test_lite0_table_matches_forward(lite0):
    rows = describe(lite0, receptive_fields=False)
    _check_against_forward(lite0, rows, 224)
    by_name = {r.name: r for r in rows}
    assert by_name["blocks.0"].stride == 2 and by_name["blocks.3"].stride == 16 and by_name["blocks.6"].stride == 32
    assert by_name["logits"].shape == (1000,) and by_name["logits"].stride is None


@pytest.mark.parametrize("arch", ["resnet18", "alexnet"])
def test_torchvision_tables_match_forward(arch):
    model = models.load(f"torchvision:{arch}", random_init=True)
    _check_against_forward(model, describe(model, receptive_fields=False), 224)


def test_receptive_fields_match_closed_form():
    alexnet = models.load("torchvision:alexnet", random_init=True)
    got = {r.name: r.receptive_field for r in describe(alexnet, only=[
        "features.0", "features.2", "features.3", "features.5", "features.6", "features.8", "features.10"])}
    # conv 11/4 -> pool 3/2 -> conv 5 -> pool 3/2 -> conv 3 -> conv 3 -> conv 3
    assert got == {"features.0": 11, "features.2": 19, "features.3": 51, "features.5": 67, "features.6": 99,
                   "features.8": 131, "features.10": 163}
    resnet = models.load("torchvision:resnet18", random_init=True)
    got = {r.name: r.receptive_field for r in describe(resnet, only=["conv1", "maxpool", "layer1", "layer2"])}
    assert got == {"conv1": 7, "maxpool": 11, "layer1": 43, "layer2": 99}


def test_receptive_field_is_clipped_to_input(lite0):
    (row,) = describe(lite0, only=["blocks.6"])
    assert row.receptive_field == 224
