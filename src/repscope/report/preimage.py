"""Sections for ``invert``, ``maximize`` and ``caricature`` folders (and HOG inversions).

Inversion: a strip across layers with the normalised error ‖Φ(x*) − Φ0‖ / ‖Φ0‖ under each pre-image,
a table, and the loss plot (which shows the data term, the *squared* normalised distance).
HOG inversions also show the HOG glyphs of the photo and of its pre-image, and the published
errors of Mahendran & Vedaldi (CVPR 2015) beside ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import published
from .folders import ResultFolder
from .html import Section, esc, figure, fmt, table
from .sections import renderer, run_facts, summary

__all__ = ["render_invert", "render_maximize", "render_caricature"]

LOSS_WORDS = ("The loss plot shows the data term per iteration: the <em>squared</em> normalised distance "
              "‖Φ(x) − Φ0‖² / ‖Φ0‖² (log scale). The error printed under the images and in the table is its "
              "square root, ‖Φ(x*) − Φ0‖ / ‖Φ0‖, of the final image.")


INVERT_WORDS = {
    "inversion": "<p>The photo, then one pre-image per layer with its normalised reconstruction error "
                 "‖Φ(x*) − Φ0‖ / ‖Φ0‖ under it. Deeper layers keep the object's parts and layout but lose colour, "
                 "exact position and texture: the pre-image shows what the layer is invariant to.</p>",
    "priors": "<p>The photo and its pre-image under this prior, with the normalised reconstruction error. "
              "Compare the table at the top of this chapter.</p>",
    "hog": "<p>The photo and its HOG pre-image with the normalised error. HOG keeps gradient orientations per "
           "cell, normalised by their neighbourhood: the pre-image has the edges in place but only a rough idea "
           "of colour and of absolute brightness.</p>",
}


def items(folder: ResultFolder) -> list[dict[str, Any]]:
    """The recorded items of a pre-image sweep, in the order they were asked."""
    found = folder.result.get("items")
    return [i for i in found.values() if isinstance(i, dict)] if isinstance(found, dict) else []


def original(folder: ResultFolder, like: dict[str, Any] | None) -> np.ndarray | None:
    """The photo the run started from, at the size of its pre-images, as ``(H, W, 3)`` uint8 (None if
    it cannot be read any more)."""
    from PIL import Image

    from ..errors import RepscopeError
    from ..images import load_image, resize_center_crop, to_uint8

    spec = folder.config.get("image") or folder.result.get("image")
    png = folder.png(like["file"]) if like and like.get("file") else None
    if not spec or png is None:
        return None
    try:
        with Image.open(png) as im:
            side = im.width
        return to_uint8(resize_center_crop(load_image(spec)[None], side)[0])
    except (RepscopeError, OSError):
        return None


def strip(folder: ResultFolder, caption, lead: str | None = None) -> str:
    """Pictures side by side, each with its number under it; ``lead`` labels the original photo first."""
    its = items(folder)
    figures = []
    if lead is not None:
        photo = original(folder, its[0] if its else None)
        if photo is not None:
            figures.append(figure(photo, esc(lead), max_width=224))
    for item in its:
        png = folder.png(str(item.get("file", "")))
        if png is not None:
            figures.append(figure(png, caption(item), max_width=224))
    return f'<div class="strip">{"".join(figures)}</div>'


def chapter_of_invert(folder: ResultFolder) -> str:
    """HOG models go to the HOG chapter; runs with a non-default prior to the prior comparison."""
    c = folder.config
    if folder.model.startswith("hog"):
        return "hog"
    if c.get("tv_weight") is not None or c.get("beta", 2.0) != 2.0:
        return "priors"
    return "inversion"


def prior_name(config: dict[str, Any]) -> str:
    """``no prior`` / ``TV β=1`` / ``TV β=2`` (with λ when set)."""
    if config.get("tv_weight") == 0:
        return "no prior (λ_TV = 0)"
    text = f"TV β={fmt(float(config.get('beta', 2.0)), 0)}"
    return text + (f", λ_TV={fmt(config['tv_weight'])}" if config.get("tv_weight") is not None else "")


@renderer("invert")
def render_invert(folder: ResultFolder) -> Section:
    its = items(folder)
    chapter = chapter_of_invert(folder)
    image = folder.config.get("image") or folder.result.get("image")
    parts = [run_facts(folder, image=image, prior=prior_name(folder.config), iterations=folder.config.get("iters"))]
    label = (lambda i: "HOG") if chapter == "hog" else (lambda i: esc(i.get("layer")))
    parts.append(strip(folder, lambda i: f"{label(i)}<br>error {fmt(i.get('error'))}", lead=f"{image}"))
    parts.append(INVERT_WORDS[chapter])
    rows = [("HOG" if chapter == "hog" else i.get("layer"), i.get("hyperparameters", {}).get("stride"), i.get("error"), i.get("total_variation"),
             i.get("iterations"), i.get("seconds")) for i in its]
    parts.append(table(["layer", "stride (px)", "error", "TV of x*", "iterations", "seconds"], rows))
    if chapter == "hog":
        parts.append(hog_glyphs(folder, its))
        parts.append(hog_published(folder, its))
    loss = folder.png("loss.png")
    if loss is not None:
        parts.append(figure(loss, LOSS_WORDS, max_width=480))
    where = {"hog": f"HOG inversion: {folder.model}", "priors": f"Inversion with {prior_name(folder.config)}"}
    title = where.get(chapter, f"Inversion across layers: {folder.model}, {image}")
    return Section(chapter, title, "".join(parts))


def hog_glyphs(folder: ResultFolder, its: list[dict[str, Any]]) -> str:
    """Glyphs of the photo's HOG and of the pre-image's HOG (computed here: HOG is cheap)."""
    from ..errors import RepscopeError
    from ..hog import hog_from_name, render_glyphs
    from ..images import load_image

    photo = original(folder, its[0] if its else None)
    png = folder.png(str(its[0].get("file", ""))) if its else None
    if photo is None or png is None:
        return ""
    try:
        import torch
        phi = hog_from_name(folder.model)
        pictures = torch.stack([torch.from_numpy(photo).permute(2, 0, 1).float() / 255, load_image(png)])
        with torch.no_grad():
            glyphs = render_glyphs(phi(pictures), phi, cell_px=8)
    except (RepscopeError, ValueError, RuntimeError):
        return ""
    from ..images import to_uint8
    return ('<div class="row">'
            + figure(to_uint8(glyphs[0]), "HOG glyphs of the photo: per cell, a stroke along each edge "
                     "orientation, as bright as its histogram bin.", max_width=448)
            + figure(to_uint8(glyphs[1]), "HOG glyphs of the pre-image: nearly the same strokes, although the "
                     "pre-image differs from the photo — HOG keeps edge orientations, not colour or fine texture.",
                     max_width=448) + "</div>")


def hog_published(folder: ResultFolder, its: list[dict[str, Any]]) -> str:
    """Our error beside Mahendran & Vedaldi's published HOG inversion errors (labelled as published)."""
    ours = [i.get("error") for i in its if isinstance(i.get("error"), (int, float))]
    match = published.HOG_MATCH.get(folder.model)
    rows = [(name, f"{value:.2f}%", "published") for name, value in published.HOG_INVERSION["rows"]]
    if ours:
        rows.insert(0, (f"repscope {folder.model} (this run, {folder.config.get('image')})",
                        f"{100 * ours[0]:.1f}%", "ours" + (f"; compare: {match}" if match else "")))
    return ('<div class="published">' + table(["representation", "mean normalised error", "source"], rows,
                                                 caption="Published: " + esc(published.HOG_INVERSION["source"]))
            + "Different images and iterations from the paper's: indicative only.</div>")


@summary("priors")
def priors_summary(folders: list[ResultFolder], everything: list[ResultFolder]) -> str:
    """One table over every inversion in the prior comparison, with the default-prior (TV β = 2) runs of
    the same model, photo and layer from the inversion chapter."""
    keys = {(f.model, f.config.get("image"), i.get("layer")) for f in folders for i in items(f)}
    rows = []
    defaults = [f for f in everything if f.command == "invert" and chapter_of_invert(f) == "inversion"]
    for f in defaults:
        rows += [(prior_name(f.config), i.get("layer"), f.config.get("image"), i.get("error"), i.get("total_variation"))
                 for i in items(f) if (f.model, f.config.get("image"), i.get("layer")) in keys]
    for f in folders:
        for i in items(f):
            rows.append((prior_name(f.config), i.get("layer"), f.config.get("image"), i.get("error"), i.get("total_variation")))
    if not rows:
        return ""
    return table(["prior", "layer", "image", "error", "R_TV(x*) with its own β"], rows,
                 caption="Without a prior the error can be as low or lower, but the image is noise the network "
                         "ignores; the TV prior trades a little error for a natural image (lower TV).")


@renderer("maximize")
def render_maximize(folder: ResultFolder) -> Section:
    its = items(folder)
    layer = folder.config.get("layer")
    names = _class_names(folder) if layer == "logits" else None

    def label(i: dict[str, Any]) -> str:
        unit = str(i.get("unit"))
        name = f" {esc(names[int(unit)])}" if names and unit.isdigit() and int(unit) < len(names) else ""
        return f"unit {esc(unit)}{name}<br>×{fmt(i.get('ratio'), 1)} best photo"

    parts = [run_facts(folder, units=", ".join(str(i.get("unit")) for i in its), iterations=folder.config.get("iters"))]
    parts.append(strip(folder, label))
    parts.append("<p>One synthesised image per unit. Under each, the unit's value on the image divided by its "
                 "largest value over the sample photos: above 1, the image excites the unit more than any photo. "
                 "Shallow units give textures; class logits give object parts repeated across the canvas.</p>")
    rows = [(i.get("unit"), i.get("activation"), i.get("reference_max"), i.get("ratio"), i.get("seconds")) for i in its]
    parts.append(table(["unit", "activation at x*", "best sample photo", "ratio", "seconds (batch)"], rows))
    title = f"Activation maximisation: {folder.model}, {layer}"
    return Section("maximize", title, "".join(parts))


def _class_names(folder: ResultFolder) -> list[str] | None:
    """ImageNet class names for 1000-way logits (offline, torchvision metadata)."""
    if folder.model.startswith("hog"):
        return None
    try:
        from ..models import imagenet_class_names
        return imagenet_class_names()
    except Exception:  # names are a nicety; the numbers stand without them
        return None


@summary("maximize")
def maximize_summary(folders: list[ResultFolder], _all: list[ResultFolder]) -> str:
    """Per network and layer: the median ratio to the best photo (how far past natural images x* goes)."""
    rows = []
    for f in folders:
        ratios = sorted(i["ratio"] for i in items(f) if isinstance(i.get("ratio"), (int, float)))
        if ratios:
            rows.append((f.model, f.config.get("layer"), len(ratios), ratios[len(ratios) // 2], ratios[0], ratios[-1]))
    if len(rows) < 2:
        return ""
    return table(["network", "layer", "units", "median ratio", "min", "max"], rows,
                 caption="Per layer and per network: the unit's value on its image over its best value on a photo.")


@renderer("caricature")
def render_caricature(folder: ResultFolder) -> Section:
    its = items(folder)
    image = folder.config.get("image") or folder.result.get("image")
    parts = [run_facts(folder, image=image, iterations=folder.config.get("iters"))]
    parts.append(strip(folder, lambda i: f"{esc(i.get('layer'))}<br>gain ×{fmt(i.get('gain'), 2)}", lead=str(image)))
    parts.append("<p>The photo, then its caricature at each layer, started from the photo. The gain "
                 "⟨Φ(x0), Φ(x*)⟩ / ‖Φ(x0)‖² above 1 says the caricature holds more of what the layer saw: "
                 "shallow layers sharpen edges and colours, deeper ones repeat parts (eyes, cups).</p>")
    rows = [(i.get("layer"), i.get("gain"), i.get("total_variation"), i.get("iterations"), i.get("seconds")) for i in its]
    parts.append(table(["layer", "gain", "TV of x*", "iterations", "seconds"], rows))
    return Section("caricature", f"Caricatures: {folder.model}, {image}", "".join(parts))
