"""The invert / maximize / caricature commands: files, result.json numbers, loss curves that go down."""

from __future__ import annotations

import json

from repscope import images
from repscope.cli import main


def _result(capsys, argv) -> dict:
    assert main(argv + ["--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_invert_hog_writes_every_output(tmp_path, capsys):
    out = tmp_path / "hog"
    result = _result(capsys, ["invert", "sample:chelsea", "--model", "hog", "--iters", "30", "--out", str(out)])
    (item,) = result["items"].values()
    assert item["layer"] == "logits" and 0 < item["error"] < 0.9
    assert item["loss_curve"][-1] < item["loss_curve"][0]
    assert item["hyperparameters"]["iters"] == 30 and item["iterations"] == 30
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "grid.png", "invert_logits.png", "loss.png",
                                                     "result.json"]
    assert images.load_image(out / "invert_logits.png").shape == (3, 224, 224)
    assert json.loads((out / "config.json").read_text())["model"] == "hog"


def test_maximize_two_units_batched(tmp_path, capsys):
    out = tmp_path / "max"
    result = _result(capsys, ["maximize", "--layer", "blocks.1", "--unit", "3", "--unit", "5,10,10", "--iters", "20",
                              "--out", str(out)])
    items = result["items"]
    assert list(items) == ["3", "(5, 10, 10)"]
    for item in items.values():
        assert item["activation"] > 0 and item["ratio"] > 0
        assert item["loss_curve"][-1] < item["loss_curve"][0]
    assert (out / "maximize_blocks.1_3.png").is_file() and (out / "grid.png").is_file()


def test_caricature_exaggerates(tmp_path, capsys):
    out = tmp_path / "car"
    result = _result(capsys, ["caricature", "sample:coffee", "--layer", "blocks.1", "--iters", "30",
                              "--out", str(out)])
    (item,) = result["items"].values()
    assert item["gain"] > 1.0
    assert result["summary"] == {"blocks.1": round(item["gain"], 4)}


def test_progress_lines_without_terminal_and_quiet_silences_them(tmp_path, capsys):
    import re

    argv = ["invert", "sample:chelsea", "--model", "hog", "--iters", "2", "--out"]
    assert main(argv + [str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err.splitlines()
    progress = [line for line in err if line.startswith("repscope: invert")]
    assert len(progress) == 1 and re.fullmatch(r"repscope: invert logits done \(1/1, \d+ s\)", progress[0])
    assert main(argv + [str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_first_use_surprises_are_one_line_errors(tmp_path, capsys):
    from repscope.images import save_image
    import torch

    folder = tmp_path / "photos"
    for name in ("a", "b"):
        save_image(torch.rand(3, 16, 16), folder / f"{name}.png")
    cases = [(["invert", str(folder), "--layer", "blocks.0"], "a folder of 2 images"),
             (["invert", "sample:chelsea", "--layer", "blocks.0", "--layer", "blocks.0"], "--layer blocks.0 given twice"),
             (["invert", "sample:chelsea", "--model", "resnet50"], "torchvision:resnet50 or timm:resnet50")]
    for argv, expect in cases:
        assert main(argv + ["--iters", "1", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "out").exists()


def test_default_output_folder_is_named_after_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for image in ("sample:chelsea", "sample:coffee"):  # a second image does not collide with the first
        assert main(["invert", image, "--model", "hog", "--iters", "1", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "repscope-results").iterdir()) == ["invert-chelsea-logits",
                                                                                 "invert-coffee-logits"]
    assert (tmp_path / "repscope-results" / "invert-coffee-logits" / "invert_logits.png").is_file()


def test_help_has_examples_and_sample_names(capsys):
    import pytest

    with pytest.raises(SystemExit):
        from repscope.cli import build_parser
        build_parser().parse_args(["invert", "--help"])
    text = capsys.readouterr().out
    assert "examples:\n  repscope invert sample:chelsea --layer blocks.3" in text and "sample:NAME" in text
    assert "``" not in text and "2 smooth (default)" in text and "papers' momentum AdaGrad (default)" in text


def test_maximize_and_saliency_help_have_examples_without_markup(capsys):
    import pytest

    from repscope.cli import build_parser

    for command in ("maximize", "saliency", "caricature"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert f"examples:\n  repscope {command} " in text and "``" not in text
        assert ("sample:NAME" in text) == (command != "maximize")
