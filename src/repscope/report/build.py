"""Assemble and write the page: folders -> sections in the talk's order -> one HTML file, atomically.

Every folder is read and rendered before anything is written, so a missing or corrupt
``result.json`` leaves no partial page. A ``demo.json`` beside the folders (written by
``repscope demo``) adds the measured time of each stage.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from .. import io
from .folders import ResultFolder, find_result_folders
from .html import Section, esc, fmt, page, table
from .sections import CHAPTERS, SUMMARIES, render

__all__ = ["build_report", "render_page", "DEMO_FILE"]

DEMO_FILE = "demo.json"

INTRO = ("<p class=\"lead\">What does a visual representation encode? Each section below was made by one "
         "<code>repscope</code> command, shown with its exact command line; the words beside each figure say what "
         "it shows. Numbers labelled <em>published</em> are the papers' own, on their images and networks: "
         "indicative comparisons, not reproductions.</p>")


def _anchor(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "section"
    anchor, k = base, 2
    while anchor in used:
        anchor, k = f"{base}-{k}", k + 1
    used.add(anchor)
    return anchor


def render_page(folders: list[ResultFolder], *, title: str = "repscope report", demo: dict | None = None) -> str:
    """The HTML text of the report on ``folders`` (sections grouped by chapter, in the talk's order)."""
    sections: list[tuple[Section, ResultFolder]] = [(render(f), f) for f in folders]
    known = {key for key, _, _ in CHAPTERS}
    used: set[str] = set()
    chapters = []
    for key, chapter_title, words in CHAPTERS:
        mine = [(s, f) for s, f in sections if (s.chapter if s.chapter in known else "other") == key]
        if not mine:
            continue
        for s, _ in mine:
            s.anchor = _anchor(s.title, used)
        intro = f"<p>{words}</p>"
        if key in SUMMARIES:
            intro += SUMMARIES[key]([f for _, f in mine], folders)
        chapters.append((_anchor(chapter_title, used), chapter_title, intro, [s for s, _ in mine]))
    if demo:
        chapters.append((_anchor("timings", used), "How this page was made", demo_timings(demo), []))
    footer = (f"Made by <code>repscope report</code> on {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} from "
              f"{len(folders)} result folder{'s' if len(folders) != 1 else ''}. Self-contained: every picture is "
              "inlined; nothing is loaded from the network.")
    return page(title, INTRO, chapters, footer)


def demo_timings(demo: dict) -> str:
    """The demo's stages with their measured times (from ``demo.json``)."""
    stages = [s for s in demo.get("stages", []) if isinstance(s, dict)]
    rows = [(s.get("name"), s.get("folder"), s.get("seconds"), s.get("cpu_seconds")) for s in stages]
    total = demo.get("total_seconds")
    words = (f"<p><code>repscope demo{' --quick' if demo.get('quick') else ''}</code> ran {len(stages)} stages"
             + (f" in {fmt(total, 1)} s of wall-clock time" if isinstance(total, (int, float)) else "")
             + f" on {esc(demo.get('machine', 'this machine'))}.</p>")
    cpu = sum(s.get("cpu_seconds") or 0 for s in stages)
    words += (f"<p>CPU time of the stages: {fmt(cpu, 1)} s (on a shared machine the wall-clock time is longer "
              "than on an idle one).</p>" if cpu else "")
    return words + table(["stage", "folder", "wall-clock seconds", "CPU seconds (all threads)"], rows, digits=1)


def _demo_info(paths: list[str | os.PathLike]) -> dict | None:
    for p in paths:
        path = Path(p) / DEMO_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            return data if isinstance(data, dict) else None
    return None


def build_report(paths: list[str | os.PathLike], out: str | os.PathLike | None = None, *,
                 title: str = "repscope report") -> Path:
    """Write the report on the result folders ``paths`` to ``out``; returns the path. The default is
    ``report.html`` inside the first path when it is a folder of result folders (``repscope demo``'s),
    else ``./report.html``.

    Raises:
        ReportError: a folder is missing, holds no result, or its ``result.json`` / ``config.json`` is
            missing or corrupt (nothing is written then).
    """
    folders = find_result_folders(paths)
    text = render_page(folders, title=title, demo=_demo_info(paths))
    if out is None:
        first = Path(paths[0])
        out = Path("report.html") if (first / "result.json").exists() else first / "report.html"
    return io.write_text(out, text)
