"""WSDDN (two-stream weakly supervised detection): the streams, the image score, the regulariser, no boxes."""

from __future__ import annotations

import pytest
import torch

from repscope.detection import data as ddata
from repscope.detection.wsddn import WSDDNHead, image_loss, spatial_regulariser, train_wsddn


def test_image_score_is_the_sum_of_region_scores_in_0_1():
    head = WSDDNHead(channels=4, num_classes=3, pool="spp", hidden=16).eval()
    pooled = torch.randn(7, head.pool.out_features(4)) * 5
    region, image, h = head.scores(pooled)
    assert region.shape == (7, 3) and h.shape == (7, 16)
    assert torch.allclose(image, region.sum(0)) and ((image > 0) & (image < 1)).all()
    cls, det = head.streams_of(h)
    assert torch.allclose(det.sum(0), torch.ones(3))     # detection: softmax over regions, per class
    assert torch.allclose(cls.sum(1), torch.ones(7))     # classification: softmax over classes, per region
    assert torch.allclose(region, cls * det)


def test_temperature_divides_the_detection_logits():
    head = WSDDNHead(channels=2, num_classes=2, pool="spp", hidden=4, temperature=2.0).eval()
    h = torch.randn(5, 4)
    _, det = head.streams_of(h)
    assert torch.allclose(det, (head.det(h) / 2).softmax(0))


def test_single_stream_pools_the_classification_stream():
    for pool in ("sum", "max"):
        head = WSDDNHead(channels=2, num_classes=3, pool="spp", hidden=8, streams=1, single_pool=pool).eval()
        pooled = torch.randn(6, head.pool.out_features(2))
        region, image, h = head.scores(pooled)
        cls = head.cls(h).softmax(1)
        assert torch.allclose(region, cls)
        assert torch.allclose(image, cls.mean(0) if pool == "sum" else cls.max(0).values)


def test_gradients_reach_both_streams():
    head = WSDDNHead(channels=4, num_classes=3, pool="spp", hidden=16)
    _, image, _ = head.scores(torch.randn(9, head.pool.out_features(4)))
    image_loss(image, torch.tensor([1.0, 0.0, 1.0])).backward()
    assert head.cls.weight.grad.abs().sum() > 0 and head.det.weight.grad.abs().sum() > 0
    assert head.fc6.weight.grad.abs().sum() > 0


def test_spatial_regulariser_hand_case():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 11], [50.0, 50, 60, 60]])  # IoU(0, 1) = 10/11 > 0.6
    region = torch.tensor([[0.7, 0.0], [0.2, 0.0], [0.1, 1.0]])
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    value = spatial_regulariser(region, h, boxes, torch.tensor([1.0, 0.0]))
    assert value.item() == pytest.approx(0.5 * 0.7 * (1.0 + 4.0))


class _Forbidden:
    """Stands for boxes that training must never read: any use raises."""

    def __getattr__(self, name):
        raise AssertionError(f"training read the boxes ({name})")

    def __len__(self):
        raise AssertionError("training read the boxes (len)")

    def __iter__(self):
        raise AssertionError("training read the boxes (iter)")

    def __getitem__(self, item):
        raise AssertionError("training read the boxes (index)")


def test_training_never_reads_boxes(lite0):
    data = ddata.synthetic("train", n=3, size=96)
    blind = ddata.Dataset(data.classes, [ddata.Scene(s.image, _Forbidden(), s.labels, s.name) for s in data.scenes])
    det, losses = train_wsddn(lite0, "blocks.6", blind, trunk_size=192, proposals="grid", limit=20, iters=30,
                              spatial=True)
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    found = det.detect(data[0].image)
    assert found.boxes.shape[1] == 4 and len(found.scores) > 0
