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
