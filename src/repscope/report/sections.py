"""The section renderers: a registry keyed by the command name stored in ``config.json``.

A new command adds one renderer::

    @renderer("mycommand")
    def render_mycommand(folder: ResultFolder) -> Section:
        return Section("other", "My command", run_facts(folder) + table(...))

A command without a renderer gets :func:`render_generic` (its PNGs and its scalar numbers), never an
error. Chapters (:data:`CHAPTERS`) put the sections in the talk's order; a chapter may have a
summary over all its folders (:data:`SUMMARIES`), e.g. a table comparing the image priors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .folders import ResultFolder, command_line
from .html import Section, esc, figure, meta, table

__all__ = ["CHAPTERS", "RENDERERS", "SUMMARIES", "renderer", "summary", "render", "render_generic", "run_facts"]

#: ``(key, title, words)`` in the talk's order; sections of unknown commands go to "other".
CHAPTERS: list[tuple[str, str, str]] = [
    ("inversion", "Inversion: what a layer keeps of an image",
     "Each picture is a pre-image: an image x* whose representation Φ(x*) at one layer matches that of the "
     "photo, found from noise under a natural-image prior (Mahendran &amp; Vedaldi, CVPR 2015 / IJCV 2016). "
     "Whatever is in the photo but not in x* is what the layer has thrown away."),
    ("priors", "The image prior: no prior, TV with β = 1, TV with β = 2",
     "The same inversion with different regularisers R(x) in x* = argmin ‖Φ(x) − Φ0‖²/‖Φ0‖² + λ R(x): without a "
     "prior the optimiser finds high-frequency images that the network maps to the same code; the total-"
     "variation prior TV^β chooses natural-looking ones (β = 1 spiky, β = 2 smooth)."),
    ("maximize", "Activation maximisation",
     "Images that excite one unit (a channel or a class logit) as much as possible under the same prior: "
     "x* = argmax ⟨e_k, Φ(x)⟩ − λ R(x). The ratio compares the unit's value on x* with its largest value "
     "over the sample photos."),
    ("caricature", "Caricatures",
     "Starting from a photo x0, x* = argmax ⟨Φ(x0), Φ(x)⟩ − λ R(x) exaggerates whatever the layer detects in it. "
     "The gain ⟨Φ(x0), Φ(x*)⟩ / ‖Φ(x0)‖² says how much more of it the caricature holds."),
    ("saliency", "Backpropagation: gradient, DeConvNet and guided backprop",
     "The three methods are one reversed network with different backward rules at the rectifiers (Mahendran &amp; "
     "Vedaldi, ECCV 2016): gradient 1[x&gt;0]·g, DeConvNet max(g, 0), guided max(1[x&gt;0]·g, 0). Selectivity is the "
     "mean correlation of the maps of different units (low = neuron selective); bottleneck is the correlation of the "
     "map with the map obtained from a random or constant top signal (high = the forward pass's masks and switches, "
     "not the unit, make the picture)."),
    ("hog", "HOG: a hand-crafted representation",
     "HOG (histograms of oriented gradients) is inverted with the same engine as a CNN layer; the glyphs draw, per "
     "8×8 cell, one stroke per orientation along the image edge, brightness proportional to the bin."),
    ("equivariance", "Equivariance: Φ(gx) ≈ M_g Φ(x)",
     "For a transformation g of the image (a flip, a rotation), does a map M_g on the features predict the "
     "features of the transformed image (Lenc &amp; Vedaldi, CVPR 2015)? Errors are held out: "
     "Σ‖Φ(gx) − M_g Φ(x)‖² / Σ‖Φ(gx)‖²; agreement is the top-1 agreement of the rest of the network "
     "reading the compensated features with the network on x."),
    ("stitch", "Equivalence: stitching two networks",
     "A Franken-network: network A up to a layer, a learned linear stitch, network B after its layer "
     "(Lenc &amp; Vedaldi, CVPR 2015). If B's rest still works, the two representations are equivalent up to "
     "the stitch."),
    ("similarity", "Similarity: CKA between layers",
     "Centred kernel alignment (Kornblith et al., ICML 2019) compares two layers' responses to the same images, "
     "invariant to rotations and isotropic scaling of either."),
    ("detect", "Detection",
     "Object detection from a classification network: proposals, features per region, a classifier per region "
     "(R-CNN, SPP, Fast R-CNN) or weakly supervised from image labels only (WSDDN)."),
    ("other", "Other results", "Folders of commands this report has no dedicated view for: their pictures and numbers."),
]

Renderer = Callable[[ResultFolder], Section]
RENDERERS: dict[str, Renderer] = {}
SUMMARIES: dict[str, Callable[[list[ResultFolder], list[ResultFolder]], str]] = {}


def renderer(command: str) -> Callable[[Renderer], Renderer]:
    """Register ``fn`` as the renderer of folders whose ``config.json`` says ``"command": command``."""
    def register(fn: Renderer) -> Renderer:
        RENDERERS[command] = fn
        return fn
    return register


def summary(chapter: str):
    """Register ``fn(chapter_folders, all_folders) -> HTML``, drawn at the top of ``chapter`` (if not empty)."""
    def register(fn):
        SUMMARIES[chapter] = fn
        return fn
    return register


def render(folder: ResultFolder) -> Section:
    """The section of ``folder``: its command's renderer, or the generic one."""
    return RENDERERS.get(folder.command, render_generic)(folder)


def seconds(folder: ResultFolder) -> float | None:
    """Compute time recorded in the result (sum over items, or a top-level ``seconds``), if any."""
    items = folder.result.get("items")
    if isinstance(items, dict) and items:
        # items optimised together (one maximize batch) record the batch's time each: count it once
        values = {i["seconds"] for i in items.values() if isinstance(i, dict) and isinstance(i.get("seconds"), (int, float))}
        return sum(values) if values else None
    value = folder.result.get("seconds")
    return float(value) if isinstance(value, (int, float)) else None


def run_facts(folder: ResultFolder, **extra: Any) -> str:
    """The facts every section shows: the exact command, model, layer, seed, time, device, folder."""
    cmd, exact = command_line(folder)
    c = folder.settings
    items = [("command", f"<code>{esc(cmd)}</code>" + ("" if exact else " <em>(rebuilt from config.json)</em>"))]
    items.append(("model", folder.model + (" (random weights)" if c.get("random_init") else "")))
    layer = c.get("layer")
    if layer is not None:
        items.append(("layer", ", ".join(map(str, layer)) if isinstance(layer, list) else layer))
    items += [(k, v) for k, v in extra.items() if v is not None]
    items.append(("seed", c.get("seed", "—")))
    secs = seconds(folder)
    items.append(("time", f"{c.get('time', '—')}" + (f", {secs:.1f} s measured by the command" if secs is not None else "")))
    items.append(("device", c.get("device_resolved", c.get("device", "—"))))
    items.append(("folder", str(folder.path)))
    return meta(items)


def _scalars(obj: Any, prefix: str = "", out: list | None = None, limit: int = 60) -> list[tuple[str, Any]]:
    """Flatten the scalar numbers of a JSON object (``a.b.c`` keys), skipping curves and settings."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("settings", "hyperparameters", "loss_curve"):
                continue
            _scalars(v, f"{prefix}.{k}" if prefix else str(k), out, limit)
    elif isinstance(obj, list) and len(obj) <= 12:
        for i, v in enumerate(obj):
            _scalars(v, f"{prefix}[{i}]", out, limit)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and len(out) < limit:
        out.append((prefix, obj))
    return out


def render_generic(folder: ResultFolder) -> Section:
    """Any command: its PNGs (up to 12) and its scalar numbers (up to 60), with the run's facts."""
    parts = [run_facts(folder)]
    if folder.command not in RENDERERS:
        parts.append(f'<p class="note">No dedicated view for <code>{esc(folder.command)}</code> yet: '
                     "these are the pictures and numbers its folder holds.</p>")
    numbers = _scalars(folder.result)
    if numbers:
        parts.append(table(["number", "value"], numbers, caption="scalar numbers of result.json"))
    parts += [figure(p, f"<code>{esc(p.name)}</code>", max_width=800) for p in folder.pngs[:12]]
    chapter = folder.command if folder.command in {k for k, _, _ in CHAPTERS} else "other"
    return Section(chapter, f"{folder.command} ({folder.model})", "".join(parts))

