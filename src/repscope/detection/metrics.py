"""Detection metrics of PASCAL VOC 2007: average precision (11-point and all-point), mAP@0.5, CorLoc.

For one class, detections from every image are sorted by score (descending; ties keep their input
order, a stable sort as MATLAB's ``sort`` in the VOC devkit). A detection is a true positive when
its IoU with a not-yet-matched ground-truth box of the class in its image is ≥ 0.5 (the best-IoU box is
the one considered, as the devkit); a second detection of an already matched box is a false positive.
With ``tp_k``, ``fp_k`` the cumulative counts and ``n`` ground-truth boxes,
``recall_k = tp_k / n`` and ``precision_k = tp_k / (tp_k + fp_k)``:

.. math::
    AP_{11} = \\frac{1}{11}\\sum_{t \\in \\{0, 0.1, \\dots, 1\\}} \\max_{k: r_k \\ge t} p_k, \\qquad
    AP_{all} = \\sum_k (r_k - r_{k-1}) \\, \\hat p_k, \\quad \\hat p_k = \\max_{j \\ge k} p_j

(the max over an empty set is 0). A class without ground truth has no AP (NaN) and is left out of the
mean. CorLoc (Deselaers et al.; Bilen & Vedaldi): over the images that contain class ``c``, the
fraction whose single top-scoring box of class ``c`` has IoU ≥ 0.5 with a box of ``c``; averaged over
classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass
class Detections:
    """Detections of one image: ``boxes (M, 4)`` pixels, ``scores (M,)``, ``labels (M,)`` class indices."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def as_dict(self, class_names: Sequence[str] | None = None) -> list[dict]:
        rows = []
        for b, s, c in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            row = {"box": [round(v, 2) for v in b], "score": round(s, 5), "label": int(c)}
            if class_names is not None:
                row["class"] = class_names[int(c)]
            rows.append(row)
        return rows


def precision_recall(detections: Sequence[Detections], gt_boxes: Sequence[torch.Tensor],
                     gt_labels: Sequence[torch.Tensor], cls: int, iou: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative ``precision``, ``recall`` (one entry per detection of ``cls``, by score) and the GT count."""
    n_gt = int(sum(int((lab == cls).sum()) for lab in gt_labels))
    entries = []  # (score, image index, detection index); stable order for ties
    for i, det in enumerate(detections):
        for j in torch.nonzero(det.labels == cls).flatten().tolist():
            entries.append((-float(det.scores[j]), i, j))
    order = sorted(range(len(entries)), key=lambda k: entries[k][0])  # Python's sort is stable
    matched = [torch.zeros(int((lab == cls).sum()), dtype=torch.bool) for lab in gt_labels]
    tp = np.zeros(len(order))
    for rank, k in enumerate(order):
        _, i, j = entries[k]
        gts = gt_boxes[i][gt_labels[i] == cls]
        if len(gts) == 0:
            continue
        overlaps = box_iou(detections[i].boxes[j:j + 1].float(), gts.float())[0]
        best = int(torch.argmax(overlaps))
        if overlaps[best] >= iou and not matched[i][best]:
            matched[i][best] = True
            tp[rank] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(float).eps)
    recall = ctp / n_gt if n_gt else np.full(len(order), math.nan)
    return precision, recall, n_gt


def average_precision(precision: np.ndarray, recall: np.ndarray, mode: str = "11point") -> float:
    """VOC AP from cumulative ``precision``/``recall`` arrays: ``"11point"`` (VOC07) or ``"all"``."""
    if len(recall) and np.isnan(recall).any():
        return math.nan
    if mode == "11point":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.arange(0.0, 1.1, 0.1)]))
    if mode != "all":
        raise ValueError(f"unknown AP mode {mode!r}; use '11point' or 'all'")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def evaluate(detections: Sequence[Detections], gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor],
             num_classes: int, iou: float = 0.5) -> dict:
    """Per-class AP (11-point and all-point), their means over classes with ground truth, and curves."""
    ap11, apall, curves = [], [], []
    for c in range(num_classes):
        p, r, n_gt = precision_recall(detections, gt_boxes, gt_labels, c, iou)
        if n_gt == 0:
            ap11.append(math.nan)
            apall.append(math.nan)
            curves.append(None)
            continue
        ap11.append(average_precision(p, r, "11point"))
        apall.append(average_precision(p, r, "all"))
        curves.append((p.tolist(), r.tolist()))
    return {"ap": ap11, "ap_all": apall, "map": _nanmean(ap11), "map_all": _nanmean(apall), "curves": curves}


def corloc(detections: Sequence[Detections], gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor],
           num_classes: int, iou: float = 0.5) -> dict:
    """CorLoc per class (NaN for a class in no image) and its mean over the classes present."""
    per_class = []
    for c in range(num_classes):
        hits = total = 0
        for det, boxes, labels in zip(detections, gt_boxes, gt_labels):
            gts = boxes[labels == c]
            if len(gts) == 0:
                continue
            total += 1
            mine = torch.nonzero(det.labels == c).flatten()
            if len(mine) == 0:
                continue
            top = mine[torch.argmax(det.scores[mine])]
            hits += int(box_iou(det.boxes[top:top + 1].float(), gts.float()).max() >= iou)
        per_class.append(hits / total if total else math.nan)
    return {"corloc": per_class, "mean": _nanmean(per_class)}


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan
