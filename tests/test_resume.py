"""Ctrl-C in the middle of a sweep keeps the finished items; --resume completes it identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: a cheap first item, then seconds of work: the SIGINT lands mid-sweep even on a loaded machine
LAYERS = ["conv_stem", "blocks.1", "blocks.2", "blocks.3", "blocks.4"]


def _command(out: Path, *extra: str) -> list[str]:
    layers = [arg for layer in LAYERS for arg in ("--layer", layer)]
    return [sys.executable, "-m", "repscope", "invert", "sample:chelsea", *layers, "--iters", "30", "--seed", "3",
            "--device", "cpu", "--quiet", "--out", str(out), *extra]


def _items(out: Path) -> dict:
    items = json.loads((out / "result.json").read_text())["items"]
    return {key: {k: v for k, v in item.items() if k != "seconds"} for key, item in items.items()}


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


def _finished_items(out: Path) -> int:
    try:
        return len(json.loads((out / "result.json").read_text())["items"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_then_resume_equals_uninterrupted(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    done = subprocess.run(_command(full), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    # a shell's background job (e.g. `.ci/run &`) inherits SIGINT ignored; the child gets Ctrl-C back
    proc = subprocess.Popen(_command(cut), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while _finished_items(cut) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err and "--resume" in err
    partial = _items(cut)
    assert 1 <= len(partial) < len(LAYERS)
    assert json.loads((cut / "result.json").read_text())["complete"] is False
    assert not [p.name for p in cut.iterdir() if p.name.startswith(".")]  # no temporary files left

    refused = subprocess.run(_command(cut), env=_env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr  # a finished item is never lost silently

    resumed = subprocess.run(_command(cut, "--resume"), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _items(cut) == _items(full)
    assert json.loads((cut / "result.json").read_text())["complete"] is True
    for name in [f"invert_{layer}.png" for layer in LAYERS] + ["grid.png"]:
        assert (cut / name).read_bytes() == (full / name).read_bytes(), name
