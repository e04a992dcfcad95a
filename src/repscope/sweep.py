"""Resumable multi-item runs: finished items are recorded in ``result.json`` as soon as they finish.

A sweep (many layers, many units, many images) writes ``result.json`` atomically after every item,
so an interrupted run (Ctrl-C, a crash, a killed job) keeps every finished item, and a run started
again with ``resume=True`` skips them. The record also stores the run's settings, and resuming with
different settings is refused rather than mixing results.

Example:
    >>> record = SweepRecord(out_dir, settings={"layer": "blocks.3", "iters": 200}, resume=True)  # doctest: +SKIP
    >>> for unit in units:                                                                         # doctest: +SKIP
    ...     if not record.done(str(unit)):
    ...         record.add(str(unit), run_one(unit))
    >>> record.finish()                                                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import OutputError
from .io import write_json

RESULT_FILE = "result.json"


class SweepRecord:
    """The finished items of one sweep, persisted in ``out_dir/result.json`` after each item."""

    def __init__(self, out_dir: str | Path, settings: dict[str, Any], resume: bool = False):
        self.path = Path(out_dir) / RESULT_FILE
        self.settings = json.loads(json.dumps(settings, default=str))
        self.items: dict[str, Any] = {}
        if resume and self.path.is_file():
            try:
                previous = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                raise OutputError(f"cannot resume: '{self.path}' is unreadable. Remove it or drop --resume.") from None
            if previous.get("settings") != self.settings:
                changed = sorted(k for k in set(self.settings) | set(previous.get("settings", {}))
                                 if self.settings.get(k) != previous.get("settings", {}).get(k))
                raise OutputError(f"cannot resume: settings differ from the interrupted run ({', '.join(changed)}). "
                                  "Use the same options, or a new --out.")
            self.items = dict(previous.get("items", {}))

    def done(self, key: str) -> bool:
        """Whether item ``key`` finished in this run or the one being resumed."""
        return key in self.items

    def add(self, key: str, item: Any) -> None:
        """Record a finished item and persist the record atomically."""
        self.items[key] = item
        self._write(complete=False)

    def finish(self, **summary: Any) -> dict[str, Any]:
        """Mark the sweep complete (with optional summary numbers); returns the final record."""
        return self._write(complete=True, **summary)

    def _write(self, complete: bool, **summary: Any) -> dict[str, Any]:
        record = {"settings": self.settings, "complete": complete, "items": self.items, **summary}
        write_json(self.path, record)
        return record
