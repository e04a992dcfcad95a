"""Targets, normalisation, rendering, selectivity and bottleneck (backprop.saliency/analysis/render)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import repscope.backprop as bp
from repscope.backprop.analysis import mean_pairwise_correlation
from repscope.errors import LayerError, RepscopeError, ShapeError
from repscope.models import wrap


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.block(F.relu(self.conv(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def x():
    return torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(2))


def autograd_map(net, x, objective):
    """Independent reference: plain autograd of a scalar objective of (x -> block output, logits)."""
    x = x.clone().requires_grad_(True)
    feats = net.block(F.relu(net.conv(x)))
    logits = net.fc(feats.mean((2, 3)))
    (g,) = torch.autograd.grad(objective(feats, logits), x)
    return g


def test_class_targets_per_image_and_predicted(net, x):
    classes = torch.tensor([0, 3, 1])
    ref = autograd_map(net, x, lambda f, z: z[torch.arange(3), classes].sum())
    assert torch.allclose(bp.saliency(net, x, bp.Target.class_(classes), "gradient"), ref, atol=1e-7)
    assert torch.allclose(bp.saliency(net, x, [0, 3, 1], "gradient"), ref, atol=1e-7)
    pred = net(x).argmax(1)
    res = bp.backward_map(net, x, None, "gradient")
    assert torch.equal(res.units, pred)
    assert torch.allclose(res.values, net(x)[torch.arange(3), pred])


@pytest.mark.parametrize("at", ["sum", "max", (2, 5)])
def test_channel_and_neuron_targets(net, x, at):
    k = 4

    def objective(f, z):
        if at == "sum":
            return f[:, k].sum()
        if at == "max":
            return f[:, k].flatten(1).amax(1).sum()
        return f[:, k, at[0], at[1]].sum()

    t = bp.Target.neuron("block", k, *at) if isinstance(at, tuple) else bp.Target.channel("block", k, at)
    assert torch.allclose(bp.saliency(net, x, t, "gradient"), autograd_map(net, x, objective), atol=1e-7)


def test_direction_target_shared_and_per_image(net, x):
    d = torch.randn(6, 6, 6, generator=torch.Generator().manual_seed(3))
    ref = autograd_map(net, x, lambda f, z: (f * d).sum())
    assert torch.allclose(bp.saliency(net, x, bp.Target.along("block", d), "gradient"), ref, atol=1e-6)
    per = d.expand(3, -1, -1, -1)
    assert torch.allclose(bp.saliency(net, x, bp.Target.along("block", per), "gradient"), ref, atol=1e-6)
    with pytest.raises(ShapeError):
        bp.saliency(net, x, bp.Target.along("block", torch.ones(5)), "gradient")


def test_batch_equals_one_by_one(net, x):
    t = bp.Target.channel("block", [1, 2, 5], "max")
    together = bp.saliency(net, x, t, "guided")
    for n, k in enumerate([1, 2, 5]):
        alone = bp.saliency(net, x[n : n + 1], bp.Target.channel("block", k, "max"), "guided")
        assert torch.allclose(together[n : n + 1], alone, atol=1e-7)


def test_map_is_wrt_images01_through_the_normalisation(net, x):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.5)
    model = wrap(net, mean=mean, std=std)
    inputs = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    for method in bp.METHODS:
        wrt_inputs = bp.saliency(net, inputs, 2, method)  # bare module: identity preprocessing
        assert torch.allclose(bp.saliency(model, x, 2, method), wrt_inputs / torch.tensor(std).view(1, 3, 1, 1),
                              atol=1e-6)


def test_user_errors_are_repscope_errors(net, x):
    with pytest.raises(LayerError, match="out of range"):
        bp.saliency(net, x, 9, "guided")
    with pytest.raises(LayerError):
        bp.saliency(net, x, bp.Target.neuron("block", 0, 6, 0), "guided")
    with pytest.raises(LayerError):
        bp.saliency(net, x, bp.Target.channel("blokc", 0), "guided")
    with pytest.raises(ShapeError):
        bp.saliency(net, x, [0, 1], "guided")
    with pytest.raises(ShapeError):
        bp.saliency(net, x[0], 0, "guided")
    with pytest.raises(RepscopeError, match="deconvnet"):
        bp.saliency(net, x, 0, "deconv")


def test_warns_when_no_rectifier_precedes_the_target(net, x):
    with pytest.warns(UserWarning, match="no rectifier"):
        bp.saliency(net, x, bp.Target.channel("conv", 0), "guided")


# ---------------------------------------------------------------- selectivity and bottleneck
class Linear(nn.Module):
    """One conv covering the whole image: channel k's map is exactly its filter W_k, for every method."""

    def __init__(self, c=5, s=6):
        super().__init__()
        self.conv = nn.Conv2d(3, c, s, bias=False)

    def forward(self, x):
        return self.conv(x)


def test_mean_pairwise_correlation_matches_numpy():
    maps = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    c = np.corrcoef(maps.flatten(1).numpy())
    assert mean_pairwise_correlation(maps) == pytest.approx((c.sum() - 5) / 20, abs=1e-10)


@pytest.mark.filterwarnings("ignore:no rectifier")
def test_selectivity_closed_form_on_a_linear_layer():
    torch.manual_seed(0)
    net = Linear()
    x = torch.rand(1, 3, 6, 6)
    res = bp.selectivity(net, x, "conv", k=3)
    acts = net(x)[0, :, 0, 0]
    assert res.channels == acts.topk(3).indices.tolist()
    w = net.conv.weight.detach()[res.channels]
    expected = mean_pairwise_correlation(w)
    for method in bp.METHODS:
        assert torch.allclose(res.maps[method], w, atol=1e-6)
        assert res.selectivity[method] == pytest.approx(expected, abs=1e-6)


@pytest.mark.filterwarnings("ignore:no rectifier")
def test_bottleneck_closed_form_on_a_linear_layer():
    torch.manual_seed(0)
    net = Linear()
    x = torch.rand(1, 3, 6, 6)
    res = bp.bottleneck(net, x, "conv", unit=2, signals=("constant",))
    w = net.conv.weight.detach()
    expected = float(np.corrcoef(w[2].flatten().numpy(), w.sum(0).flatten().numpy())[0, 1])
    assert res.unit == 2
    for method in bp.METHODS:
        assert res.correlation[method]["constant"] == pytest.approx(expected, abs=1e-5)


def test_lite0_selectivity_deconvnet_above_guided_above_gradient():
    from repscope import images, models

    try:
        model = models.load("efficientnet_lite0")
    except RepscopeError as err:  # weights not installed on this machine
        pytest.skip(str(err))
    x = images.load_images(["sample:chelsea"], size=128)[0]
    res = bp.selectivity(model, x, "conv_head", k=4)
    s = res.selectivity
    assert s["deconvnet"] > s["guided"] > s["gradient"] + 0.3
    assert s["deconvnet"] > 0.8 and abs(s["gradient"]) < 0.2
    bn = bp.bottleneck(model, x, "conv_head", methods=("gradient", "deconvnet"), signals=("random",), trials=1)
    assert bn.correlation["deconvnet"]["random"] > 0.8 > 0.2 > abs(bn.correlation["gradient"]["random"])


# ---------------------------------------------------------------- rendering
def test_render_ranges_and_fixed_points():
    m = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    rgb = bp.signed_rgb(m, percentile=100)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert torch.allclose(bp.signed_rgb(torch.zeros(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 0.5))
    assert torch.allclose((rgb - 0.5).flatten(1).abs().amax(1), torch.full((2,), 0.5))
    heat = bp.heatmap(m, percentile=100)
    assert heat.shape == (2, 5, 5) and torch.allclose(heat.flatten(1).amax(1), torch.ones(2))
    assert torch.allclose(heat, m.abs().amax(1) / m.abs().flatten(1).amax(1).view(2, 1, 1))
    # robust scaling: one hot pixel no longer turns the rest of the map grey
    spiky = torch.ones(1, 3, 20, 20)
    spiky[0, :, 0, 0] = 1000.0
    assert bp.heatmap(spiky, percentile=100)[0, 5, 5] < 0.01 and bp.heatmap(spiky)[0, 5, 5] == 1.0
    assert bp.signed_rgb(-spiky)[0, 0, 5, 5] == 0.0
    img = torch.rand(2, 3, 5, 5)
    assert torch.allclose(bp.overlay(img, torch.zeros_like(m)), img)
    assert torch.equal(bp.colorize(torch.ones(1, 1, 1)), torch.ones(1, 3, 1, 1))


# ---------------------------------------------------------------- command line
def test_cli_saliency_writes_maps_grid_and_selectivity(tmp_path, capsys):
    import json

    from repscope.cli import main

    out = tmp_path / "sal"
    argv = ["saliency", "sample:coffee", "--model", "torchvision:alexnet", "--random-init", "--method", "guided",
            "--method", "deconvnet", "--layer", "features.8", "--top-k", "3", "--out", str(out), "--json",
            "--device", "cpu"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result == json.loads(capsys.readouterr().out)
    assert result["methods"] == ["guided", "deconvnet"] and result["layer"] == "features.8"
    assert set(result["selectivity"]) == {"guided", "deconvnet"} and len(result["selectivity_units"]) == 3
    assert all(-1 <= v <= 1 for v in result["selectivity"].values())
    assert result["rectifiers"] == 3  # features.1, .4, .7: the forward stops after features.8
    for name in ("grid", "saliency_guided", "heatmap_deconvnet", "overlay_guided", "units_deconvnet"):
        assert (out / f"{name}.png").stat().st_size > 0
    assert (out / "config.json").exists()
    # --class with --layer is refused with one line and status 2; an existing --out is refused
    assert main(["saliency", "sample:coffee", "--class", "3", "--layer", "features.8", "--out", str(tmp_path / "x")]) == 2
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["blocks.5", "conv_head"])
def test_lite0_selectivity_at_full_resolution(layer):
    from repscope import images, models

    model = models.load("efficientnet_lite0")
    x = images.load_images(["sample:chelsea"], size=224)[0]
    s = bp.selectivity(model, x, layer, k=8).selectivity
    assert s["deconvnet"] > s["guided"] + 0.1 > s["gradient"] + 0.4
    b = bp.bottleneck(model, x, layer, trials=4).correlation
    for signal in ("random", "constant"):
        assert b["deconvnet"][signal] > b["guided"][signal] > abs(b["gradient"][signal]) + 0.3
