"""Pre-image sweeps into an output folder: one image at many layers, or many units of one layer.

The talk's conv1…fc8 strips and activation-maximisation grids, run by the one item runner
(:func:`repscope.sweep.run_sweep`): an item is a layer (:func:`invert_layers`, also for
caricatures) or a unit (:func:`maximize_units`, ``batch_size`` units per batched optimisation).
As soon as a chunk finishes, each item's PNG is written and the item (metrics, hyperparameters,
loss curve, file) is recorded in ``result.json``, all atomically; an interrupted run keeps its
finished items, and run again with ``resume=True`` it computes only the rest and ends with the
same folder (timings aside). ``grid.png`` and ``loss.png`` are drawn from the recorded items, so
they do not depend on which run computed them. A diverged item keeps its last finite image as
``NAME.last-good.png``. Formulas: :mod:`repscope.preimage.engine`.

Example:
    >>> from repscope import models                                            # doctest: +SKIP
    >>> from repscope.preimage.sweeps import invert_layers
    >>> model = models.load("efficientnet_lite0")                              # doctest: +SKIP
    >>> result = invert_layers(model, x, ["blocks.0", "blocks.3"], "strip")    # doctest: +SKIP
    >>> result["summary"]                                                      # doctest: +SKIP
    {'blocks.0': 0.05, 'blocks.3': 0.17}
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import LayerError, OptimisationError
from ..images import load_image, load_images, save_grid, save_image
from ..layers import Representation
from ..models import Model, as_model
from ..plots import loss_curves
from ..stages import stage_layers
from ..sweep import Item, SweepRecord, one_line, run_sweep
from .config import PreimageConfig
from .methods import caricature, invert, maximize, unit_label
from .objectives import Unit

__all__ = ["invert_layers", "maximize_units", "pick_layers", "reference_photos", "PreimageOutput"]

#: the per-layer methods of :func:`invert_layers`: name -> (method, metric, grid label format)
PER_LAYER = {"invert": (invert, "error", "{:.2f}"), "caricature": (caricature, "gain", "x{:.1f}")}

#: sample photos whose largest activation normalises a maximisation (Z) and gives its ``ratio``
REFERENCE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "china", "flower")


def pick_layers(model: Model | nn.Module, layers: Sequence[str] | None) -> list[str]:
    """``layers``, each checked to exist; none given: the output (``logits``) of a representation
    without stages (HOG), else a :class:`~repscope.errors.LayerError` asking for one."""
    model = as_model(model)
    if not layers:
        if stage_layers(model) != ["logits"]:
            raise LayerError(f"name a layer with --layer (e.g. --layer blocks.3; in Python: layers=[...]). "
                             f"Run 'repscope layers {model.name}'.")
        layers = ["logits"]
    for layer in layers:
        Representation(model, layer)  # unknown names fail before any work
    return list(layers)


def reference_photos(model: Model | nn.Module, device: torch.device | str | None = None) -> tuple[Tensor, list[str]]:
    """The :data:`REFERENCE_PHOTOS` at the model's input size, (M, 3, S, S) in [0, 1] on ``device``, and their names."""
    model = as_model(model)
    photos, names = load_images([f"sample:{n}" for n in REFERENCE_PHOTOS], size=model.preprocessing.input_size)
    return photos.to(device if device is not None else model.device), names


@dataclass
class PreimageOutput:
    """What a worker returns per item: its JSON record, its image (3, H, W) in [0, 1], its data-term curve (T,)."""

    record: dict[str, Any]
    image01: Tensor
    curve: Tensor


@dataclass(frozen=True)
class _PerLayer:
    """Shared state of a per-layer sweep (picklable)."""

    method: str
    model: Model
    images01: Tensor
    image: str
    config: PreimageConfig
    seed: int


@dataclass(frozen=True)
class _Units:
    """Shared state of a unit sweep (picklable)."""

    model: Model
    layer: str
    size: tuple[int, int]
    spatial: str
    reference01: Tensor | None
    leak: float | None
    config: PreimageConfig
    seed: int


def _per_layer_work(shared: _PerLayer, layers: list[str]) -> list[PreimageOutput]:
    """One pre-image of the shared image per layer."""
    method = PER_LAYER[shared.method][0]
    outputs = []
    for layer in layers:
        res = method(Representation(shared.model, layer), shared.images01, config=shared.config, seed=shared.seed)
        record = dict(res.records()[0], layer=layer, unit=None, image=shared.image)
        outputs.append(PreimageOutput(record, res.images01[0].cpu(), res.data_losses[:, 0].cpu()))
    return outputs


def _units_work(shared: _Units, specs: list[tuple[int, Unit]]) -> list[PreimageOutput]:
    """One batched maximisation of the chunk's units; unit i of the sweep has seed ``seed + i``."""
    start, units = specs[0][0], [unit for _, unit in specs]
    res = maximize(Representation(shared.model, shared.layer), units, size=shared.size, spatial=shared.spatial,
                   reference01=shared.reference01, leak=shared.leak, config=shared.config, seed=shared.seed + start)
    return [PreimageOutput(dict(rec, layer=shared.layer, unit=unit_label(u)), res.images01[i].cpu(),
                           res.data_losses[:, i].cpu()) for i, (u, rec) in enumerate(zip(units, res.records()))]


def safe_name(text: str) -> str:
    """A file-name-safe version of a label (``blocks.3:(1, 2, 3)`` -> ``blocks.3_1_2_3``)."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.\-]+", "_", text)).strip("_") or "item"


def _writer(out: Path, prefix: str) -> Callable[[str, PreimageOutput], dict[str, Any]]:
    """Save an item's PNG as ``PREFIX KEY.png``; its record gains ``key``, ``file`` and ``loss_curve``."""
    def write(key: str, output: PreimageOutput) -> dict[str, Any]:
        name = f"{safe_name(prefix + key)}.png"
        save_image(output.image01, out / name)
        return dict(output.record, key=key, file=name, loss_curve=[float(v) for v in output.curve.flatten()])
    return write


def _last_good(out: Path, prefix: str) -> Callable[[list[str], BaseException], str]:
    """Save a diverged chunk's last finite images as ``NAME.last-good.png``; the message says where."""
    def on_error(keys: list[str], err: BaseException) -> str:
        if not isinstance(err, OptimisationError) or err.last_good is None:
            return one_line(err)
        paths = [save_image(image01, out / f"{safe_name(prefix + key)}.last-good.png")
                 for key, image01 in zip(keys, err.last_good)]
        where = paths[0].name if len(paths) == 1 else f"{paths[0].name} (+{len(paths) - 1} more)"
        return f"{err} Finished items are kept; the last good image is {out / where}."
    return on_error


def _finish(out: Path, record: SweepRecord, *, title: str, label: Callable[[dict[str, Any]], str],
            lead: tuple[Tensor, str] | None = None, **summary: Any) -> dict[str, Any]:
    """Draw ``grid.png`` (``lead`` image first) and ``loss.png`` from the recorded items; mark the record complete."""
    items = list(record.items.values())
    pictures = [load_image(out / item["file"]) for item in items]
    labels = [label(item) for item in items]
    if lead is not None:
        pictures.insert(0, lead[0].detach().cpu().float())
        labels.insert(0, lead[1])
    if pictures:
        save_grid(torch.stack(pictures), out / "grid.png", labels=labels)
        loss_curves({item["key"]: item["loss_curve"] for item in items}, out / "loss.png", title=title)
    return record.finish(**summary)


def _settings(settings: dict[str, Any] | None, **default: Any) -> dict[str, Any]:
    return settings if settings is not None else default


def invert_layers(model: Model | nn.Module, image01: Tensor, layers: Sequence[str] | None, out: str | os.PathLike, *,
                  method: str = "invert", config: PreimageConfig | None = None, seed: int = 0,
                  image: str = "image", resume: bool = False, settings: dict[str, Any] | None = None,
                  executor=None, progress: bool = False) -> dict[str, Any]:
    """Invert (or caricature) one image at each layer, into the folder ``out``.

    Writes ``METHOD_LAYER.png`` per layer, ``grid.png`` (the image, then one pre-image per layer
    labelled with its metric), ``loss.png`` and ``result.json``.

    Args:
        model: the network (a :class:`~repscope.models.Model` or an ``nn.Module``).
        image01: the image, (1, 3, H, W) or (3, H, W) in [0, 1].
        layers: layer names, each checked before any work (``None``: see :func:`pick_layers`).
        out: output folder.
        method: ``"invert"`` (metric ``error``) or ``"caricature"`` (metric ``gain``).
        config: hyperparameters (default :class:`PreimageConfig`).
        seed: the noise start's and jitter's seed (the same for every layer).
        image: the image's name in the records.
        resume: skip the layers ``out/result.json`` holds (same ``settings`` required).
        settings: what ``resume`` compares (default: the method, layers, config, seed and image name).
        executor: where the items run (:func:`repscope.executors.get_executor`; default in process).
        progress: report each finished layer on stderr.

    Returns:
        The final ``result.json`` content: ``items`` (per layer: the metric, ``layer``, ``file``,
        ``loss_curve``, iterations, seconds, hyperparameters) and ``summary`` (layer -> metric).

    Raises:
        ItemsFailed: some layers diverged (the others are kept).
    """
    _, metric, fmt = PER_LAYER[method]
    model = as_model(model)
    images01 = image01 if image01.dim() == 4 else image01.unsqueeze(0)
    layers = pick_layers(model, layers)
    config = config or PreimageConfig()
    out, prefix = Path(out), f"{method}_"
    shared = _PerLayer(method, model, images01, image, config, int(seed))
    settings = _settings(settings, method=method, layers=list(layers), config=dataclasses.asdict(config),
                         seed=seed, image=image)
    record = run_sweep(out, settings, [Item(layer, layer) for layer in layers], _per_layer_work, shared,
                       write=_writer(out, prefix), resume=resume, executor=executor,
                       on_error=_last_good(out, prefix), progress=progress, desc=method)
    return _finish(out, record, title=f"{method} {image}", lead=(images01[0], "original"),
                   label=lambda item: f"{item['layer']} {fmt.format(item[metric])}",
                   command=method, model=model.name, image=image,
                   summary={item["layer"]: round(item[metric], 4) for item in record.items.values()})


def maximize_units(model: Model | nn.Module, layer: str, units: Sequence[Unit], out: str | os.PathLike, *,
                   size: tuple[int, int] | None = None, spatial: str = "mean", reference01: Tensor | None = None,
                   reference_names: Sequence[str] | None = None, batch_size: int = 16, leak: float | None = 0.05,
                   config: PreimageConfig | None = None, seed: int = 0, resume: bool = False,
                   settings: dict[str, Any] | None = None, executor=None, progress: bool = False) -> dict[str, Any]:
    """Maximise each unit of ``layer``, ``batch_size`` units per batched run, into the folder ``out``.

    Writes ``maximize_LAYER_UNIT.png`` per unit, ``grid.png``, ``loss.png`` and ``result.json``.

    Args:
        size: (H, W); default the model's input size.
        reference01: photos (M, 3, H, W) giving Z and the ``ratio`` metric (see :func:`maximize`).
        reference_names: their names, recorded as ``reference_images``.
        batch_size: units optimised together; unit i of the sweep has seed ``seed + i``.
        leak: slope of the leaky rectifiers while optimising (``None``: off).
        settings: what ``resume`` compares (default: layer, units, config, seed, size, spatial, batch).
        Others: as :func:`invert_layers`.

    Returns:
        The final ``result.json`` content: ``items`` (per unit: ``activation`` and, with references,
        ``ratio``) and ``summary`` (unit -> {activation, ratio}).
    """
    model = as_model(model)
    Representation(model, layer)
    side = model.preprocessing.input_size
    size = tuple(size or (side, side))
    config = config or PreimageConfig()
    out, prefix = Path(out), f"maximize_{layer}_"
    shared = _Units(model, layer, size, spatial, reference01, leak, config, int(seed))
    keys = [unit_label(u) for u in units]
    settings = _settings(settings, layer=layer, units=keys, config=dataclasses.asdict(config), seed=seed,
                         size=list(size), spatial=spatial, batch=batch_size, leak=leak)
    record = run_sweep(out, settings, [Item(k, (i, u)) for i, (k, u) in enumerate(zip(keys, units))], _units_work,
                       shared, write=_writer(out, prefix), resume=resume, chunk_size=batch_size, executor=executor,
                       on_error=_last_good(out, prefix), progress=progress, desc=f"maximize {layer}")
    ratio = reference01 is not None
    summary = {i["unit"]: {"activation": round(i["activation"], 4), **({"ratio": round(i["ratio"], 3)} if ratio else {})}
               for i in record.items.values()}
    return _finish(out, record, title=f"maximize {layer}",
                   label=lambda item: f"{item['unit']} x{item['ratio']:.1f}" if ratio else item["unit"],
                   command="maximize", model=model.name, layer=layer,
                   reference_images=list(reference_names or []), summary=summary)
