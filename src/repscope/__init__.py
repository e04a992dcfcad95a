"""repscope: what a visual representation encodes, and how two representations relate.

The toolkit implements the techniques of A. Vedaldi's talk "Understanding visual representations"
(2016). Images are ``(N, 3, H, W)`` tensors in [0, 1]; a *representation* Φ maps them to features
(a layer of any network through :class:`Representation`, or :class:`~repscope.hog.HOG`).

Representations:
    load(name) / wrap(module, ...)      a network with its preprocessing (default efficientnet_lite0)
    load_images(specs, size)            files, folders and sample:NAME photos as a batch
    features(model, x, names)           truncated forward pass: outputs of named layers
    Representation(model, layer)        Φ as an nn.Module (with .stride, .receptive_field)
    describe(model) / check(model)      the layer table; the pre-flight check for silent failures
    cell_geometry(phi, size)            where Φ's cells sit in the image: stride, offset, receptive field
    hog.HOG / hog.hog                   differentiable HOG (Dalal-Triggs = scikit-image, UoCTTI = VLFeat)

Pre-images (Mahendran & Vedaldi):        preimage.invert, preimage.maximize, preimage.caricature
Backpropagation networks:               backprop.saliency, backprop.rule("gradient"|"deconvnet"|"guided"),
                                        backprop.selectivity, backprop.bottleneck
Transformations (Lenc & Vedaldi):       equivariance.equivariance(phi, "vflip", fit=..., test=...),
                                        transforms.parse_transform, regression.StreamingRidge, crops.crop_data
Equivalence (Lenc & Vedaldi):           stitching.stitch(model_a, "blocks.3", model_b, "blocks.3", fit=..., test=...),
                                        training.train_map (the task trainer), similarity.linear_cka / rbf_cka /
                                        MinibatchCKA (Kornblith et al.; Nguyen et al.),
                                        equivariance_task.equivariance_task_layers (M_g learned on the task)
"""

from . import (backprop, checks, crops, equivariance, errors, geometry, hog, images, io, layer_info, layers,
               models, preimage, regression, similarity, stitching, training, transforms)
from .checks import Finding, check
from .classify import classify
from .errors import RepscopeError
from .geometry import CellGeometry, cell_geometry
from .hog import HOG
from .images import load_image, load_images, save_grid, save_image
from .layer_info import LayerInfo, describe
from .layers import Representation, features, representation
from .models import Model, Preprocessing, load, wrap

__version__ = "0.1.0"

__all__ = [
    "CellGeometry", "HOG", "Finding", "LayerInfo", "Model", "Preprocessing", "Representation", "RepscopeError",
    "backprop", "cell_geometry", "check", "checks", "classify", "crops", "describe", "equivariance", "errors",
    "features", "geometry", "hog", "images", "io", "layer_info", "layers", "load", "load_image", "load_images",
    "models", "preimage", "regression", "representation", "save_grid", "save_image", "similarity", "stitching",
    "training", "transforms", "wrap",
]
