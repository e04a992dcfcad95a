"""Layer names, the truncated forward pass and the Representation module."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from repscope import layers
from repscope.errors import LayerError, ShapeError


def _capture_full_forward(model, x, names):
    modules = dict(model.module.named_modules())
    seen = {}
    handles = [modules[n].register_forward_hook(lambda m, a, o, n=n: seen.setdefault(n, o.clone()))
               for n in names]
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    return seen, logits


def test_features_equal_full_forward_values(lite0, photos):
    names = ["conv_stem", "blocks.1", "blocks.3.0.conv_pw", "blocks.5"]
    expected, logits = _capture_full_forward(lite0, photos[:2], names)
    with torch.no_grad():
        got = layers.features(lite0, photos[:2], names + ["logits", "input"])
    for name in names:
        assert torch.equal(got[name], expected[name]), name
    assert torch.allclose(got["logits"], logits)
    assert torch.allclose(got["input"], photos[:2] * 2 - 1)


def test_truncated_forward_runs_nothing_after_last_layer(lite0, photos):
    calls = {}
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
               for n, m in lite0.module.named_modules() if n]
    try:
        with torch.no_grad():
            layers.features(lite0, photos[:1], ["blocks.1", "blocks.0"])
    finally:
        for h in handles:
            h.remove()
    assert calls["blocks.1"] == 1 and calls["blocks.0"] == 1
    assert not any(n.startswith(("blocks.2", "blocks.6", "conv_head", "classifier")) for n in calls)


def test_inplace_activation_does_not_overwrite_captured_value():
    net = torchvision.models.alexnet().eval()  # features.1 is ReLU(inplace=True)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        got = layers.features(net, x, ["features.0", "features.1"])
        conv = net.features[0](x)
    assert torch.equal(got["features.0"], conv)
    assert (got["features.0"] < 0).any()
    assert torch.equal(got["features.1"], conv.clamp_min(0))


def test_features_support_autograd(lite0, photos):
    x = photos[:1].clone().requires_grad_(True)
    out = layers.features(lite0, x, "blocks.2")["blocks.2"]
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_representation_matches_features_and_reports_stride(lite0, photos):
    phi = layers.Representation(lite0, "blocks.3")
    with torch.no_grad():
        assert torch.equal(phi(photos[:1]), layers.features(lite0, photos[:1], "blocks.3")["blocks.3"])
    assert phi.stride == 16 and phi.receptive_field > 16


def test_unknown_layer_suggests_closest(lite0):
    with pytest.raises(LayerError) as err:
        layers.features(lite0, torch.rand(1, 3, 32, 32), ["blocks.33"])
    message = str(err.value)
    assert "closest:" in message and "blocks.3" in message
    assert len(message.split("closest:")[1].split(".", 1)[0].split(",")) <= 3 or "blocks.3" in message


def test_bad_image_batches_are_refused(lite0):
    with pytest.raises(ShapeError, match="N, 3, H, W"):
        layers.features(lite0, torch.rand(3, 32, 32), "blocks.0")
    with pytest.raises(ShapeError, match="NaN"):
        layers.features(lite0, torch.full((1, 3, 32, 32), float("nan")), "blocks.0")
    with pytest.raises(ShapeError, match="uint8"):
        layers.features(lite0, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "blocks.0")


def test_module_reused_refers_to_first_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    net = Twice().eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(layers.features(net, x, "conv")["conv"], net.conv(x))
