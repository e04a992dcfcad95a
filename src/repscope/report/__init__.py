"""``repscope report``: one self-contained HTML page from the folders repscope commands wrote.

Each folder's ``config.json`` names its command; a renderer per command (:mod:`.sections`
registry: :mod:`.preimage`, :mod:`.analysis`, :mod:`.equivalence`, :mod:`.detection`) turns it into a section with its pictures (inlined,
downscaled PNGs), HTML tables, the exact command, model, layer, seed and time, and the papers'
published numbers beside ours where there are any (:mod:`.published`). Sections follow the talk's
order (:data:`.sections.CHAPTERS`); unknown commands get a generic section.

Example:
    >>> from repscope.report import build_report                       # doctest: +SKIP
    >>> build_report(["repscope-results/invert"], "report.html")       # doctest: +SKIP
"""

from __future__ import annotations

from . import analysis, detection, equivalence, preimage  # noqa: F401  (register their renderers)
from .build import build_report, render_page
from .folders import ReportError, ResultFolder, find_result_folders, load_folder
from .sections import CHAPTERS, RENDERERS, renderer, summary

__all__ = ["build_report", "render_page", "ReportError", "ResultFolder", "find_result_folders", "load_folder",
           "CHAPTERS", "RENDERERS", "renderer", "summary"]
