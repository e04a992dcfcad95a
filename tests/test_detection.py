"""Detectors end to end on EfficientNet-Lite0: zero-training ImageNet path, trained heads, save/load, CLI."""

from __future__ import annotations

import json

import pytest
import torch

import repscope.cli
from repscope.detection import data as ddata
from repscope.detection.detector import Detector, build_head, evaluate_detector, imagenet_detector
from repscope.detection.proposals import ProposalError
from repscope.detection.rcnn import imagenet_scores_spp, warp_regions
from repscope.detection.train import train_fast_rcnn, train_rcnn
from repscope.errors import ShapeError
from repscope.images import load_image

CAT = torch.tensor([[30.0, 0.0, 420.0, 300.0]])  # the cat in sample:chelsea (451 x 300)


@pytest.fixture
def main(monkeypatch):
    """``repscope.cli.main`` with ``detect`` registered (the lead merges it into SUBCOMMANDS)."""
    if "detect" not in repscope.cli.SUBCOMMANDS:
        monkeypatch.setattr(repscope.cli, "SUBCOMMANDS", tuple(repscope.cli.SUBCOMMANDS) + ("detect",))
    return repscope.cli.main


@pytest.fixture(scope="module")
def tiny(lite0):
    """A Fast R-CNN head trained briefly on 6 small scenes, and 5 test scenes."""
    train = ddata.synthetic("train", n=6, size=128)
    test = ddata.synthetic("test", n=5, size=128)
    det, losses = train_fast_rcnn(lite0, "blocks.6", train, trunk_size=256, limit=40, iters=60, seed=0)
    return det, losses, test


def test_imagenet_detection_finds_the_cat(lite0):
    det = imagenet_detector(lite0, limit=80)
    found = det.detect(load_image("sample:chelsea"))
    top = int(torch.argmax(found.scores))
    assert 281 <= int(found.labels[top]) <= 285
    from torchvision.ops import box_iou
    assert box_iou(found.boxes[top:top + 1], CAT).item() > 0.3


def test_spp_on_the_whole_image_is_the_network(lite0):
    """The classifier on the region mean of the last map of the whole image ≈ the network's own output."""
    image = load_image("sample:coffee")
    image = torch.nn.functional.interpolate(image[None], size=(224, 224), mode="bilinear", antialias=True)[0]
    probs = imagenet_scores_spp(lite0, image, torch.tensor([[0.0, 0.0, 224.0, 224.0]]), None)
    with torch.no_grad():
        reference = lite0(image[None]).softmax(1)
    assert probs.argmax() == reference.argmax()
    assert (probs - reference).abs().max() < 0.05


def test_rcnn_warp_adds_context_and_fills_the_input():
    image = torch.zeros(3, 100, 100)
    image[:, 40:60, 40:60] = 1.0
    crops = warp_regions(image, torch.tensor([[40.0, 40.0, 60.0, 60.0]]), size=64, context=16)
    assert crops.shape == (1, 3, 64, 64)
    centre = crops[0, 0, 20:44, 20:44]
    assert centre.mean() > 0.95 and crops[0, 0, :12].mean() < 0.05  # the box fills 32 of 64 px: context all round


def test_trained_head_beats_the_untrained_one(tiny, lite0):
    det, losses, test = tiny
    assert sum(losses[-10:]) < 0.6 * sum(losses[:10])
    trained = evaluate_detector(det, test)
    torch.manual_seed(1)
    untrained = evaluate_detector(Detector(lite0, det.config, build_head(det.config)), test)
    assert trained["map"] > untrained["map"] + 0.2, (trained["map"], untrained["map"])


def test_saved_head_gives_the_same_detections(tiny, lite0, tmp_path):
    det, _, test = tiny
    det.save(tmp_path / "head")
    from safetensors.torch import load_file
    assert set(load_file(str(tmp_path / "head" / "head.safetensors"))) >= {"fc6.weight", "cls.weight", "box.weight"}
    again = Detector.load(tmp_path / "head", lite0)
    a, b = det.detect(test[0].image), again.detect(test[0].image)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)


def test_rcnn_head_trains_and_detects(lite0):
    train = ddata.synthetic("train", n=2, size=96)
    det = train_rcnn(lite0, "blocks.6", train, limit=16, negatives=4, regress=2)
    result = evaluate_detector(det, train)
    assert det.head.box.abs().sum() > 0 and result["map"] > 0.5


def test_detect_refuses_no_proposals_and_boxes_outside(tiny):
    det, _, test = tiny
    with pytest.raises(ProposalError, match="no proposals"):
        det.detect(test[0].image, boxes=torch.zeros(0, 4))
    with pytest.raises(ShapeError, match="outside"):
        det.detect(test[0].image, boxes=torch.tensor([[0.0, 0.0, 500.0, 50.0]]))


def test_cli_train_eval_detect(main, tmp_path, capsys):
    head, ev, im = tmp_path / "head", tmp_path / "eval", tmp_path / "img"
    common = ["--images", "4", "--scene-size", "96", "--trunk-size", "192", "--proposals", "30", "--quiet"]
    assert main(["detect", "train", "--method", "spp", "--iters", "20", "--out", str(head)] + common) == 0
    config = json.loads((head / "config.json").read_text())
    assert config["method"] == "spp" and config["classes"] == list(ddata.OBJECTS) and (head / "head.safetensors").is_file()
    assert main(["detect", "eval", "--head", str(head), "--out", str(ev), "--json"] + common) == 0
    result = json.loads((ev / "result.json").read_text())
    assert 0.0 <= result["map"] <= 1.0 and len(result["ap"]) == 4 and (ev / "pr.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["detect", "sample:coffee", "--head", str(head), "--out", str(im), "--proposal-method", "grid",
                 "--proposals", "20", "--quiet"]) == 0
    boxes = json.loads((im / "boxes.json").read_text())
    assert boxes[0]["image"] == "sample:coffee" and 0 < len(boxes[0]["detections"]) <= 100
    assert (im / "coffee_detections.png").stat().st_size > 0


def test_cli_errors_are_one_line(main, tmp_path, capsys):
    voc = tmp_path / "voc"
    ddata.write_voc(ddata.synthetic("test", n=2, size=64), voc, "test")
    next((voc / "Annotations").iterdir()).unlink()
    assert main(["detect", "eval", "--imagenet", "--data", str(voc), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is missing" in err
    assert main(["detect", "sample:chelsea", "--out", str(tmp_path / "p")]) == 2
    assert "--head DIR" in capsys.readouterr().err
    assert main(["detect", "train", "sample:chelsea", "--out", str(tmp_path / "q")]) == 2
    assert "takes no image" in capsys.readouterr().err


@pytest.mark.slow
def test_fast_rcnn_reaches_the_goal_on_the_synthetic_test_split(lite0):
    """Issue 19's goal: Fast R-CNN on the Lite0 trunk, mAP@0.5 ≥ 0.80 on the synthetic test split."""
    train, test = ddata.synthetic("train", n=80), ddata.synthetic("test", n=40)
    det, _ = train_fast_rcnn(lite0, "blocks.6", train, iters=400)
    result = evaluate_detector(det, test)
    assert result["map"] >= 0.80, result["ap"]
