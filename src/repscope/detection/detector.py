"""A detector: proposals → region scores (a trained head or the ImageNet classifier) → boxes → NMS.

Methods: ``fast-rcnn`` (RoI 7x7 head), ``spp`` ({1, 2, 4} head) and ``wsddn`` (two-stream, weakly
supervised) run the trunk once per image;
``rcnn`` runs it on every warped proposal; ``imagenet-spp`` / ``imagenet-rcnn`` score regions with the
network's own ImageNet classifier (no training). Per class, boxes are moved by the class's regression
deltas (when the head has them and ``box_regression`` is on), clipped, NMS'd at IoU 0.3
(``torchvision.ops.batched_nms``) and the ``max_per_image`` best kept.

A trained detector is a folder: ``head.safetensors`` (tensors only, no pickle) and ``config.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import io
from ..errors import RepscopeError
from ..layers import Representation
from ..models import Model, imagenet_class_names
from ..progress import progress
from . import rcnn
from .boxes import batched_nms, check_boxes, clip_boxes_to_image, decode
from .data import Dataset
from .heads import BOX_STD, FastRCNNHead, LinearClassifiers
from .metrics import Detections, corloc, evaluate
from .proposals import ProposalError, propose
from .roi import as_rois, trunk_map

METHODS = ("fast-rcnn", "spp", "rcnn", "wsddn", "imagenet-spp", "imagenet-rcnn")
HEAD_FILE, CONFIG_FILE = "head.safetensors", "config.json"


class HeadError(RepscopeError):
    """A detector folder is missing, incomplete or does not fit the model."""


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector (written as ``config.json``)."""

    method: str
    model: str
    layer: str
    classes: list[str]
    trunk_size: int | list[int] | None = 448
    proposals: str = "grid"
    limit: int = 300
    pool: str = "roi"
    head: dict = field(default_factory=dict)
    box_regression: bool = True
    nms: float = 0.3
    max_per_image: int = 100
    min_side: float = 0.0


class Detector:
    """``detect(image01 (3, H, W)) -> Detections``; ``head`` is None for the ImageNet methods."""

    def __init__(self, model: Model, config: DetectorConfig, head: torch.nn.Module | None = None):
        if config.method not in METHODS:
            raise HeadError(f"unknown detection method '{config.method}'. Use one of {', '.join(METHODS)}.")
        self.model, self.config, self.head = model, config, head
        self.representation = Representation(model, config.layer)
        if head is not None:
            head.eval()

    def region_scores(self, image01: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores ``(R, K)`` and deltas ``(R, K, 4)`` (or None) for ``boxes (R, 4)`` of one image."""
        c = self.config
        if c.method in ("fast-rcnn", "spp", "wsddn"):
            fmap, scale = trunk_map(self.representation, image01, c.trunk_size)
            with torch.no_grad():
                out, deltas = self.head(fmap, as_rois([boxes]), scale)
            return (out if c.method == "wsddn" else out.softmax(1)[:, 1:]), deltas
        if c.method == "rcnn":
            feats = rcnn.rcnn_features(self.representation, image01, boxes, c.pool)
            with torch.no_grad():
                scores, deltas = self.head(feats)
            return scores, deltas
        probs = (rcnn.imagenet_scores_spp(self.model, image01, boxes, c.trunk_size) if c.method == "imagenet-spp"
                 else rcnn.imagenet_scores_rcnn(self.model, image01, boxes))
        return (probs if len(c.classes) == probs.shape[1] else rcnn.group_scores(probs, c.classes)), None

    def detect(self, image01: torch.Tensor, boxes: torch.Tensor | None = None,
               box_regression: bool | None = None) -> Detections:
        """Detections of one image ``(3, H, W)`` in [0, 1]; ``boxes`` overrides the proposals."""
        h, w = image01.shape[1:]
        if boxes is None:
            boxes = propose(image01, self.config.proposals, self.config.limit)
        boxes = check_boxes(boxes, h, w, "proposals")
        if self.config.min_side > 0:
            boxes = boxes[torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.config.min_side]
        if len(boxes) == 0:
            raise ProposalError("no proposals to score. Give at least one box, or use --proposal-method grid.")
        scores, deltas = self.region_scores(image01, boxes)
        use = self.config.box_regression if box_regression is None else box_regression
        return postprocess(boxes, scores, deltas if use else None, h, w, self.config.nms, self.config.max_per_image)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``head.safetensors`` (if any) and ``config.json`` into ``folder``."""
        from safetensors.torch import save_file
        folder = Path(folder)
        if self.head is not None:
            state = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
            with io.atomic_path(folder / HEAD_FILE) as tmp:
                save_file(state, str(tmp))
        io.write_json(folder / CONFIG_FILE, asdict(self.config))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, model: Model | None = None) -> "Detector":
        """The detector saved in ``folder`` (tensors read with safetensors: no code runs)."""
        from safetensors.torch import load_file
        from ..models import load
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise HeadError(f"'{folder}' has no {CONFIG_FILE}. Give the --out folder of 'repscope detect train'.")
        config = DetectorConfig(**json.loads((folder / CONFIG_FILE).read_text()))
        model = model or load(config.model)
        head = build_head(config)
        if head is not None:
            if not (folder / HEAD_FILE).is_file():
                raise HeadError(f"'{folder}' has no {HEAD_FILE}. Train again with 'repscope detect train'.")
            try:
                head.load_state_dict(load_file(str(folder / HEAD_FILE)))
            except (RuntimeError, OSError) as err:
                raise HeadError(f"'{folder / HEAD_FILE}' does not fit its config ({str(err).splitlines()[0]}). "
                                "Train again.") from None
        return cls(model, config, head)


def head_classes(folder: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names a saved detector was trained on (None if ``folder`` has no config)."""
    path = Path(folder) / CONFIG_FILE
    return tuple(json.loads(path.read_text())["classes"]) if path.is_file() else None


def build_head(config: DetectorConfig) -> torch.nn.Module | None:
    """An untrained head of the shape ``config.head`` describes (None for the ImageNet methods)."""
    if config.method in ("fast-rcnn", "spp"):
        return FastRCNNHead(**config.head)
    if config.method == "rcnn":
        return LinearClassifiers(**config.head)
    if config.method == "wsddn":
        from .wsddn import WSDDNHead
        return WSDDNHead(**config.head)
    return None


def imagenet_detector(model: Model, classes: list[str] | None = None, method: str = "imagenet-spp",
                      trunk_size: int | list[int] | None = (224, 336, 448, 672), proposals: str = "ss-fast",
                      limit: int = 200, min_side: float = 32.0) -> Detector:
    """Zero-training detector scoring regions with the model's ImageNet classifier (all 1000 classes by default).

    Proposals with a side under ``min_side`` pixels are dropped: the classifier cannot name a few pixels.
    """
    layer, _ = rcnn.classifier_split(model)
    names = classes or list(model.class_names or imagenet_class_names())
    config = DetectorConfig(method=method, model=model.name, layer=layer, classes=names, trunk_size=trunk_size,
                            proposals=proposals, limit=limit, box_regression=False, min_side=min_side)
    return Detector(model, config)


def postprocess(proposals: torch.Tensor, scores: torch.Tensor, deltas: torch.Tensor | None, height: int, width: int,
                nms: float = 0.3, max_per_image: int = 100) -> Detections:
    """Per-class boxes (regressed if ``deltas``), clipped, NMS'd per class, best ``max_per_image`` kept.

    With many classes (> 50, e.g. ImageNet) each region keeps only its best class.
    """
    r, k = scores.shape
    if deltas is not None:
        std = torch.tensor(BOX_STD, dtype=deltas.dtype)
        boxes = decode(proposals.repeat_interleave(k, 0), (deltas * std).reshape(-1, 4)).view(r, k, 4)
    else:
        boxes = proposals[:, None, :].expand(r, k, 4)
    labels = torch.arange(k).expand(r, k)
    if k > 50:
        best = scores.argmax(1)
        idx = torch.arange(r)
        boxes, scores, labels = boxes[idx, best][:, None], scores[idx, best][:, None], best[:, None]
    boxes = clip_boxes_to_image(boxes.reshape(-1, 4), (height, width))
    scores, labels = scores.reshape(-1), labels.reshape(-1)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    keep = batched_nms(boxes, scores, labels, nms)[:max_per_image]
    return Detections(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])


def evaluate_detector(detector: Detector, dataset: Dataset, *, box_regression: bool | None = None,
                      quiet: bool = True) -> dict:
    """mAP (11-point and all-point), per-class AP, CorLoc and seconds per image of ``detector`` on ``dataset``."""
    dets, start = [], time.perf_counter()
    for scene in progress(dataset.scenes, desc="detect", quiet=quiet):
        dets.append(detector.detect(scene.image, box_regression=box_regression))
    seconds = (time.perf_counter() - start) / max(len(dataset), 1)
    gt_boxes, gt_labels = _without_difficult(dataset)
    k = len(dataset.classes)
    result = evaluate(dets, gt_boxes, gt_labels, k)
    result["corloc"] = corloc(dets, gt_boxes, gt_labels, k)
    result["seconds_per_image"] = seconds
    result["classes"] = list(dataset.classes)
    return result


def _without_difficult(dataset: Dataset) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    boxes, labels = [], []
    for s in dataset.scenes:
        keep = ~s.difficult if s.difficult is not None else torch.ones(len(s.labels), dtype=torch.bool)
        boxes.append(s.boxes[keep])
        labels.append(s.labels[keep])
    return boxes, labels
