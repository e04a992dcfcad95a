"""Top-K classification with class names: ``classify(model, images01, top=5)``."""

from __future__ import annotations

import torch

from .errors import LayerError, ModelError
from .models import Model


def classify(model: Model, images01: torch.Tensor, top: int = 5) -> list[list[dict]]:
    """For each image of ``(N, 3, H, W)`` in [0, 1]: ``[{"index", "name", "prob"}, ...]``, most probable first."""
    if model.class_names is None:
        raise ModelError(f"model '{model.name}' has no class names (not an ImageNet classifier). "
                         "Use an ImageNet model such as efficientnet_lite0.")
    num_classes = len(model.class_names)
    if not 1 <= top <= num_classes:
        raise LayerError(f"--top {top} is out of range: the model has {num_classes} classes. Use 1..{num_classes}.")
    probs = model(images01).softmax(dim=-1)
    values, indices = probs.topk(top, dim=-1)
    return [[{"index": int(i), "name": model.class_names[int(i)], "prob": float(v)}
             for v, i in zip(row_v, row_i)] for row_v, row_i in zip(values, indices)]
