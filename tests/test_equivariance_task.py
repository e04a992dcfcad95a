"""Equivariance with a task-trained Ŵ: extra compensating maps in the two passes, ``--fit ridge|task|both``."""

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repscope import equivariance as eq
from repscope.channel_maps import ChannelMap
from repscope.crops import Crops, validation_sources
from repscope.equivariance import equivariance_layers


def _sources(k, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [F.interpolate(torch.rand(1, 3, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear",
                          align_corners=False)[0] for _ in range(k)]


def _mirror_pair_net():
    """conv (filters mirror images of each other in pairs, equal biases) -> ReLU -> pool -> linear."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight[1::2] = conv.weight[0::2].flip(-1)
        conv.bias[1::2] = conv.bias[0::2]
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def test_extra_maps_are_reported_as_variants_of_their_own():
    """An extra Ŵ equal to the ridge one repeats its numbers; the identity repeats ``warp``'s agreement and has
    the hand-computed compensation error Σ‖Φ(x) − flip(Φ(gx))‖² / Σ‖Φ(x)‖² (33 px, stride 2: exact flip)."""
    src = _sources(6)
    fit, test = Crops(src[:4], 24, 33, seed=1, batch_size=8), Crops(src[4:], 12, 33, seed=2, batch_size=8)
    net = _mirror_pair_net()
    eye = ChannelMap(torch.eye(8, dtype=torch.float64).reshape(8, 8, 1, 1), torch.zeros(8, dtype=torch.float64))

    def fitter(name, layer):
        ridge = eq.ridge_maps(layer, 1, eq.DEFAULT_ALPHAS)
        return replace(ridge, extra={"same": ridge.learned_back, "eye": eye})

    (row,) = equivariance_layers(net, "hflip", ["0"], fit=fit, test=test, fitter=fitter)
    (plain,) = equivariance_layers(net, "hflip", ["0"], fit=fit, test=test)
    assert row.error == plain.error and row.lam == plain.lam  # the forward maps are untouched
    assert {k: row.agreement[k] for k in plain.agreement} == plain.agreement
    assert row.agreement["same"] == row.agreement["learned"] == 1.0 and row.agreement["eye"] == row.agreement["warp"]
    assert row.compensation_error["same"] == row.compensation_error["learned"] < 1e-6
    num = den = 0.0
    with torch.no_grad():
        for x, _ in test:
            fx, fgx = net[0](x).double(), net[0](x.flip(-1)).double()
            num += float(((fx - fgx.flip(-1)) ** 2).sum())
            den += float((fx ** 2).sum())
    assert row.compensation_error["eye"] == pytest.approx(num / den, rel=1e-9) and num / den > 0.1
    assert plain.compensation_error == {"learned": row.compensation_error["learned"]} and plain.task is None


def test_validation_sources_every_fourth_photo_or_the_last():
    def crops(k):
        return Crops([torch.zeros(3, 8, 8)] * k, 4, 8)

    assert validation_sources(crops(8)) == {3, 7} and validation_sources(crops(5)) == {3}
    assert validation_sources(crops(3)) == {2} and validation_sources(crops(2)) == set()


SMALL = ["--transform", "vflip", "--layer", "blocks.0", "--fit-crops", "16", "--test", "8", "--size", "65",
         "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def ridge_and_task(tmp_path_factory):
    """``--fit ridge`` and ``--fit task`` on lite0 blocks.0, 65 px, 16 / 8 crops, 10 task steps."""
    from repscope.cli import main

    out = tmp_path_factory.mktemp("eqtask")
    assert main(["equivariance", *SMALL, "--out", str(out / "ridge")]) == 0
    assert main(["equivariance", *SMALL, "--fit", "task", "--steps", "10", "--lr", "1e-3", "--out",
                 str(out / "task")]) == 0
    return out, [json.loads((out / k / "result.json").read_text()) for k in ("ridge", "task")]


def test_cli_fit_task_keeps_the_ridge_numbers_and_adds_a_trained_variant(ridge_and_task):
    out, (ridge, task) = ridge_and_task
    (r,), (t,) = ridge["layers"], task["layers"]
    assert ridge["fit"] == "ridge" and task["fit"] == "task" and task["steps"] == 10 and "steps" not in ridge
    assert t["error"] == r["error"] and t["lam"] == r["lam"] and t["permutation"] == r["permutation"]
    assert {k: t["agreement"][k] for k in r["agreement"]} == r["agreement"]  # ridge numbers bit for bit
    assert t["compensation_error"]["learned"] == r["compensation_error"]["learned"] and r["task"] is None
    assert 0.0 <= t["agreement"]["task"] <= 1.0 and 0.0 < t["compensation_error"]["task"]
    info = t["task"]
    assert info["loss"] == "kl" and 1 <= info["steps"] <= 10 and 0 <= info["best_step"] <= info["steps"]
    assert info["held_out_loss"][1] <= info["held_out_loss"][0]  # the kept map is the best held-out point
    if info["best_step"] > 0:  # a trained map differs from the ridge start
        assert info["held_out_loss"][1] < info["held_out_loss"][0]
        assert t["compensation_error"]["task"] != t["compensation_error"]["learned"]
    assert (out / "task" / "equivariance.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "task" / "config.json").read_text())["fit_kind"] == "task"


def test_cli_summary_shows_the_task_column(ridge_and_task):
    from repscope.cli.equivariance import summary
    from repscope.equivariance import LayerEquivariance

    _, (_, task) = ridge_and_task
    (row,) = [LayerEquivariance(**{**d, "shape": tuple(d["shape"])}) for d in task["layers"]]
    head, line = summary([row])
    assert "agr:task" in head and "cmp:task" in head and line.startswith("blocks.0")
    assert f"{row.agreement['task']:.3f}" in line and f"{row.compensation_error['task']:.4f}" in line


@pytest.mark.parametrize("argv, expect", [
    (["--fit", "96"], "argument --fit: must be one of ridge, task, both (the number of fit crops is --fit-crops 96)"),
    (["--fit", "tasks"], "argument --fit: must be one of ridge, task, both, got 'tasks'"),
    (["--fit", "task", "--no-agreement"], "--no-agreement skips. Use --fit ridge."),
    (["--fit", "both", "--model", "hog"], "HOG does not have. Use --fit ridge."),
])
def test_cli_bad_fit_is_a_one_line_error(capsys, tmp_path, argv, expect):
    from repscope.cli import main

    assert main(["equivariance", "--transform", "vflip", *argv, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_report_section_shows_the_task_column(ridge_and_task):
    from repscope.report.analysis import render_equivariance
    from repscope.report.folders import load_folder
    from repscope.report.html import fmt

    out, (_, task) = ridge_and_task
    html = render_equivariance(load_folder(out / "task")).body
    (t,) = task["layers"]
    assert "agreement learned (task)" in html and "agreement learned (ridge)" in html and "Ŵ error task" in html
    assert f"<td>{fmt(t['compensation_error']['task'])}</td>" in html
    plain = render_equivariance(load_folder(out / "ridge")).body
    assert "learned (task)" not in plain and "agreement learned" in plain
