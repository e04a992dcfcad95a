"""Pre-images (Mahendran & Vedaldi 2015, 2016): inversion, activation maximisation, caricature.

One regularised energy, one optimiser loop (:mod:`.engine`) over a pyramid-parameterised canvas
(:mod:`.pyramid`) with the papers' step (:mod:`.optimizers`) and jitter (:mod:`.jitter`), three data
terms (:mod:`.objectives`), two natural-image priors (:mod:`.regularizers`), and resumable sweeps
over layers and units into an output folder (:mod:`.sweeps`).

Example:
    >>> import torch
    >>> from repscope.preimage import invert
    >>> phi = torch.nn.Conv2d(3, 8, 3, padding=1)
    >>> invert(phi, torch.rand(1, 3, 16, 16), iters=10).images01.shape
    torch.Size([1, 3, 16, 16])
"""

from .config import IMAGENET_MEAN, PreimageConfig, PreimageResult
from .engine import optimise
from .methods import caricature, invert, maximize, unit_label
from .objectives import Caricature, Invert, Maximize, Objective, Unit, unit_weights
from .rectifiers import leaky_rectifiers
from .regularizers import AlphaNorm, TotalVariation, alpha_norm, total_variation
from .sweeps import invert_layers, maximize_units

__all__ = [
    "invert", "maximize", "caricature", "optimise", "PreimageConfig", "PreimageResult",
    "Objective", "Invert", "Maximize", "Caricature", "Unit", "unit_weights", "unit_label",
    "alpha_norm", "AlphaNorm", "total_variation", "TotalVariation", "leaky_rectifiers",
    "invert_layers", "maximize_units", "IMAGENET_MEAN",
]
