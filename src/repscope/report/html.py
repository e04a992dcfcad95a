"""The self-contained HTML page: escaping, inlined PNGs, tables, sections, the page skeleton and CSS.

Every image is a downscaled PNG inlined as ``data:image/png;base64,...``; the CSS is inline; the page
loads nothing from the network (even the favicon is a ``data:`` URL), so it opens from ``file://``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["Section", "esc", "fmt", "png_data_uri", "img", "figure", "table", "page"]

#: the widest an inlined image is stored, in pixels (the page column is ~1100 px wide)
MAX_WIDTH = 1000
#: PNGs larger than this (bytes) are stored with a 256-colour palette instead, when that is smaller
QUANTIZE_ABOVE = 60_000


@dataclass
class Section:
    """One block of the page: its chapter key (see ``CHAPTERS``), title, anchor and HTML body."""

    chapter: str
    title: str
    body: str
    anchor: str = ""


def esc(text: object) -> str:
    """HTML-escape ``text`` (quotes too)."""
    return html.escape(str(text), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """A number as the page shows it: ``digits`` significant decimals, ints as is, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def png_data_uri(source: str | os.PathLike | np.ndarray | Image.Image, max_width: int = MAX_WIDTH
                 ) -> tuple[str, int, int]:
    """``(data URI, width, height)`` of a PNG file, ``(H, W, 3)`` uint8 array or Pillow image,
    downscaled (Lanczos) to at most ``max_width`` pixels wide, alpha flattened onto white."""
    if isinstance(source, np.ndarray):
        im = Image.fromarray(source)
    elif isinstance(source, Image.Image):
        im = source
    else:
        with Image.open(source) as opened:
            im = opened.copy()
    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, "white")
        im.paste(rgba, mask=rgba.split()[-1])
    im = im.convert("RGB")
    if im.width > max_width:
        im = im.resize((max_width, max(1, round(im.height * max_width / im.width))), Image.Resampling.LANCZOS)
    data = _png_bytes(im)
    if len(data) > QUANTIZE_ABOVE:  # noisy maps and photos: a 256-colour palette keeps the page small
        data = min(data, _png_bytes(im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)), key=len)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), im.width, im.height


def _png_bytes(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def img(source, alt: str, max_width: int = MAX_WIDTH) -> str:
    """An ``<img>`` with the picture inlined (see :func:`png_data_uri`)."""
    uri, w, h = png_data_uri(source, max_width)
    return f'<img src="{uri}" width="{w}" height="{h}" alt="{esc(alt)}" loading="eager">'


def figure(source, caption: str, alt: str | None = None, max_width: int = MAX_WIDTH, cls: str = "") -> str:
    """A ``<figure>``: the inlined picture and the words saying what it shows (HTML allowed in ``caption``)."""
    klass = f' class="{cls}"' if cls else ""
    return f"<figure{klass}>{img(source, alt or _strip(caption), max_width)}<figcaption>{caption}</figcaption></figure>"


def _strip(text: str) -> str:
    """Caption text without tags, shortened, for ``alt``."""
    import re
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return " ".join(plain.split())[:120]


def table(header: Sequence[str], rows: Iterable[Sequence[object]], caption: str = "", digits: int = 3) -> str:
    """An HTML table (header cells escaped; body cells formatted by :func:`fmt` and escaped)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c, digits))}</td>" for c in row) + "</tr>" for row in rows)
    cap = f'<p class="caption">{caption}</p>' if caption else ""
    return f'{cap}<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def meta(items: Sequence[tuple[str, object]]) -> str:
    """The run's facts (command, model, layer, seed, time) as a definition list."""
    cells = "".join(f"<dt>{esc(k)}</dt><dd>{v if str(k) == 'command' else esc(v)}</dd>" for k, v in items)
    return f'<dl class="meta">{cells}</dl>'


CSS = """
:root{--fg:#1d232b;--muted:#5b6573;--line:#d8dde3;--accent:#1f5fa8;--paper:#fffdf5}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:#f4f6f8}
main{max-width:1140px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.9rem;margin:.2em 0}h2{font-size:1.45rem;margin-top:2.2em;border-bottom:2px solid var(--line);padding-bottom:.2em}
h3{font-size:1.12rem;margin-top:1.8em}
a{color:var(--accent)}p.lead{font-size:1.05rem;color:var(--muted)}
nav.toc{background:#f7f9fb;border:1px solid var(--line);border-radius:6px;padding:8px 20px;margin:16px 0}
nav.toc ol{margin:.3em 0;padding-left:1.4em}nav.toc li{margin:.1em 0}
figure{margin:12px 0;max-width:100%}figure img{display:block;max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-size:.92rem;color:var(--muted);margin-top:4px;max-width:760px}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.row>figure{flex:1 1 300px;min-width:0}
.strip{display:flex;flex-wrap:wrap;gap:8px}.strip figure{flex:0 1 150px;margin:4px 0}
.strip figcaption{text-align:center;font-variant-numeric:tabular-nums}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:.88rem;margin:8px 0;
 background:#f7f9fb;border:1px solid var(--line);border-radius:6px;padding:8px 12px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
code{font:.86rem/1.4 ui-monospace,"DejaVu Sans Mono",monospace;background:#eef1f4;padding:1px 4px;border-radius:3px}
.table{overflow-x:auto;margin:10px 0}table{border-collapse:collapse;font-size:.9rem;font-variant-numeric:tabular-nums}
p.caption{font-size:.9rem;color:var(--muted);margin:14px 0 2px;max-width:860px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f0f3f6;white-space:normal;vertical-align:bottom}td:first-child,th:first-child{text-align:left}
.published{background:var(--paper);border-left:4px solid #c9a227;padding:6px 12px;margin:10px 0;font-size:.92rem}
.note{border-left:4px solid var(--accent);background:#f3f7fc;padding:6px 12px;margin:10px 0;font-size:.95rem}
section.result{margin-top:8px}
footer{color:var(--muted);font-size:.85rem;margin-top:40px;border-top:1px solid var(--line);padding-top:8px}
@media (max-width:640px){
 body{font-size:15px}main{padding:12px 12px 40px}h1{font-size:1.45rem}h2{font-size:1.2rem}
 .row>figure{flex:1 1 100%}.strip figure{flex:0 1 calc(50% - 8px)}
 dl.meta{grid-template-columns:1fr}dl.meta dd{margin-bottom:4px}
 th,td{padding:2px 5px;font-size:.8rem}
}
"""


def page(title: str, intro: str, chapters: list[tuple[str, str, str, list[Section]]], footer: str = "") -> str:
    """The whole document. ``chapters``: ``(anchor, title, intro HTML, sections)``, in page order."""
    toc = []
    body = []
    for anchor, chapter_title, chapter_intro, sections in chapters:
        sub = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in sections)
        toc.append(f'<li><a href="#{anchor}">{esc(chapter_title)}</a>' + (f"<ol>{sub}</ol>" if sub else "") + "</li>")
        parts = [f'<h2 id="{anchor}">{esc(chapter_title)}</h2>', chapter_intro]
        parts += [f'<section class="result" id="{s.anchor}"><h3>{esc(s.title)}</h3>{s.body}</section>' for s in sections]
        body.append("".join(parts))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head>"
            f"<body><main><h1>{esc(title)}</h1>{intro}"
            f"<nav class=\"toc\"><strong>Contents</strong><ol>{''.join(toc)}</ol></nav>"
            f"{''.join(body)}<footer>{footer}</footer></main></body></html>\n")

