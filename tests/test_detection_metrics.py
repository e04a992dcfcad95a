"""VOC07 AP, mAP and CorLoc on hand-computed cases; IoU and box regression round trips."""

from __future__ import annotations

import math

import pytest
import torch

from repscope.detection.boxes import box_iou, check_boxes, decode, encode
from repscope.detection.metrics import Detections, average_precision, corloc, evaluate, precision_recall
from repscope.errors import ShapeError

A, B = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]


def dets(boxes, scores, labels):
    return Detections(torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels))


def gt(boxes, labels):
    return [torch.tensor(boxes).reshape(-1, 4)], [torch.tensor(labels, dtype=torch.int64)]


def test_duplicate_is_a_false_positive_and_both_ap_forms():
    # A exact (TP), A again (duplicate: FP), B exact (TP): precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    d = [dets([A, A, B], [0.9, 0.8, 0.7], [0, 0, 0])]
    boxes, labels = gt([A, B], [0, 0])
    p, r, n = precision_recall(d, boxes, labels, 0)
    assert n == 2
    assert p.tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert r.tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert average_precision(p, r, "11point") == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert average_precision(p, r, "all") == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_ties_keep_input_order():
    boxes, labels = gt([A], [0])
    fp_first = [dets([B, A], [0.5, 0.5], [0, 0])]
    tp_first = [dets([A, B], [0.5, 0.5], [0, 0])]
    assert evaluate(fp_first, boxes, labels, 1)["ap_all"][0] == pytest.approx(0.5)
    assert evaluate(tp_first, boxes, labels, 1)["ap_all"][0] == pytest.approx(1.0)
    assert evaluate(fp_first, boxes, labels, 1)["ap"][0] == pytest.approx(0.5)


def test_no_detections_and_a_class_without_ground_truth():
    boxes, labels = gt([A], [0])
    none = [dets([], [], [])]
    result = evaluate(none, boxes, labels, 2)
    assert result["ap"][0] == 0.0 and result["ap_all"][0] == 0.0
    assert math.isnan(result["ap"][1])
    # class 1 has detections but no ground truth: no AP, left out of the mean
    some = [dets([A, B], [0.9, 0.9], [0, 1])]
    result = evaluate(some, boxes, labels, 2)
    assert result["ap"][0] == 1.0 and math.isnan(result["ap"][1]) and result["map"] == 1.0


def test_iou_threshold_is_inclusive_at_one_half():
    boxes, labels = gt([[0.0, 0.0, 10.0, 10.0]], [0])
    half = [dets([[0.0, 0.0, 10.0, 20.0]], [1.0], [0])]  # IoU exactly 100 / 200
    assert evaluate(half, boxes, labels, 1)["ap"][0] == 1.0


def test_corloc_counts_the_top_box_per_image():
    gt_boxes = [torch.tensor([A]), torch.tensor([A]), torch.tensor([B])]
    gt_labels = [torch.tensor([0]), torch.tensor([0]), torch.tensor([1])]
    d = [dets([A, B], [0.9, 0.1], [0, 0]),      # top box right
         dets([B, A], [0.9, 0.8], [0, 0]),      # top box wrong (the right one is second)
         dets([A], [0.3], [0])]                 # class 1 present, never detected
    result = corloc(d, gt_boxes, gt_labels, 3)
    assert result["corloc"][0] == 0.5 and result["corloc"][1] == 0.0 and math.isnan(result["corloc"][2])
    assert result["mean"] == 0.25


def test_iou_hand_case():
    assert box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]])).item() == pytest.approx(1 / 7)


def test_encode_decode_round_trip_and_hand_case():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    p = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 80], 1)
    xy = torch.rand(50, 2, generator=g) * 100
    t = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 80], 1)
    assert torch.allclose(decode(p, encode(p, t)), t, atol=1e-4)
    assert torch.allclose(encode(p, p), torch.zeros(50, 4), atol=1e-6)
    out = decode(torch.tensor([[0.0, 0, 10, 20]]), torch.tensor([[0.1, -0.1, math.log(2), 0.0]]))
    assert out.tolist()[0] == pytest.approx([-4.0, -2.0, 16.0, 18.0])


def test_check_boxes_errors_are_one_line():
    with pytest.raises(ShapeError, match="outside the 100x50 image"):
        check_boxes(torch.tensor([[0.0, 0, 120, 20]]), 50, 100)
    with pytest.raises(ShapeError, match="x2 > x1"):
        check_boxes(torch.tensor([[10.0, 0, 5, 20]]), 50, 100)
    assert check_boxes(torch.zeros(0, 4), 5, 5).shape == (0, 4)
