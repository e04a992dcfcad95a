"""R-CNN (Girshick et al., CVPR 2014): crop each proposal with context, warp it, run the network.

Each box is dilated so that, once warped to the network's ``S x S`` input, it is surrounded by
``p = 16`` pixels of context (the paper's setting at ``S = 227``): a box of side ``b`` grows to
``b · S / (S - 2p)`` about its centre (clipped to the image). The crop is warped anisotropically to
``S x S`` (bilinear with 2x2 samples per output pixel, ``torchvision.ops.roi_align``), the network is
run up to a layer in batches, and the crop's map is pooled exactly as the region head pools a
region (7x7 RoI bins or the {1, 2, 4} pyramid over the whole crop), so R-CNN and Fast R-CNN differ
only in *where* the map comes from. The network is evaluated once per region: that is the cost the
SPP and Fast R-CNN heads remove.

The zero-training ImageNet path scores regions with the network's own classifier, which follows a
global average pool: R-CNN runs the whole network on each warped crop; "SPP" runs the trunk once and
averages each region of the last convolutional map (:func:`~repscope.detection.roi.roi_mean`)
before the same classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import roi_align

from ..errors import LayerError
from ..layers import Representation
from ..models import Model
from ..progress import progress
from .roi import as_rois, make_pool, roi_mean, trunk_map

CONTEXT = 16
#: ImageNet-1k classes that stand for each synthetic class in the zero-training evaluation.
IMAGENET_GROUPS = {"cat": (281, 282, 283, 284, 285), "cup": (504, 967, 968), "motorcycle": (665, 670)}


def dilate(boxes: torch.Tensor, size: int, context: int, height: int, width: int) -> torch.Tensor:
    """Grow ``boxes (M, 4)`` by ``size / (size - 2·context)`` about their centres, clipped to the image."""
    factor = size / (size - 2 * context)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hw, hh = (boxes[:, 2] - boxes[:, 0]) * factor / 2, (boxes[:, 3] - boxes[:, 1]) * factor / 2
    out = torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], 1)
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def warp_regions(image01: torch.Tensor, boxes: torch.Tensor, size: int, context: int = CONTEXT) -> torch.Tensor:
    """Crops ``(M, 3, size, size)`` of ``image01 (3, H, W)``: each box dilated by the context, warped."""
    h, w = image01.shape[1:]
    grown = dilate(boxes.float(), size, context, h, w)
    return roi_align(image01[None], as_rois([grown]), (size, size), spatial_scale=1.0, sampling_ratio=2,
                     aligned=True).clamp(0, 1)


def _batches(n: int, batch_size: int, desc: str, quiet: bool):
    starts = range(0, n, batch_size)
    return progress(starts, total=len(starts), desc=desc, quiet=quiet)


def rcnn_features(representation: Representation, image01: torch.Tensor, boxes: torch.Tensor, pool: str = "roi",
                  *, input_size: int | None = None, batch_size: int = 32, quiet: bool = True) -> torch.Tensor:
    """R-CNN features ``(M, D)``: warp each box, run the trunk, pool the crop's whole map (``pool``)."""
    size = input_size or representation.model.preprocessing.input_size
    pooler = make_pool(pool)
    out = []
    for start in _batches(len(boxes), batch_size, "R-CNN regions", quiet):
        crops = warp_regions(image01, boxes[start:start + batch_size], size)
        with torch.no_grad():
            fmap = representation(crops)
        n, _, fh, fw = fmap.shape
        whole = torch.tensor([[i, 0.0, 0.0, fw, fh] for i in range(n)], dtype=fmap.dtype)
        out.append(pooler(fmap, whole, 1.0))
    return torch.cat(out) if out else torch.zeros(0, 0)


def classifier_split(model: Model) -> tuple[str, nn.Module]:
    """The last convolutional layer and the linear classifier after its global average pool.

    timm EfficientNet / MobileNet (``bn2`` then ``classifier``) and torchvision ResNet (``layer4`` then ``fc``).
    """
    module = model.module
    if hasattr(module, "bn2") and isinstance(getattr(module, "classifier", None), nn.Linear):
        return "bn2", module.classifier
    if hasattr(module, "layer4") and isinstance(getattr(module, "fc", None), nn.Linear):
        return "layer4", module.fc
    raise LayerError(f"model '{model.name}' does not end in global pooling + a linear classifier that repscope "
                     "knows (timm EfficientNet, torchvision ResNet). Train a head with 'repscope detect train'.")


def imagenet_scores_rcnn(model: Model, image01: torch.Tensor, boxes: torch.Tensor, *, batch_size: int = 32,
                         quiet: bool = True) -> torch.Tensor:
    """Softmax ``(M, 1000)`` of the whole network on each warped region (R-CNN, zero training)."""
    size = model.preprocessing.input_size
    out = []
    for start in _batches(len(boxes), batch_size, "R-CNN regions", quiet):
        with torch.no_grad():
            out.append(model(warp_regions(image01, boxes[start:start + batch_size], size)).softmax(1))
    return torch.cat(out)


def imagenet_scores_spp(model: Model, image01: torch.Tensor, boxes: torch.Tensor,
                        trunk_sizes: int | Sequence[int] | None) -> torch.Tensor:
    """Softmax ``(M, 1000)`` of the network's classifier on each region's mean of the last conv map.

    With several ``trunk_sizes`` (shorter image sides) the trunk runs once per size and each box is pooled
    at the size where its area is closest to the network's input area (SPP-net's multi-scale testing).
    """
    layer, classifier = classifier_split(model)
    representation = Representation(model, layer)
    sizes = [trunk_sizes] if trunk_sizes is None or isinstance(trunk_sizes, int) else list(trunk_sizes)
    side = model.preprocessing.input_size
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    factors = torch.tensor([1.0 if s is None else s / min(image01.shape[1:]) for s in sizes])
    choice = (area[:, None] * factors[None] ** 2 - side * side).abs().argmin(1)
    pooled = torch.zeros(len(boxes), classifier.in_features)
    for i, size in enumerate(sizes):
        mine = torch.nonzero(choice == i).flatten()
        if len(mine):
            fmap, scale = trunk_map(representation, image01, size)
            pooled[mine] = roi_mean(fmap, as_rois([boxes[mine].to(fmap.dtype)]), scale)
    with torch.no_grad():
        return classifier(pooled).softmax(1)


def group_scores(probs: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
    """Scores ``(M, K)`` for dataset ``classes``: the ImageNet probability mass of each class's group."""
    missing = [c for c in classes if c not in IMAGENET_GROUPS]
    cols = [probs[:, list(IMAGENET_GROUPS[c])].sum(1) if c not in missing else probs.new_zeros(len(probs))
            for c in classes]
    return torch.stack(cols, 1)


IMAGENET_NOTE = ("zero-training ImageNet scores: each class is the probability mass of its ImageNet classes "
                 f"{IMAGENET_GROUPS}; classes with no ImageNet counterpart are left out")


def restrict_to_imagenet(dataset):
    """``dataset`` with only the classes of :data:`IMAGENET_GROUPS` (their boxes kept, the others' dropped)."""
    from .data import Dataset, Scene
    kept = [c for c in dataset.classes if c in IMAGENET_GROUPS]
    new_index = {dataset.classes.index(c): i for i, c in enumerate(kept)}
    scenes = []
    for s in dataset.scenes:
        mask = torch.tensor([int(lab) in new_index for lab in s.labels], dtype=torch.bool)
        labels = torch.tensor([new_index[int(lab)] for lab in s.labels[mask]], dtype=torch.int64)
        scenes.append(Scene(s.image, s.boxes[mask], labels, s.name, None if s.difficult is None else s.difficult[mask]))
    return Dataset(classes=tuple(kept), scenes=scenes, name=dataset.name)
