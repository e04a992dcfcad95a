"""First use (issue 25): the small surprises a new user met, each a test."""

from __future__ import annotations

import json

import numpy as np
import torch

from repscope import images
from repscope.cli import main


def test_hog_command_draws_the_glyphs_of_the_image(tmp_path, capsys):
    from repscope.hog import HOG, render_glyphs

    out = tmp_path / "glyphs"
    assert main(["hog", "sample:chelsea", "--size", "64", "--cell-px", "12", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cells"] == [8, 8] and result["channels"] == 31 and result["file"] == "hog.png"
    x, _ = images.load_images(["sample:chelsea"], size=64)
    expected = images.to_uint8(render_glyphs(HOG()(x)[0], cell_px=12)).astype(int)  # independent of the CLI
    saved = np.asarray(images.to_uint8(images.load_image(out / "hog.png"))).astype(int)
    assert saved.shape == (96, 96, 3) and np.abs(saved - expected).max() <= 1
    assert saved.max() == 255 and (saved > 0).mean() > 0.05  # strokes drawn, normalised to the peak
    assert images.load_image(out / "grid.png").shape[1:] != (96, 96)  # image and glyphs side by side


def test_hog_command_refuses_a_network_name_in_one_line(tmp_path, capsys):
    assert main(["hog", "sample:chelsea", "--hog", "efficientnet_lite0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a HOG name" in err and not (tmp_path / "o").exists()


def test_bottleneck_of_an_all_zero_map_is_undefined_not_a_number():
    from torch import nn

    from repscope.backprop import bottleneck

    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[1] = 1.0  # channel 1 sees the image; channel 0 is a constant 0.5: no gradient reaches x
        net[0].bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    dead = bottleneck(net, x, "1", unit=0, methods=["gradient"], trials=2)
    assert dead.correlation == {"gradient": {}} and dead.score("gradient", "random") is None
    assert set(dead.undefined["gradient"]) == {"random", "constant"}
    assert "target's map is all zero" in dead.undefined["gradient"]["constant"]
    live = bottleneck(net, x, "1", unit=1, methods=["gradient"], trials=2, seed=3)
    # a constant top signal: d(sum_ij y1_ij)/dx is 1 at every pixel and channel, a constant map -> undefined
    assert "constant over the image" in live.undefined["gradient"]["constant"]
    # random top signal g (trials, 2, 8, 8): the map is g[t, 1] in each colour; the target's map is one-hot
    # at the neuron of channel 1's maximum, x.sum(0).argmax(); rho by hand, mean over the trials
    g = torch.randn((2, 2, 8, 8), generator=torch.Generator().manual_seed(3))
    onehot = torch.zeros(64, dtype=torch.float64)
    onehot[x.sum(0).flatten().argmax()] = 1
    rho = [np.corrcoef(onehot.repeat(3).numpy(), g[t, 1].flatten().double().repeat(3).numpy())[0, 1] for t in (0, 1)]
    assert abs(live.correlation["gradient"]["random"] - float(np.mean(rho))) < 1e-6


def test_saliency_summary_prints_an_undefined_bottleneck_as_undefined():
    from repscope.cli.saliency import summary

    result = {"unit": 3, "class_name": None, "layer": "blocks.0", "at": "max", "image": "sample:chelsea",
              "rectifiers": 2, "methods": ["gradient"], "selectivity": {"gradient": 0.25},
              "bottleneck": {"gradient": {"constant": 0.5}}}  # 'random' not measured: a map without variation
    assert summary(result)[1].split("bottleneck ")[1] == "random undefined (a map without variation) constant +0.500"
