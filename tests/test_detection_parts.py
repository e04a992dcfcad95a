"""Pooling (RoI / SPP / mean), proposals, synthetic and VOC data, the Fast R-CNN loss and sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repscope.detection import data as ddata
from repscope.detection.heads import FastRCNNHead, fast_rcnn_loss
from repscope.detection.proposals import ProposalError, grid_proposals, propose, selective_search
from repscope.detection.roi import as_rois, roi_max_pool, roi_mean, spp_pool, trunk_map
from repscope.detection.train import sample_regions
from repscope.errors import ShapeError
from repscope.layers import Representation
from torchvision.ops import box_iou


def test_roi_pool_of_the_whole_map_is_global_max_pool():
    fmap = torch.randn(2, 5, 7, 9)
    rois = as_rois([torch.tensor([[0.0, 0.0, 9 * 32 - 1, 7 * 32 - 1]]), torch.tensor([[0.0, 0.0, 9 * 32 - 1, 7 * 32 - 1]])])
    one = roi_max_pool(fmap, rois, 1 / 32, output_size=1)
    assert torch.equal(one[:, :, 0, 0], fmap.amax((2, 3)))
    assert torch.equal(roi_max_pool(fmap, rois, 1 / 32, 7).amax((2, 3)), fmap.amax((2, 3)))
    assert torch.equal(spp_pool(fmap, rois, 1 / 32)[:, :5], fmap.amax((2, 3)))  # level 1 comes first


def test_spp_length_is_fixed_for_any_box():
    fmap = torch.randn(1, 6, 14, 14)
    boxes = torch.tensor([[0.0, 0, 16, 16], [10, 20, 400, 90], [0, 0, 447, 447], [100, 100, 101, 300]])
    out = spp_pool(fmap, as_rois([boxes]), 1 / 32)
    assert out.shape == (4, 6 * 21)
    assert roi_max_pool(fmap, as_rois([boxes]), 1 / 32).shape == (4, 6, 7, 7)


def test_roi_mean_of_the_whole_map_is_the_mean_of_a_ramp():
    ramp = torch.arange(8.0).expand(1, 3, 6, 8).contiguous()
    out = roi_mean(ramp, as_rois([torch.tensor([[0.0, 0.0, 8.0, 6.0]])]), 1.0)
    assert torch.allclose(out, ramp.mean((2, 3)), atol=1e-5)


@pytest.mark.parametrize("layer", ["blocks.3", "blocks.5"])
def test_spatial_scale_follows_the_layer_stride(lite0, layer):
    rep = Representation(lite0, layer)
    image = torch.rand(3, 64, 96)
    fmap, scale = trunk_map(rep, image, None)
    assert scale == 1 / rep.stride and rep.stride == {"blocks.3": 16, "blocks.5": 32}[layer]
    assert fmap.shape[2:] == (math.ceil(64 / rep.stride), math.ceil(96 / rep.stride))
    _, scale2 = trunk_map(rep, image, 128)  # shorter side 64 -> 128: the image doubled
    assert scale2 == pytest.approx(2 / rep.stride)


def test_grid_proposals_inside_the_image_capped_and_deterministic():
    a = grid_proposals(120, 200, limit=80)
    assert 0 < len(a) <= 80 and torch.equal(a, grid_proposals(120, 200, limit=80))
    assert (a[:, 0] >= 0).all() and (a[:, 1] >= 0).all() and (a[:, 2] <= 200).all() and (a[:, 3] <= 120).all()
    assert ((a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])).all()


def test_selective_search_is_reproducible_and_finds_pasted_objects():
    scene = ddata.make_scene(5, size=128)
    a = selective_search(scene.image, mode="fast", limit=300)
    assert torch.equal(a, selective_search(scene.image, mode="fast", limit=300)) and len(a) <= 300
    assert (a[:, 2] <= 128).all() and (a[:, 3] <= 128).all()
    assert (box_iou(scene.boxes, a).max(1).values >= 0.7).all()


def test_bad_images_and_methods_give_one_line_errors():
    with pytest.raises(ShapeError, match="empty"):
        propose(torch.zeros(3, 0, 5))
    with pytest.raises(ShapeError, match=r"\(3, H, W\)"):
        propose(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ProposalError, match="unknown proposal method"):
        propose(torch.zeros(3, 8, 8), "edgeboxes")


def test_synthetic_scenes_are_deterministic_per_seed():
    a, b, c = ddata.make_scene(7, 96), ddata.make_scene(7, 96), ddata.make_scene(8, 96)
    assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.image, c.image)
    names = {s.name for split in ddata.SPLITS for s in ddata.synthetic(split, n=3, size=64).scenes}
    assert len(names) == 9  # disjoint splits


@pytest.mark.parametrize("seed", [1, 2, 3, 11])
def test_synthetic_boxes_are_exactly_the_pasted_pixels(seed):
    scene = ddata.make_scene(seed, 128)
    background = ddata._background(128, np.random.default_rng(seed))  # the scene's first random draws
    changed = (scene.image - background).abs().amax(0) > 0
    inside = torch.zeros_like(changed)
    for x1, y1, x2, y2 in scene.boxes.int().tolist():
        inside[y1:y2, x1:x2] = True
        assert changed[y1:y2, x1:x2].float().mean() > 0.9  # the object covers its box
        assert changed[y1:y2, [x1, x2 - 1]].any(0).all() and changed[[y1, y2 - 1], x1:x2].any(1).all()
    assert not (changed & ~inside).any()  # nothing pasted outside the boxes
    assert 1 <= len(scene.boxes) <= 4 and set(scene.labels.tolist()) <= set(range(len(ddata.OBJECTS)))


def test_voc_round_trip_and_errors(tmp_path):
    data = ddata.synthetic("val", n=3, size=64)
    ddata.write_voc(data, tmp_path / "voc", "val")
    back = ddata.load_voc(tmp_path / "voc", "val", classes=data.classes)
    for s, t in zip(data.scenes, back.scenes):
        assert torch.equal(s.boxes, t.boxes) and torch.equal(s.labels, t.labels)
        assert (s.image - t.image).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ddata.DataError, match="ImageSets/Main/test.txt"):
        ddata.load_voc(tmp_path / "voc", "test")
    (tmp_path / "voc" / "Annotations" / f"{data.scenes[1].name}.xml").unlink()
    with pytest.raises(ddata.DataError, match="annotation .* is missing"):
        ddata.load_voc(tmp_path / "voc", "val")
    (tmp_path / "voc" / "Annotations" / f"{data.scenes[1].name}.xml").write_text(
        '<!DOCTYPE a [<!ENTITY x "y">]><annotation>&x;</annotation>')
    with pytest.raises(ddata.DataError, match="DOCTYPE/ENTITY"):
        ddata.load_voc(tmp_path / "voc", "val")


def test_fast_rcnn_loss_hand_case_and_gradients():
    head = FastRCNNHead(channels=4, num_classes=3, pool="spp", hidden=8)
    logits = torch.zeros(2, 4, requires_grad=True)
    deltas = torch.zeros(2, 3, 4, requires_grad=True)
    labels = torch.tensor([2, 0])
    targets = torch.tensor([[0.5, -2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    ce, box = fast_rcnn_loss(logits, deltas, labels, targets)
    assert ce.item() == pytest.approx(math.log(4))
    assert box.item() == pytest.approx((0.5 * 0.25 + (2.0 - 0.5)) / 2)  # background rows have no box loss
    (ce + box).backward()
    assert deltas.grad[1].abs().sum() == 0 and deltas.grad[0, 1].abs().sum() > 0
    out_logits, out_deltas = head(torch.randn(1, 4, 5, 5), as_rois([torch.tensor([[0.0, 0, 50, 50]])]), 1 / 10)
    assert out_logits.shape == (1, 4) and out_deltas.shape == (1, 3, 4)


def test_sampler_fractions_and_iou_ranges():
    gt_boxes = torch.tensor([[10.0, 10, 50, 50]])
    proposals = torch.cat([grid_proposals(100, 100, limit=400), gt_boxes])
    g = torch.Generator().manual_seed(0)
    boxes, labels, targets = sample_regions(proposals, gt_boxes, torch.tensor([2]), 64, 0.25, g)
    iou = box_iou(boxes, gt_boxes)[:, 0]
    fg = labels > 0
    assert len(boxes) == 64 and 1 <= fg.sum() <= 16
    assert (labels[fg] == 3).all() and (iou[fg] >= 0.5).all()
    assert (iou[~fg] < 0.5).all() and (iou[~fg] >= 0.1).sum() >= min(48, int(((iou < 0.5) & (iou >= 0.1)).sum()))
    assert targets[~fg].abs().sum() == 0
