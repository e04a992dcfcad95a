"""repscope: what a visual representation encodes, and how two representations relate.

The toolkit implements the techniques of A. Vedaldi's talk "Understanding visual representations"
(2016). Images are ``(N, 3, H, W)`` tensors in [0, 1]; a *representation* Φ maps them to features.

Foundation:
    models.load(name)                  a network with its preprocessing (default efficientnet_lite0)
    images.load_images(specs, size)    files, folders and sample:NAME photos as a batch
    layers.features(model, x, names)   truncated forward pass: outputs of named layers
    layers.Representation(model, l)    Φ as an nn.Module (with .stride, .receptive_field)
    layer_info.describe(model)         the layer table: shape, stride, receptive field
    checks.check(model)                pre-flight check for silent failures
"""

from . import checks, errors, images, io, layer_info, layers, models
from .checks import Finding, check
from .classify import classify
from .errors import RepscopeError
from .images import load_image, load_images, save_grid, save_image
from .layer_info import LayerInfo, describe
from .layers import Representation, features, representation
from .models import Model, Preprocessing, load, wrap

__version__ = "0.1.0"

__all__ = [
    "Finding", "LayerInfo", "Model", "Preprocessing", "Representation", "RepscopeError",
    "check", "checks", "classify", "describe", "errors", "features", "images", "io", "layer_info", "layers",
    "load", "load_image", "load_images", "models", "representation", "save_grid", "save_image", "wrap",
]
