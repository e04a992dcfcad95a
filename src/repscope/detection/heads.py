"""Detection heads on pooled region features.

Fast R-CNN / SPP head (Girshick 2015; He et al. 2014): pooled features ``φ(r)`` of region ``r`` →
fc6 → ReLU → fc7 → ReLU, then a (K+1)-way softmax ``p(r) = softmax(W_cls h(r))`` (class 0 is
background) and class-specific box deltas ``t^k(r) = W_box^k h(r)``. The training loss of one region
with label ``u`` and regression target ``v`` (in units of :data:`BOX_STD`) is

.. math::
    L = -\\log p_u(r) + \\lambda \\, [u \\ge 1] \\sum_{i \\in x,y,w,h} \\mathrm{smooth}_{L1}(t^u_i - v_i),
    \\quad \\mathrm{smooth}_{L1}(z) = 0.5 z^2 \\text{ if } |z| < 1 \\text{ else } |z| - 0.5

with ``λ = 1``. The pooling is :class:`~repscope.detection.roi.RoIPool` (7x7) or
:class:`~repscope.detection.roi.SpatialPyramidPool` ({1, 2, 4}); the head sees only pooled vectors,
so it trains on cached trunk maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .roi import make_pool

#: Fast R-CNN's normalisation of the regression targets (x, y, w, h).
BOX_STD = (0.1, 0.1, 0.2, 0.2)


class FastRCNNHead(nn.Module):
    """Pool → fc6 → fc7 → (class logits ``(R, K+1)``, box deltas ``(R, K, 4)`` in :data:`BOX_STD` units)."""

    def __init__(self, channels: int, num_classes: int, pool: str = "roi", hidden: int = 256, dropout: float = 0.25):
        super().__init__()
        self.pool_kind, self.channels, self.num_classes, self.hidden = pool, channels, num_classes, hidden
        self.pool = make_pool(pool)
        self.fc6 = nn.Linear(self.pool.out_features(channels), hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(hidden, num_classes + 1)
        self.box = nn.Linear(hidden, 4 * num_classes)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def forward_pooled(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head on pooled vectors ``(R, D)``."""
        h = self.drop(F.relu(self.fc6(pooled)))
        h = self.drop(F.relu(self.fc7(h)))
        return self.cls(h), self.box(h).view(-1, self.num_classes, 4)

    def forward(self, fmap: torch.Tensor, rois: torch.Tensor, spatial_scale: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fmap (N, C, h, w)``, ``rois (R, 5)`` -> logits ``(R, K+1)``, deltas ``(R, K, 4)``."""
        return self.forward_pooled(self.pool(fmap, rois, spatial_scale))

    def config(self) -> dict:
        return {"channels": self.channels, "num_classes": self.num_classes, "pool": self.pool_kind,
                "hidden": self.hidden}


def fast_rcnn_loss(logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                   box_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, smooth-L1) of the formula above; ``labels (R,)`` in 0..K, ``targets (R, 4)``."""
    ce = F.cross_entropy(logits, labels)
    fg = torch.nonzero(labels > 0).flatten()
    if len(fg) == 0:
        return ce, logits.new_zeros(())
    picked = deltas[fg, labels[fg] - 1]
    box = F.smooth_l1_loss(picked, targets[fg], beta=1.0, reduction="sum") / len(labels)
    return ce, box_weight * box


class LinearClassifiers(nn.Module):
    """R-CNN's per-class linear scorers ``s_k(x) = w_k·x + b_k`` on ``(R, D)`` features and ridge box regressors.

    Scorers are trained one-vs-rest with the squared hinge loss (a linear SVM, as R-CNN); the box
    regressor of class ``k`` is ridge regression ``t ≈ A_k [x; 1]`` on proposals of IoU ≥ 0.6 (R-CNN, App. C).
    """

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.features, self.num_classes = features, num_classes
        self.score = nn.Linear(features, num_classes)
        self.register_buffer("box", torch.zeros(num_classes, features + 1, 4))
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(()))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(R, K)`` and deltas ``(R, K, 4)`` (in :data:`BOX_STD` units)."""
        z = self.normalise(x)
        ones = torch.cat([z, z.new_ones(len(z), 1)], 1)
        return self.score(z), torch.einsum("rd,kdf->rkf", ones, self.box)

    def config(self) -> dict:
        return {"features": self.features, "num_classes": self.num_classes}
