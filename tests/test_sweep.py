"""Resumable sweeps: finished items survive an interruption and are skipped on resume."""

from __future__ import annotations

import json

import pytest

from repscope.errors import OutputError
from repscope.sweep import SweepRecord


def test_interrupted_then_resumed_sweep_equals_uninterrupted(tmp_path):
    def run(out, stop_after=None, resume=False):
        record = SweepRecord(out, {"iters": 3}, resume=resume)
        computed = []
        for i, key in enumerate(["a", "b", "c", "d"]):
            if record.done(key):
                continue
            if stop_after is not None and i == stop_after:
                raise KeyboardInterrupt
            computed.append(key)
            record.add(key, {"value": ord(key)})
        return record.finish(total=len(record.items)), computed

    full, _ = run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", stop_after=2)
    partial = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert partial["complete"] is False and list(partial["items"]) == ["a", "b"]
    resumed, computed = run(tmp_path / "cut", resume=True)
    assert computed == ["c", "d"]
    assert resumed == full


def test_resume_with_other_settings_is_refused(tmp_path):
    SweepRecord(tmp_path, {"iters": 3}).add("a", 1)
    with pytest.raises(OutputError, match="iters"):
        SweepRecord(tmp_path, {"iters": 4}, resume=True)
