"""Sections for ``detect`` folders: detections drawn on images, or AP / CorLoc tables with PR curves.

``detect IMAGE...`` folders hold ``NAME_detections.png`` and the top boxes per image; ``detect eval``
folders hold VOC07 average precision per class (11-point and all-point), mAP and CorLoc, and
``pr.png``. The talk's published detection numbers are printed beside them, labelled as such.
"""

from __future__ import annotations

from typing import Any

from . import published
from .folders import ResultFolder
from .html import Section, esc, figure, table
from .sections import renderer, run_facts, summary

__all__ = ["render_detect"]


@summary("detect")
def _published(_chapter: list[ResultFolder], _all: list[ResultFolder]) -> str:
    pub = published.DETECTION
    return ('<div class="published">' + table(["method (VOC 2007 test)", "%"], pub["rows"], digits=1,
                                                caption="Published: " + esc(pub["source"]))
            + "Different data (VOC 2007 against repscope's images), networks and training: indicative only.</div>")


def _images_part(folder: ResultFolder, entries: list[dict[str, Any]]) -> list[str]:
    parts = []
    for entry in entries:
        spec = str(entry.get("image", ""))
        stem = spec.split(":", 1)[-1].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        png = folder.png(f"{stem}_detections.png")
        dets = [d for d in entry.get("detections") or [] if isinstance(d, dict)][:5]
        if png is not None:
            parts.append(figure(png, f"{esc(spec)}: the highest-scoring boxes, labelled with class and score.",
                                max_width=640))
        if dets:
            parts.append(table(["class", "score", "box (x0, y0, x1, y1)"],
                               [(d.get("class"), d.get("score"), ", ".join(f"{v:.0f}" if isinstance(v, (int, float))
                                                                            else str(v) for v in d.get("box") or []))
                                for d in dets], caption=f"Top boxes on {esc(spec)}."))
    return parts


def _eval_part(folder: ResultFolder) -> list[str]:
    r = folder.result
    ap, ap_all = r.get("ap") or [], r.get("ap_all") or []
    corloc = (r.get("corloc") or {}).get("corloc") or []
    names = r.get("classes") or [f"class {k}" for k in range(len(ap))]
    rows = [(n, a, b, c) for n, a, b, c in zip(names, ap, ap_all + [None] * len(ap), corloc + [None] * len(ap))]
    rows.append(("mean", r.get("map"), r.get("map_all"), (r.get("corloc") or {}).get("mean")))
    parts = [table(["class", "AP (11-point)", "AP (all points)", "CorLoc"], rows,
                   caption=f"{esc(r.get('method'))} on {esc(r.get('data'))} ({r.get('images')} images): VOC07 average "
                           "precision at IoU 0.5 and CorLoc (images whose top box of a present class has IoU ≥ 0.5).")]
    pr = folder.png("pr.png")
    if pr is not None:
        parts.append(figure(pr, "Precision against recall per class; the area under each curve is its AP.",
                            max_width=760))
    if r.get("note"):
        parts.append(f'<p class="note">{esc(r["note"])}</p>')
    return parts


@renderer("detect")
def render_detect(folder: ResultFolder) -> Section:
    r = folder.result
    run = r.get("run") if isinstance(r.get("run"), dict) else {}
    target = folder.config.get("target") or run.get("target") or []
    mode = target[0] if isinstance(target, list) and target and target[0] in ("train", "eval") else "images"
    parts = [run_facts(folder, method=r.get("method"), mode=mode)]
    if mode == "eval":
        parts += _eval_part(folder)
    elif mode == "train":
        parts.append(table(["trained head", "value"], [("method", r.get("method")), ("trunk layer", r.get("layer")),
                                                     ("data", r.get("data")), ("images", r.get("images")),
                                                     ("classes", ", ".join(map(str, r.get("classes") or [])))]))
    else:
        entries = [e for e in r.get("images") or [] if isinstance(e, dict)] if isinstance(r.get("images"), list) else []
        parts += _images_part(folder, entries)
        parts.append("<p>Proposals scored by the network: a region is kept when the classifier is confident about "
                     "it; boxes overlapping a better one (non-maximum suppression) are dropped.</p>")
    return Section("detect", f"Detection ({mode}): {r.get('method', '')}, {folder.model}", "".join(parts))
