"""Weakly supervised detection: the two-stream network WSDDN (Bilen & Vedaldi, CVPR 2016).

Regions ``r = 1..R`` of one image, pooled features → fc6 → fc7 → ``h(r)``; two streams on ``h``:

.. math::
    \\sigma^{cls}_{rc} = \\frac{e^{x^c_{rc}}}{\\sum_{k} e^{x^c_{rk}}}, \\qquad
    \\sigma^{det}_{rc} = \\frac{e^{x^d_{rc} / T}}{\\sum_{s} e^{x^d_{sc} / T}}, \\qquad
    x^R_{rc} = \\sigma^{cls}_{rc}\\,\\sigma^{det}_{rc}, \\qquad y_c = \\sum_r x^R_{rc} \\in (0, 1)

(classification: softmax over classes; detection: softmax over regions, ``T = 2`` as the authors'
code). The image score is trained with the binary log loss on image-level labels
``-Σ_c [l_c log y_c + (1 - l_c) log(1 - y_c)]``; boxes are never used. At test time ``x^R`` scores
the regions. ``streams=1`` is the single-stream ablation: the classification stream alone, regions
pooled into ``y_c`` by ``"max"`` or ``"sum"`` (the sum divided by ``R`` to stay in (0, 1)).
``spatial`` adds the paper's spatial regulariser: for each class present, the fc7 features of the
regions overlapping the top-scoring region by IoU > 0.6 are pulled towards its features, weighted
by the top score, with weight ``1e-4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Representation
from ..models import Model
from ..progress import progress
from .boxes import box_iou
from .data import Dataset
from .proposals import propose
from .roi import as_rois, make_pool, trunk_map

EPS = 1e-6


class WSDDNHead(nn.Module):
    """Pool → fc6 → fc7 → classification (and detection) stream; ``forward`` gives region scores ``(R, K)``."""

    def __init__(self, channels: int, num_classes: int, pool: str = "roi", hidden: int = 256, streams: int = 2,
                 temperature: float = 2.0, single_pool: str = "sum", dropout: float = 0.25):
        super().__init__()
        self.settings = dict(channels=channels, num_classes=num_classes, pool=pool, hidden=hidden, streams=streams,
                             temperature=temperature, single_pool=single_pool)
        self.streams, self.temperature, self.single_pool = streams, temperature, single_pool
        self.pool = make_pool(pool)
        self.fc6 = nn.Linear(self.pool.out_features(channels), hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(hidden, num_classes)
        self.det = nn.Linear(hidden, num_classes)

    def features(self, pooled: torch.Tensor) -> torch.Tensor:
        """fc7 features ``(R, hidden)`` of pooled regions ``(R, D)``."""
        return self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pooled))))))

    def streams_of(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """σ_cls ``(R, K)`` (softmax over classes) and σ_det ``(R, K)`` (softmax over regions; None for one stream)."""
        cls = self.cls(h).softmax(1)
        return cls, (self.det(h) / self.temperature).softmax(0) if self.streams == 2 else None

    def scores(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Region scores ``(R, K)``, image score ``(K,)`` in (0, 1), fc7 features, for one image's regions."""
        h = self.features(pooled)
        cls, det = self.streams_of(h)
        if det is not None:
            region = cls * det
            return region, region.sum(0), h
        image = cls.max(0).values if self.single_pool == "max" else cls.mean(0)
        return cls, image, h

    def forward(self, fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Region scores ``(R, K)`` (as if one image) and an empty delta tensor (no box regression)."""
        region, _, _ = self.scores(self.pool(fmap, rois, spatial_scale))
        return region, None

    def config(self) -> dict:
        return dict(self.settings)


def image_loss(image_scores: torch.Tensor, labels01: torch.Tensor) -> torch.Tensor:
    """Binary log loss of image scores ``(K,)`` against image labels ``(K,)`` in {0, 1} (summed over classes)."""
    y = image_scores.clamp(EPS, 1 - EPS)
    return F.binary_cross_entropy(y, labels01, reduction="sum")


def spatial_regulariser(region: torch.Tensor, h: torch.Tensor, boxes: torch.Tensor, labels01: torch.Tensor,
                        iou: float = 0.6) -> torch.Tensor:
    """Σ over present classes of ½ Σ_{r: IoU(r, top) > 0.6} score_top · ‖h_r − h_top‖² (Bilen & Vedaldi, eq. 3)."""
    total = h.new_zeros(())
    overlaps = box_iou(boxes, boxes)
    for c in torch.nonzero(labels01 > 0).flatten().tolist():
        top = int(torch.argmax(region[:, c]))
        near = overlaps[top] > iou
        total = total + 0.5 * region[top, c].detach() * (h[near] - h[top].detach()).square().sum()
    return total


@dataclass
class WeakImage:
    """One training image for weak supervision: trunk map, scale, proposals, image labels ``(K,)``; no boxes."""

    fmap: torch.Tensor
    scale: float
    proposals: torch.Tensor
    labels01: torch.Tensor


def cache_weak(representation: Representation, dataset: Dataset, trunk_size: int | None, proposals: str, limit: int,
               quiet: bool = True) -> list[WeakImage]:
    """Trunk maps, proposals and image-level labels of ``dataset``: reads ``image`` and ``labels`` only."""
    out = []
    k = len(dataset.classes)
    for scene in progress(dataset.scenes, desc="trunk features", quiet=quiet):
        fmap, scale = trunk_map(representation, scene.image, trunk_size)
        labels01 = torch.zeros(k)
        labels01[scene.labels] = 1.0
        out.append(WeakImage(fmap, scale, propose(scene.image, proposals, limit), labels01))
    return out


def train_wsddn(model: Model, layer: str, train: Dataset, *, streams: int = 2, spatial: bool = False,
                pool: str = "roi", trunk_size: int | None = 448, proposals: str = "ss-fast", limit: int = 200,
                iters: int = 800, lr: float = 1e-3, hidden: int = 256, single_pool: str = "sum",
                spatial_weight: float = 1e-4, seed: int = 0, quiet: bool = True,
                cache: list[WeakImage] | None = None):
    """WSDDN trained on image-level labels of ``train`` (one image per step, Adam); returns (Detector, losses)."""
    from .detector import Detector, DetectorConfig
    from .train import seeded
    with seeded(seed):
        return _train(model, layer, train, streams, spatial, pool, trunk_size, proposals, limit, iters, lr, hidden,
                      single_pool, spatial_weight, seed, quiet, cache, Detector, DetectorConfig)


def _train(model, layer, train, streams, spatial, pool, trunk_size, proposals, limit, iters, lr, hidden, single_pool,
           spatial_weight, seed, quiet, cache, Detector, DetectorConfig):
    generator = torch.Generator().manual_seed(seed)
    representation = Representation(model, layer)
    cache = cache or cache_weak(representation, train, trunk_size, proposals, limit, quiet)
    head = WSDDNHead(cache[0].fmap.shape[1], len(train.classes), pool=pool, hidden=hidden, streams=streams,
                     single_pool=single_pool)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-5)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iters)
    losses = []
    head.train()
    for _ in progress(range(iters), desc=f"train wsddn ({streams} stream)", quiet=quiet):
        item = cache[int(torch.randint(len(cache), (1,), generator=generator))]
        region, image, h = head.scores(head.pool(item.fmap, as_rois([item.proposals]), item.scale))
        loss = image_loss(image, item.labels01)
        if spatial:
            loss = loss + spatial_weight * spatial_regulariser(region, h, item.proposals, item.labels01)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    head.eval()
    config = DetectorConfig(method="wsddn", model=model.name, layer=layer, classes=list(train.classes),
                            trunk_size=trunk_size, proposals=proposals, limit=limit, pool=pool, head=head.config(),
                            box_regression=False, nms=0.4)
    return Detector(model, config, head), losses
