"""Training the detection heads on a frozen trunk.

Fast R-CNN / SPP (Girshick 2015): the trunk map of every training image is computed once and cached
(the trunk is frozen), then each step samples 2 images × 64 regions, 25% foreground (IoU ≥ 0.5 with a
ground-truth box, label = its class) and the rest background (IoU in [0.1, 0.5), label 0; regions of
IoU < 0.1 fill in when there are too few), the ground-truth boxes joining the proposals as in the
paper, and minimises the head's cross-entropy + smooth-L1 loss with Adam.

R-CNN (Girshick et al. 2014): features of the ground-truth boxes (positives) and of proposals with
IoU < 0.3 (negatives) train one linear SVM per class (squared hinge, L2, full-batch L-BFGS); proposals
with IoU ≥ 0.6 fit the class's ridge box regressor (λ = 1000 on the normalised features, as the paper).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from ..layers import Representation
from ..models import Model
from ..progress import progress
from . import rcnn
from .boxes import box_iou, encode
from .data import Dataset
from .detector import Detector, DetectorConfig
from .heads import BOX_STD, FastRCNNHead, LinearClassifiers, fast_rcnn_loss
from .proposals import propose
from .roi import as_rois, trunk_map


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch's global generator (head initialisation, dropout) inside a fork: the caller's state is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class CachedImage:
    """One training image: the trunk map ``(1, C, h, w)``, its spatial scale, proposals and ground truth."""

    fmap: torch.Tensor
    scale: float
    proposals: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor


def cache_trunk(representation: Representation, dataset: Dataset, trunk_size: int | None, proposals: str,
                limit: int, quiet: bool = True) -> list[CachedImage]:
    """Run the frozen trunk once per image of ``dataset`` and keep maps, proposals and ground truth."""
    out = []
    for scene in progress(dataset.scenes, desc="trunk features", quiet=quiet):
        fmap, scale = trunk_map(representation, scene.image, trunk_size)
        boxes = propose(scene.image, proposals, limit)
        out.append(CachedImage(fmap, scale, torch.cat([boxes, scene.boxes]), scene.boxes, scene.labels))
    return out


def sample_regions(proposals: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, n: int,
                   fg_fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` regions ``(n, 4)``, labels ``(n,)`` (0 = background) and targets ``(n, 4)`` in BOX_STD units."""
    if len(boxes):
        iou = box_iou(proposals, boxes)
        best, match = iou.max(1)
    else:
        best, match = torch.zeros(len(proposals)), torch.zeros(len(proposals), dtype=torch.long)
    fg = torch.nonzero(best >= 0.5).flatten()
    bg = torch.nonzero((best < 0.5) & (best >= 0.1)).flatten()
    low = torch.nonzero(best < 0.1).flatten()
    n_fg = min(len(fg), int(round(fg_fraction * n)))
    fg = fg[torch.randperm(len(fg), generator=generator)[:n_fg]]
    bg = bg[torch.randperm(len(bg), generator=generator)[:n - n_fg]]
    if len(bg) < n - n_fg:
        bg = torch.cat([bg, low[torch.randperm(len(low), generator=generator)[:n - n_fg - len(bg)]]])
    keep = torch.cat([fg, bg])
    region_labels = torch.zeros(len(keep), dtype=torch.long)
    targets = torch.zeros(len(keep), 4)
    if len(fg):
        region_labels[:len(fg)] = labels[match[fg]] + 1
        targets[:len(fg)] = encode(proposals[fg], boxes[match[fg]]) / torch.tensor(BOX_STD)
    return proposals[keep], region_labels, targets


def train_fast_rcnn(model: Model, layer: str, train: Dataset, *, pool: str = "roi", trunk_size: int | None = 448,
                    proposals: str = "ss-fast", limit: int = 200, iters: int = 600, lr: float = 1e-3,
                    hidden: int = 256, images_per_batch: int = 2, rois_per_image: int = 64, fg_fraction: float = 0.25,
                    seed: int = 0, quiet: bool = True, cache: list[CachedImage] | None = None
                    ) -> tuple[Detector, list[float]]:
    """A Fast R-CNN (``pool="roi"``) or SPP (``pool="spp"``) head trained on ``train``; returns it and the losses."""
    with seeded(seed):
        return _train_fast_rcnn(model, layer, train, pool, trunk_size, proposals, limit, iters, lr, hidden,
                                images_per_batch, rois_per_image, fg_fraction, seed, quiet, cache)


def _train_fast_rcnn(model, layer, train, pool, trunk_size, proposals, limit, iters, lr, hidden, images_per_batch,
                     rois_per_image, fg_fraction, seed, quiet, cache):
    generator = torch.Generator().manual_seed(seed)
    representation = Representation(model, layer)
    cache = cache or cache_trunk(representation, train, trunk_size, proposals, limit, quiet)
    head = FastRCNNHead(cache[0].fmap.shape[1], len(train.classes), pool=pool, hidden=hidden)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-5)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iters)
    losses = []
    head.train()
    for _ in progress(range(iters), desc=f"train {pool}", quiet=quiet):
        picked = torch.randperm(len(cache), generator=generator)[:images_per_batch].tolist()
        fmaps, rois, labels, targets = [], [], [], []
        for slot, i in enumerate(picked):
            item = cache[i]
            boxes, lab, tgt = sample_regions(item.proposals, item.boxes, item.labels, rois_per_image, fg_fraction,
                                             generator)
            pooled = head.pool(item.fmap, as_rois([boxes]), item.scale)
            fmaps.append(pooled)
            labels.append(lab)
            targets.append(tgt)
        logits, deltas = head.forward_pooled(torch.cat(fmaps))
        ce, box = fast_rcnn_loss(logits, deltas, torch.cat(labels), torch.cat(targets))
        optimiser.zero_grad()
        (ce + box).backward()
        optimiser.step()
        schedule.step()
        losses.append(float((ce + box).detach()))
    head.eval()
    config = DetectorConfig(method="fast-rcnn" if pool == "roi" else "spp", model=model.name, layer=layer,
                            classes=list(train.classes), trunk_size=trunk_size, proposals=proposals, limit=limit,
                            pool=pool, head=head.config())
    return Detector(model, config, head), losses


def _rcnn_samples(representation: Representation, train: Dataset, proposals: str, limit: int, pool: str,
                  negatives: int, regress: int, generator: torch.Generator, quiet: bool):
    feats, labels, reg_feats, reg_labels, reg_targets = [], [], [], [], []
    for scene in progress(train.scenes, desc="R-CNN training regions", quiet=quiet):
        props = propose(scene.image, proposals, limit)
        iou = box_iou(props, scene.boxes) if len(scene.boxes) else torch.zeros(len(props), 1)
        best, match = iou.max(1)
        neg = torch.nonzero(best < 0.3).flatten()
        neg = neg[torch.randperm(len(neg), generator=generator)[:negatives]]
        pos = torch.nonzero(best >= 0.6).flatten()
        pos = pos[torch.randperm(len(pos), generator=generator)[:regress]]
        boxes = torch.cat([scene.boxes, props[neg], props[pos]])
        f = rcnn.rcnn_features(representation, scene.image, boxes, pool)
        g, p = len(scene.boxes), len(neg)
        feats.append(f[:g + p])
        labels.append(torch.cat([scene.labels, torch.full((p,), -1)]))
        reg_feats.append(f[g + p:])
        reg_labels.append(scene.labels[match[pos]])
        reg_targets.append(encode(props[pos], scene.boxes[match[pos]]) / torch.tensor(BOX_STD))
    return (torch.cat(feats), torch.cat(labels), torch.cat(reg_feats), torch.cat(reg_labels),
            torch.cat(reg_targets))


def train_rcnn(model: Model, layer: str, train: Dataset, *, pool: str = "roi", proposals: str = "ss-fast",
               limit: int = 200, negatives: int = 16, regress: int = 8, svm_c: float = 1e-3, ridge: float = 1000.0,
               seed: int = 0, quiet: bool = True) -> Detector:
    """R-CNN: per-class linear SVMs and ridge box regressors on warped-region features of ``train``."""
    generator = torch.Generator().manual_seed(seed)
    representation = Representation(model, layer)
    x, y, rx, ry, rt = _rcnn_samples(representation, train, proposals, limit, pool, negatives, regress, generator,
                                     quiet)
    k = len(train.classes)
    head = LinearClassifiers(x.shape[1], k)
    head.mean.copy_(x.mean(0))
    head.scale.copy_((x - head.mean).norm(dim=1).mean() / 20.0)  # R-CNN scales features to mean norm 20
    z = head.normalise(x)
    signs = torch.where(y[:, None] == torch.arange(k)[None], 1.0, -1.0)
    optimiser = torch.optim.LBFGS(head.score.parameters(), lr=1, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        margin = (1 - signs * head.score(z)).clamp(min=0)
        loss = (margin ** 2).mean(0).sum() + svm_c * head.score.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    rz = torch.cat([head.normalise(rx), torch.ones(len(rx), 1)], 1)
    for c in range(k):
        mine = ry == c
        if mine.sum() == 0:
            continue
        a, t = rz[mine].double(), rt[mine].double()
        gram = a @ a.T + ridge * torch.eye(len(a), dtype=torch.float64)  # dual form: D ≫ samples
        head.box[c] = (a.T @ torch.linalg.solve(gram, t)).float()
    config = DetectorConfig(method="rcnn", model=model.name, layer=layer, classes=list(train.classes),
                            trunk_size=None, proposals=proposals, limit=limit, pool=pool, head=head.config())
    return Detector(model, config, head)


def train_detector(method: str, model: Model, layer: str, train: Dataset, **options) -> Detector:
    """Dispatch: ``fast-rcnn`` / ``spp`` (:func:`train_fast_rcnn`), ``rcnn`` (:func:`train_rcnn`), ``wsddn``."""
    if method in ("fast-rcnn", "spp"):
        options = {k: v for k, v in options.items() if k not in ("streams", "spatial")}
        return train_fast_rcnn(model, layer, train, pool="roi" if method == "fast-rcnn" else "spp", **options)[0]
    if method == "rcnn":
        options = {k: v for k, v in options.items() if k in ("pool", "proposals", "limit", "seed", "quiet")}
        return train_rcnn(model, layer, train, **options)
    if method == "wsddn":
        from .wsddn import train_wsddn
        return train_wsddn(model, layer, train, **options)[0]
    raise ValueError(f"unknown method {method!r}")
