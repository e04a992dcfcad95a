"""Sections for ``stitch`` (Franken-networks) and ``similarity`` (CKA heat-maps) folders.

Stitch: per stage pair, the top-1 agreement of B with A's features through a naive (identity),
ridge-regression (direct matching) and task-trained stitch E, held-out error ‖Φ_B − EΦ_A‖² / ‖Φ_B‖²
and linear / debiased CKA, beside Lenc & Vedaldi's published AlexNet stitching errors (labelled).
Similarity: the CKA matrix as an HTML table and the command's heat-map.
"""

from __future__ import annotations

from typing import Any

from . import published
from .folders import ResultFolder
from .html import Section, esc, figure, table
from .sections import renderer, run_facts

__all__ = ["render_stitch", "render_similarity"]


def _pairs(folder: ResultFolder) -> list[dict[str, Any]]:
    pairs = folder.result.get("pairs")
    if not isinstance(pairs, list):
        items = folder.result.get("items")
        pairs = list(items.values()) if isinstance(items, dict) else []
    return [p for p in pairs if isinstance(p, dict)]


def _get(pair: dict[str, Any], fit: str, key: str):
    value = pair.get(fit)
    return value.get(key) if isinstance(value, dict) else None


@renderer("stitch")
def render_stitch(folder: ResultFolder) -> Section:
    pairs = _pairs(folder)
    c = folder.config
    parts = [run_facts(folder, **{"from": c.get("source"), "to": c.get("target"), "fit": c.get("fit_kind"),
                                  "crops": f"{pairs[0].get('n_fit')} fit / {pairs[0].get('n_test')} held-out"
                                  if pairs else None})]
    rows = [(p.get("from"), p.get("to"), _get(p, "naive", "agreement"), _get(p, "ridge", "agreement"),
             _get(p, "task", "agreement"), _get(p, "ridge", "error"), _get(p, "task", "error"),
             _get(p, "cka", "linear"), _get(p, "cka", "debiased")) for p in pairs]
    parts.append(table(["from (A)", "to (B)", "agreement naive", "agreement ridge", "agreement task", "error ridge",
                        "error task", "CKA linear", "CKA debiased"], rows,
                       caption="Top-1 agreement of the Franken-network (A up to its layer, the stitch E, B after its "
                               "layer) with B on held-out crops; naive = no stitch (E = I), ridge = E fitted by least "
                               "squares to Φ_B, task = E trained through the rest of B. Error: held-out "
                               "‖Φ_B − EΦ_A‖² / ‖Φ_B‖². High agreement = the representations are equivalent up to E."))
    plot = folder.png("stitch.png")
    if plot is not None:
        parts.append(figure(plot, "Agreement of the three stitches and CKA against depth: early stages stitch with "
                                  "little loss, as in Lenc &amp; Vedaldi.", max_width=900))
    pub = published.STITCHING
    parts.append('<div class="published">' + table(pub["header"], pub["rows"], caption="Published: " + esc(pub["source"]))
                 + "Their measure is top-1 <em>error</em> on ImageNet labels of an AlexNet stitch, ours the "
                   "<em>agreement</em> with network B on crops of the sample photos: compare the trend with depth, "
                   "not the values.</div>")
    source = c.get("source") or (pairs[0].get("from") if pairs else "A")
    target = c.get("target") or (pairs[0].get("to") if pairs else "B")
    title = f"Stitching: {source} → {target}"
    return Section("stitch", title, "".join(parts))


@renderer("similarity")
def render_similarity(folder: ResultFolder) -> Section:
    r = folder.result
    models = [str(m) for m in r.get("models") or []]
    rows_a, cols_b = list(r.get("layers_a") or []), list(r.get("layers_b") or [])
    matrix = r.get("cka") or []
    a = models[0] if models else "A"
    b = models[-1] if models else "B"
    parts = [run_facts(folder, crops=f"{r.get('crops')} crops of {r.get('size')} px")]
    heat = folder.png("cka.png")
    if heat is not None:
        parts.append(figure(heat, f"Linear CKA between every stage of {esc(a)} (rows) and of {esc(b)} (columns): "
                                  "bright = similar. A bright diagonal means stages at the same depth compute "
                                  "similar representations; CKA decays with the distance in depth.", max_width=640))
    if matrix and len(matrix) == len(rows_a):
        parts.append(table([f"{a} \\ {b}", *cols_b], [(name, *row) for name, row in zip(rows_a, matrix)], digits=2,
                           caption="The same matrix as numbers (minibatch linear CKA, Nguyen et al. 2021)."))
    parts.append(f'<p class="published">Published (in words): {esc(published.CKA_FINDING)}</p>')
    return Section("similarity", f"CKA: {' vs '.join(models)}", "".join(parts))
