"""Sections for ``saliency`` (gradient / DeConvNet / guided) and ``equivariance`` folders.

Saliency: the side-by-side grid, the top units' maps, and selectivity / bottleneck numbers. The
chapter summary measures, from the saved signed maps, how alike one method's maps are across photos:
the cosine of the centred signed-RGB maps, cos(a, b) = ⟨a − ½, b − ½⟩ / (‖a − ½‖ ‖b − ½‖). DeConvNet on a
network without max-pooling gets no image information back (its rule max(g, 0) ignores the forward
masks, and there are no switches), so its map is the same for every photo (cosine ≈ 1).
"""

from __future__ import annotations

import itertools
import numpy as np

from .folders import ResultFolder
from .html import Section, esc, figure, table
from .sections import renderer, run_facts, summary

__all__ = ["render_saliency", "render_equivariance", "map_cosines"]

METHOD_WORDS = {
    "gradient": "the plain gradient (Simonyan et al.)",
    "deconvnet": "DeConvNet (Zeiler &amp; Fergus)",
    "guided": "guided backprop (Springenberg et al.)",
}


def has_max_pooling(folder: ResultFolder) -> bool:
    """Whether the folder's network has max-pooling (VGG, AlexNet) — EfficientNet-Lite and HOG do not."""
    name = folder.model.lower()
    return any(k in name for k in ("vgg", "alexnet", "resnet", "googlenet", "inception"))


def bottleneck_words(folder: ResultFolder) -> str:
    """What the DeConvNet picture means on this network."""
    if not has_max_pooling(folder):
        return ("<p class=\"note\">On this network DeConvNet draws the same stripe pattern for every photo. That is "
                "correct, not a bug: without max-pooling there are no switches, and DeConvNet's rule max(g, 0) ignores "
                "the forward pass's ReLU masks, so nothing of the image reaches its map — the talk's bottleneck point at "
                "its extreme. Compare the max-pooling network below, whose switches alone carry the picture.</p>")
    if folder.config.get("random_init"):
        return ("<p class=\"note\">A max-pooling network with <em>random</em> weights: whatever image structure the "
                "DeConvNet and guided maps show comes from the forward pass's pooling switches and ReLU masks, not "
                "from anything learned (Mahendran &amp; Vedaldi, ECCV 2016).</p>")
    return ""


@renderer("saliency")
def render_saliency(folder: ResultFolder) -> Section:
    r = folder.result
    methods = list(r.get("methods") or [])
    target = (f"class {r.get('unit')}" + (f" ({r['class_name']})" if r.get("class_name") else "")
              if r.get("layer") == "logits" else f"{r.get('layer')} unit {r.get('unit')} ({r.get('at')})")
    parts = [run_facts(folder, image=r.get("image"), target=target, rectifiers=r.get("rectifiers"))]
    grid = folder.png("grid.png")
    if grid is not None:
        parts.append(figure(grid, "Rows: " + ", ".join(METHOD_WORDS.get(m, esc(m)) for m in methods)
                            + ". Columns: the photo, the signed map (grey = 0), |map| (max over colour channels), "
                              "and the map over the photo. Same image, same target, only the backward rule differs.",
                            max_width=760))
    parts.append(bottleneck_words(folder))
    sel, bott = r.get("selectivity") or {}, r.get("bottleneck") or {}
    rows = [(m, sel.get(m), (bott.get(m) or {}).get("random"), (bott.get(m) or {}).get("constant")) for m in methods]
    parts.append(table(["method", "selectivity", "bottleneck: random signal", "bottleneck: constant signal"], rows,
                       caption=f"Selectivity over the top {len(r.get('selectivity_units') or [])} units "
                               f"({', '.join(map(str, (r.get('selectivity_units') or [])[:8]))}): mean pairwise "
                               "correlation of their maps, low = neuron selective. Bottleneck: correlation of this "
                               "map with the map from a random / constant top signal, high = the unit does not matter."))
    for m in methods:
        units = folder.png(f"units_{m}.png")
        if units is not None:
            parts.append(figure(units, f"{METHOD_WORDS.get(m, esc(m))}: maps of the top units. Alike maps = a "
                                       "method that does not tell the units apart.", max_width=900))
    title = f"Backprop maps: {folder.model}" + (" (random weights)" if folder.config.get("random_init") else "") \
        + f", {r.get('image')}, {target}"
    return Section("saliency", title, "".join(parts))


def _signed(folder: ResultFolder, method: str) -> np.ndarray | None:
    from PIL import Image

    png = folder.png(f"saliency_{method}.png")
    if png is None:
        return None
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64).ravel() / 255.0 - 0.5


def map_cosines(folders: list[ResultFolder], method: str) -> list[float]:
    """Pairwise cosines of ``method``'s centred signed maps across ``folders`` (same map size)."""
    maps = [m for m in (_signed(f, method) for f in folders) if m is not None]
    out = []
    for a, b in itertools.combinations(maps, 2):
        if a.shape == b.shape:
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            out.append(float(a @ b / denom) if denom > 0 else 0.0)
    return out


@summary("saliency")
def saliency_summary(folders: list[ResultFolder], _all: list[ResultFolder]) -> str:
    """Per network: how alike each method's maps are across the photos it was run on."""
    groups: dict[tuple, list[ResultFolder]] = {}
    for f in folders:
        key = (f.model, bool(f.config.get("random_init")), f.result.get("layer"))
        groups.setdefault(key, []).append(f)
    rows = []
    for (model, random, layer), group in groups.items():
        photos = sorted({str(f.result.get("image")) for f in group})
        if len(photos) < 2:
            continue
        cos = {m: map_cosines(group, m) for m in ("gradient", "deconvnet", "guided")}
        rows.append((model + (" (random)" if random else ""), layer, ", ".join(photos),
                     *[min(c) if c else None for c in cos.values()]))
    if not rows:
        return ""
    return table(["network", "target layer", "photos", "gradient", "deconvnet", "guided"], rows,
                 caption="Smallest cosine between one method's signed maps for different photos (1 = the same map "
                         "whatever the photo). DeConvNet on EfficientNet-Lite is ≈ 1: with no max-pooling, no image "
                         "information reaches it.")


@renderer("equivariance")
def render_equivariance(folder: ResultFolder) -> Section:
    r = folder.result
    rows_in = [row for row in r.get("layers") or [] if isinstance(row, dict)]
    variants = list((rows_in[0].get("error") or {}).keys()) if rows_in else []
    parts = [run_facts(folder, transform=r.get("transform"), kernel=r.get("kernel"),
                       crops=f"{rows_in[0].get('n_fit')} fit / {rows_in[0].get('n_test')} held-out, "
                             f"{r.get('size')} px" if rows_in else None)]
    label = (lambda name: "HOG" if name == "logits" else name) if folder.model.startswith("hog") else (lambda n: n)
    err_rows = [(label(row.get("layer")), _int(row.get("stride")), *[row["error"].get(v) for v in variants]) for row in rows_in]
    parts.append(table(["layer", "stride", *[f"error {v}" for v in variants]], err_rows,
                       caption="Held-out error Σ‖Φ(gx) − M_g Φ(x)‖² / Σ‖Φ(gx)‖²: invariant (M_g = I), warp (only the "
                               "feature grid is transformed), permutation (plus the best channel permutation), "
                               "learned (plus a learned channel map). Near 0 = equivariant."))
    if rows_in and rows_in[0].get("agreement"):
        keys = list(rows_in[0]["agreement"].keys())
        keys = ["uncompensated"] + [k for k in keys if k not in ("uncompensated", "invariant")]
        agr_rows = [(row.get("layer"), *[row["agreement"].get(k) for k in keys]) for row in rows_in]
        names = {"learned": "learned (ridge)", "task": "learned (task)"} if "task" in keys else {}
        parts.append(table(["layer", *[f"agreement {names.get(k, k)}" for k in keys]], agr_rows,
                           caption="Top-1 agreement with the network on x when the rest of the network reads Φ(gx) "
                                   "unchanged (uncompensated) or mapped back by each fitted M_g"
                                   + (" (learned (task): Ŵ trained through the rest of the network)." if names else ".")))
    if rows_in and rows_in[0].get("task"):
        cmp_rows = [(row.get("layer"), row["compensation_error"].get("learned"), row["compensation_error"].get("task"),
                     row["task"].get("best_step"), row["task"].get("steps")) for row in rows_in]
        parts.append(table(["layer", "Ŵ error ridge", "Ŵ error task", "task best step", "task steps"], cmp_rows,
                           caption="Held-out error of the compensating map, Σ‖Φ(x) − Ŵ g'⁻¹ Φ(gx)‖² / Σ‖Φ(x)‖²: "
                                   "ridge regression against the same map trained on the task (started from ridge)."))
    exact = [label(row.get("layer")) for row in rows_in if (row.get("error") or {}).get("permutation", 1) < 1e-3]
    if exact:
        parts.append(f'<p class="note">At {esc(", ".join(map(str, exact)))} the best channel permutation predicts '
                     f"Φ(gx) exactly: {esc(r.get('transform'))} only permutes channels there (for HOG, rotating the "
                     "image by 90° permutes its orientation bins).</p>")
    plot = folder.png("equivariance.png")
    if plot is not None and len(rows_in) > 1:
        agreement = "; right: top-1 agreement" if rows_in[0].get("agreement") else ""
        parts.append(figure(plot, f"Left: held-out error against depth, one line per map{agreement}. A learned map "
                                  "far below the invariant line means the layer is equivariant, not invariant, to "
                                  "the transformation.", max_width=900))
    return Section("equivariance", f"Equivariance to {r.get('transform')}: {folder.model}", "".join(parts))



def _int(value):
    """A stride such as 2.0 as 2 (strides of HOG and CNN layers are whole pixels)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
