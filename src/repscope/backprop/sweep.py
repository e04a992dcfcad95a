"""Backprop maps of one image by several methods into an output folder, as a resumable sweep.

One item per backward rule (``gradient``, ``deconvnet``, ``guided``; :mod:`.rules`), run by the one
item runner (:func:`repscope.sweep.run_sweep`). Each item computes, for the same target, the map
(:func:`.saliency.backward_map`), the maps of the top-K units and their selectivity
(:func:`.analysis.selectivity`) and the bottleneck correlations (:func:`.analysis.bottleneck`);
the three numbers are the same whether the methods run together or apart (the forward pass does
not depend on the rule, and the bottleneck's random signals restart from ``seed`` per method).
Files per method: ``saliency_M.png`` (signed RGB), ``heatmap_M.png`` (max over channels of
|map|), ``overlay_M.png``, ``units_M.png``; then ``grid.png`` (rows: methods; columns: image,
signed, heatmap, overlay) and ``result.json``.

Example:
    >>> from repscope.backprop.sweep import saliency_methods                       # doctest: +SKIP
    >>> result = saliency_methods(model, x, "out", layer="blocks.5", unit=56)        # doctest: +SKIP
    >>> result["selectivity"]                                                     # doctest: +SKIP
    {'gradient': 0.05, 'deconvnet': 0.71, 'guided': 0.22}
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..images import load_image, save_grid, save_image
from ..models import Model, as_model
from ..sweep import Item, run_sweep
from .analysis import bottleneck, selectivity
from .render import colorize, heatmap, overlay, signed_rgb
from .rules import METHODS, check_method
from .saliency import Target, backward_map

__all__ = ["saliency_methods", "MethodOutput"]


@dataclass(frozen=True)
class _Shared:
    model: Model
    images01: Tensor
    layer: str
    unit: int | None
    at: str
    top_k: int
    trials: int
    seed: int


@dataclass
class MethodOutput:
    """One method's maps and numbers (tensors on the CPU)."""

    maps: Tensor  # (1, 3, H, W) signed map of the target
    unit: int
    value: float
    rectifiers: int
    unit_maps: Tensor  # (K, 3, H, W) signed maps of the top-K units
    channels: list[int]
    selectivity: float
    bottleneck: dict[str, float]


#: backward_map's note that a rule changes nothing (no rectifier before the layer), filtered in the
#: sweep: each item records ``rectifiers`` (0) and the summary prints it, while the note would repeat
#: for every map, selectivity and bottleneck call (8 warnings for ``saliency --layer conv_stem``)
_NO_RECTIFIER = r"no rectifier \(.*\) before layer '.*': '.*' equals the plain gradient here\."


def _work(shared: _Shared, methods: list[str]) -> list[MethodOutput]:
    """Map, top-K selectivity and bottleneck of the shared target, per method."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NO_RECTIFIER, category=UserWarning)
        return _compute(shared, methods)


def _compute(shared: _Shared, methods: list[str]) -> list[MethodOutput]:
    outputs = []
    for m in methods:
        res = backward_map(shared.model, shared.images01, Target(shared.layer, shared.unit, shared.at), m)
        unit = int(res.units[0])
        sel = selectivity(shared.model, shared.images01, shared.layer, k=shared.top_k, methods=[m], at=shared.at)
        bott = bottleneck(shared.model, shared.images01, shared.layer, unit=unit, at=shared.at, methods=[m],
                          trials=shared.trials, seed=shared.seed)
        outputs.append(MethodOutput(res.maps.cpu(), unit, float(res.values[0]), int(res.rectifiers),
                                    sel.maps[m].cpu(), list(sel.channels), sel.selectivity[m], bott.correlation[m]))
    return outputs


def _writer(out: Path, images01: Tensor) -> Callable[[str, MethodOutput], dict[str, Any]]:
    def write(method: str, o: MethodOutput) -> dict[str, Any]:
        files = {"saliency": f"saliency_{method}.png", "heatmap": f"heatmap_{method}.png",
                 "overlay": f"overlay_{method}.png", "units": f"units_{method}.png"}
        save_image(signed_rgb(o.maps)[0], out / files["saliency"])
        save_image(colorize(heatmap(o.maps))[0], out / files["heatmap"])
        save_image(overlay(images01.cpu(), o.maps)[0], out / files["overlay"])
        save_grid(signed_rgb(o.unit_maps), out / files["units"], labels=[f"unit {k}" for k in o.channels])
        return {"method": method, "unit": o.unit, "value": o.value, "rectifiers": o.rectifiers,
                "selectivity": o.selectivity, "selectivity_units": o.channels, "bottleneck": o.bottleneck,
                "files": files}
    return write


def saliency_methods(model: Model | nn.Module, image01: Tensor, out: str | os.PathLike, *, layer: str = "logits",
                     unit: int | None = None, at: str = "max", methods: Sequence[str] = METHODS, top_k: int = 8,
                     trials: int = 2, seed: int = 0, image: str = "image", resume: bool = False,
                     settings: dict[str, Any] | None = None, executor=None, progress: bool = False) -> dict[str, Any]:
    """Backprop maps of ``image01`` (1, 3, H, W) in [0, 1] by each method, with selectivity and bottleneck.

    Args:
        layer, unit, at: the target (:class:`.saliency.Target`); ``unit=None``: the most active unit
            (at ``logits``: the predicted class), the same for every method.
        methods: backward rules, one item each.
        top_k: units compared for selectivity.
        trials: random signals averaged in the bottleneck.
        seed: the bottleneck's random signals.
        image: the image's name in the result.
        resume, settings, executor, progress: as :func:`repscope.sweep.run_sweep` (``settings``
            default: the arguments above).

    Returns:
        The final ``result.json``: ``items`` (per method) and, at the top, ``unit``, ``class_name``,
        ``value``, ``rectifiers``, ``selectivity``/``bottleneck`` (method -> numbers), ``selectivity_units``.
    """
    model = as_model(model)
    methods = [check_method(m) for m in dict.fromkeys(methods)]
    images01 = image01 if image01.dim() == 4 else image01.unsqueeze(0)
    out = Path(out)
    shared = _Shared(model, images01, layer, unit, at, int(top_k), int(trials), int(seed))
    if settings is None:
        settings = dict(layer=layer, unit=unit, at=at, methods=methods, top_k=top_k, trials=trials, seed=seed,
                        image=image)
    record = run_sweep(out, settings, [Item(m, m) for m in methods], _work, shared, write=_writer(out, images01),
                       resume=resume, executor=executor, progress=progress, desc="saliency")
    items = [record.items[m] for m in methods]
    rows, labels = [], []
    for item in items:
        m = item["method"]
        rows += [images01[0].cpu().float()] + [load_image(out / item["files"][k]) for k in ("saliency", "heatmap",
                                                                                          "overlay")]
        labels += [image, f"{m} signed", f"{m} |map|", f"{m} overlay"]
    save_grid(torch.stack(rows), out / "grid.png", labels=labels, ncols=4)
    first, resolved = items[0], items[0]["unit"]
    names = model.class_names
    class_name = names[resolved] if layer == "logits" and names and 0 <= resolved < len(names) else None
    return record.finish(
        command="saliency", model=model.name, image=image, layer=layer, unit=resolved, class_name=class_name,
        at=at if layer != "logits" else None, methods=methods, value=first["value"], rectifiers=first["rectifiers"],
        selectivity={i["method"]: round(i["selectivity"], 4) for i in items}, selectivity_units=first["selectivity_units"],
        bottleneck={i["method"]: {s: round(v, 4) for s, v in i["bottleneck"].items()} for i in items})
