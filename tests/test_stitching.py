"""Stitching: the controls that make its numbers trustworthy (self-stitch, permuted copy, random
features, two seeds of a digits CNN), resampling, the naive map, and lite0 → lite1 (slow)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from repscope import models
from repscope.crops import Crops, crop_data
from repscope.errors import ShapeError
from repscope.stitching import (Stitch, StitchedNetwork, naive_matrix, resample, resample_mode, stitch)


# ---- a small CNN on scikit-learn's digits, trained in seconds ---------------------------------------
class DigitsCNN(nn.Module):
    """8×8 digits (as RGB in [0, 1]) → 10 classes: three 3×3 convolutions with ReLU, average pool, linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()
        self.c3, self.r3 = nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, 10)

    def forward(self, x):
        x = self.r3(self.c3(self.r2(self.c2(self.r1(self.c1(x))))))
        return self.fc(self.pool(x).flatten(1))


def digits_data():
    """``(images (1797, 3, 8, 8) in [0, 1], labels (1797,))``, scikit-learn's offline digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).div(16).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return x, torch.tensor(d.target)


def train_digits_cnn(seed: int, epochs: int = 8):
    """A DigitsCNN trained by Adam on the first 1300 digits (seed: init and order); returns a Model."""
    x, y = digits_data()
    torch.manual_seed(seed)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(1300, generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    return models.wrap(net.eval(), input_size=8, name=f"digits_seed{seed}")


def digits_streams(n_fit: int = 400, n_test: int = 300):
    """Fit crops from digits 0–1299 (labelled), held-out from 1300–; each crop is a whole digit."""
    x, y = digits_data()
    fit = Crops(list(x[:n_fit]), n_fit, 8, scale=(1.0, 1.0), batch_size=100, labels=y[:n_fit].tolist())
    test = Crops(list(x[1300:1300 + n_test]), n_test, 8, scale=(1.0, 1.0), batch_size=100,
                 labels=y[1300:1300 + n_test].tolist())
    return fit, test


@pytest.fixture(scope="module")
def digits_models():
    return train_digits_cnn(0), train_digits_cnn(1)


@pytest.fixture(scope="module")
def small_crops():
    return crop_data(n_fit=32, n_test=16, size=65, batch_size=16)


# ---- controls ---------------------------------------------------------------------------------------
def test_self_stitch_is_identity_with_full_agreement(lite0, small_crops):
    fit, test = small_crops
    row = stitch(lite0, "blocks.2", lite0, "blocks.2", fit=fit, test=test, fit_kind="ridge")
    assert row.resample == "none" and row.shape_a == row.shape_b == (40, 9, 9)
    assert row.ridge["agreement"] == 1.0 and row.naive["agreement"] == 1.0
    assert row.ridge["error"] < 1e-8 and row.cka["linear"] == pytest.approx(1.0, abs=1e-9)
    # the fitted E itself
    fit2, _ = small_crops
    from repscope.regression import StreamingRidge, to_rows
    from repscope.layers import features
    acc = StreamingRidge(40, 40)
    for x, _ in fit2:
        f = features(lite0, x, ["blocks.2"])["blocks.2"]
        acc.update(to_rows(f), to_rows(f))
    w, b = acc.solve(row.lam)
    assert (w - torch.eye(40, dtype=w.dtype)).abs().max() < 1e-4 and b.abs().max() < 1e-4


def _permuted_copy(model: models.Model, seed: int = 0):
    """A copy of the digits CNN whose channels after ``r1`` are permuted and rescaled (same function)."""
    b = copy.deepcopy(model)
    net = b.module
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(16, generator=g)
    scale = torch.rand(16, generator=g) * 3 + 0.5
    with torch.no_grad():
        net.c1.weight.copy_(net.c1.weight[perm] * scale[:, None, None, None])
        net.c1.bias.copy_(net.c1.bias[perm] * scale)
        net.c2.weight.copy_(net.c2.weight[:, perm] / scale[None, :, None, None])
    return b, perm, scale


def test_permuted_and_rescaled_copy_is_recovered(digits_models):
    a = digits_models[0]
    b, perm, scale = _permuted_copy(a)
    x, _ = digits_data()
    assert torch.allclose(a(x[:50]), b(x[:50]), atol=1e-5)  # the copy computes the same function
    fit, test = digits_streams(200, 200)
    row = stitch(a, "r1", b, "r1", fit=fit, test=test, fit_kind="ridge")
    assert row.ridge["agreement"] == 1.0 and row.ridge["error"] < 1e-4
    assert row.naive["agreement"] < 0.5  # the identity does not undo a permutation
    assert row.cka["linear"] < 0.999     # CKA is not invariant to a diagonal rescaling


def test_random_features_stitch_near_chance(lite0, small_crops):
    fit, test = small_crops
    rand = models.load("efficientnet_lite0", random_init=True)
    trained = stitch(lite0, "blocks.4", lite0, "blocks.4", fit=fit, test=test, fit_kind="ridge")
    random_row = stitch(rand, "blocks.4", lite0, "blocks.4", fit=fit, test=test, fit_kind="ridge")
    # chance: the agreement of a guess drawn from B's own class frequencies on the held-out crops
    with torch.no_grad():
        classes = torch.cat([lite0(x).argmax(1) for x, _ in test])
    chance = float(((torch.bincount(classes).float() / len(classes)) ** 2).sum())
    assert trained.ridge["agreement"] == 1.0
    assert random_row.ridge["agreement"] <= chance + 0.15
    # random features keep some image structure, so CKA stays well above 0
    assert random_row.ridge["error"] > 0.5 and random_row.cka["debiased"] < 0.6


def test_two_digit_seeds_stitch_well_and_task_does_not_lose(digits_models):
    a, b = digits_models
    fit, test = digits_streams()
    row = stitch(a, "r2", b, "r2", fit=fit, test=test, fit_kind="both", steps=60, seed=0)
    assert row.reference["accuracy"] > 0.9
    assert row.naive["agreement"] < 0.5 < row.ridge["agreement"]
    assert row.ridge["agreement"] > 0.85 and row.task["accuracy"] > 0.85
    assert row.task["held_out_loss"][1] <= row.task["held_out_loss"][0]
    assert row.task["loss"] == "ce"  # the digit streams are labelled
    assert 0.0 < row.ridge["error"] < row.naive["error"] and 0.3 < row.cka["linear"] <= 1.0


# ---- parts ------------------------------------------------------------------------------------------
def test_resample_mode_from_strides_and_shapes():
    assert resample_mode(8, 16) == "area" and resample_mode(16, 8) == "bilinear" and resample_mode(8, 8) == "none"
    f = torch.arange(16.0).reshape(1, 1, 4, 4)
    down = resample(f, (2, 2), "area")
    assert torch.equal(down[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))  # 2×2 block means
    up = resample(torch.tensor([[[[0.0, 2.0]]]]), (1, 4), "bilinear")
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))


def test_naive_matrix_identity_and_projection():
    w, b = naive_matrix(4, 4)
    assert torch.equal(w, torch.eye(4, dtype=torch.float64)) and not b.any()
    w, _ = naive_matrix(4, 2)      # output j reads input ⌊j·4/2⌋: 0, 2
    assert w.nonzero().tolist() == [[0, 0], [1, 2]]
    w, _ = naive_matrix(2, 3, kernel=3)  # centre tap (index 4) of input ⌊j·2/3⌋: 0, 0, 1
    assert w.nonzero().tolist() == [[0, 4], [1, 4], [2, 13]]


def test_stitch_module_and_network_shapes(digits_models):
    a, b = digits_models
    s = Stitch(16, 32, kernel=3, mode="area")
    assert s(torch.randn(2, 16, 8, 8), (4, 4)).shape == (2, 32, 4, 4)
    w, bias = s.matrix
    assert w.shape == (32, 16 * 9) and bias.shape == (32,)
    net = StitchedNetwork(a, "r1", b, "r2", s)
    x, _ = digits_data()
    assert net.grid_b(x[:3]) == (4, 4) and net(x[:3]).shape == (3, 10)
    with pytest.raises(ShapeError, match="odd"):
        Stitch(4, 4, kernel=2)


def test_mismatched_kinds_and_bad_fit_are_one_line_errors(digits_models):
    a, b = digits_models
    fit, test = digits_streams(100, 100)
    with pytest.raises(ShapeError, match="same kind"):
        stitch(a, "r1", b, "fc", fit=fit, test=test, fit_kind="ridge")
    with pytest.raises(ShapeError, match="unknown fit"):
        stitch(a, "r1", b, "r1", fit=fit, test=test, fit_kind="sgd")


@pytest.mark.slow
def test_lite0_to_lite1_ridge_and_task_beat_naive(lite0):
    lite1 = models.load("efficientnet_lite1")
    fit, test = crop_data(n_fit=64, n_test=32, size=97, batch_size=16)
    row = stitch(lite0, "blocks.3", lite1, "blocks.3", fit=fit, test=test, fit_kind="both", steps=40)
    assert row.ridge["agreement"] > row.naive["agreement"] + 0.2
    assert row.task["agreement"] > row.naive["agreement"] + 0.2
    assert row.ridge["error"] < row.naive["error"]


# ---- command line -----------------------------------------------------------------------------------
def _cli(capsys, *argv):
    from repscope.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SMALL = ("--fit-crops", "16", "--test-crops", "8", "--size", "65", "--batch-size", "8", "--quiet")


def test_cli_stitch_json_shape_config_and_resume(capsys, tmp_path):
    import json

    out = tmp_path / "run"
    argv = ["stitch", "--from", "efficientnet_lite0:blocks.1", "--to", "efficientnet_lite0:blocks.1",
            "--fit", "both", "--steps", "4", "--out", str(out), "--json", *SMALL]
    code, stdout, _ = _cli(capsys, *argv)
    assert code == 0
    (pair,) = json.loads(stdout)["pairs"]
    assert pair["from"] == pair["to"] == "efficientnet_lite0:blocks.1"
    assert pair["reference"] == {"agreement": 1.0} and pair["ridge"]["agreement"] == 1.0
    assert {"agreement", "error"} <= set(pair["naive"]) and {"agreement", "error"} <= set(pair["task"])
    assert set(pair["cka"]) == {"linear", "debiased"} and pair["cka"]["linear"] == pytest.approx(1.0, abs=1e-9)
    config = json.loads((out / "config.json").read_text())
    assert config["source"] == "efficientnet_lite0:blocks.1" and config["steps"] == 4
    # resume: a finished pair is not recomputed (its recorded numbers are kept as they are)
    record = json.loads((out / "result.json").read_text())
    key = next(iter(record["items"]))
    record["items"][key]["ridge"]["agreement"] = 0.5  # a marker: recomputing would overwrite it
    (out / "result.json").write_text(json.dumps(record))
    code, stdout, _ = _cli(capsys, *argv, "--resume")
    assert code == 0 and json.loads(stdout)["pairs"][0]["ridge"]["agreement"] == 0.5


def test_cli_stitch_matched_sweep_writes_plot(capsys, tmp_path):
    import json

    pairs = ["conv_stem"] + [f"blocks.{i}" for i in range(7)] + ["conv_head"]  # lite0's stages, no BN/pool
    code, stdout, _ = _cli(capsys, "stitch", "--from", "efficientnet_lite0", "--to", "efficientnet_lite0",
                           "--layers", "matched", "--fit", "ridge", "--out", str(tmp_path / "m"), "--json",
                           "--fit-crops", "8", "--test-crops", "4", "--size", "65", "--batch-size", "4", "--quiet")
    assert code == 0
    rows = json.loads(stdout)["pairs"]
    assert [r["from"].split(":")[1] for r in rows] == [r["to"].split(":")[1] for r in rows] == pairs
    assert all(r["task"] is None for r in rows)
    # a self-stitch is exact wherever the fit rows outnumber the channels (8 crops: up to blocks.2)
    assert all(r["ridge"]["agreement"] == 1.0 and r["ridge"]["error"] < 1e-8 for r in rows[:5])
    png = tmp_path / "m" / "stitch.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, expect", [
    (["--from", "efficientnet_lite0", "--to", "efficientnet_lite1:blocks.3"], "names no layer"),
    (["--from", "efficientnet_lite0:blocks.99", "--to", "efficientnet_lite1:blocks.3"], "closest"),
    (["--from", "efficientnet_lite0:blocks.3", "--to", "efficientnet_lite1:classifier"], "same kind"),
    (["--from", "efficientnet_lite0:blocks.3", "--to", "hog"], "not a classifier"),
    (["--from", "efficientnet_lite0:blocks.3", "--to", "efficientnet_lite1:blocks.3", "--layers", "matched"],
     "--layers matched picks them"),
])
def test_cli_stitch_one_line_errors(capsys, tmp_path, argv, expect):
    code, _, err = _cli(capsys, "stitch", *argv, "--fit", "ridge", "--out", str(tmp_path / "e"), *SMALL)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("repscope: error:") and expect in lines[0], err


def test_stitch_across_strides_resamples_by_area_and_hog_feeds_a_cnn(digits_models, lite0):
    a, b = digits_models
    fit, test = digits_streams(200, 200)
    row = stitch(a, "r1", b, "r2", fit=fit, test=test, fit_kind="ridge")
    assert (row.stride_a, row.stride_b, row.resample) == (1.0, 2.0, "area")
    assert row.shape_a == (16, 8, 8) and row.shape_b == (32, 4, 4)
    assert row.ridge["agreement"] > 0.8 > row.naive["agreement"] and row.ridge["error"] < 0.2
    hog = models.load("hog")  # 31 UoCTTI channels per 8-pixel cell -> lite0's stride-8 stage
    fit, test = crop_data(n_fit=16, n_test=8, size=64, batch_size=8)
    row = stitch(hog, "logits", lite0, "blocks.2", fit=fit, test=test, fit_kind="ridge")
    assert row.shape_a[0] == 31 and row.shape_b[0] == 40 and 0.0 < row.ridge["error"] < row.naive["error"]


def test_layer_stride_asks_the_geometry(lite0):
    """Strides of lite0 stages as :func:`repscope.geometry.cell_geometry` measures them; HOG in closed form."""
    from repscope.geometry import cell_geometry
    from repscope.layers import Representation
    from repscope.stitching import layer_stride

    strides = {layer: layer_stride(lite0, layer) for layer in ("conv_stem", "blocks.1", "blocks.3", "logits")}
    assert strides == {"conv_stem": 2.0, "blocks.1": 4.0, "blocks.3": 16.0, "logits": None}
    assert layer_stride(lite0, "blocks.3") == Representation(lite0, "blocks.3").stride
    hog = models.load("hog:dalal-triggs,cell=6")
    assert layer_stride(hog, "logits") == 6.0 == cell_geometry(hog.module, 48).stride[0]
