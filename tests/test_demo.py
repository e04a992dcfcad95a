"""``repscope demo``: the talk's stages, resumable, then the report.

The default suite runs the demo machinery on two tiny stages (resume, refusal of a non-empty
folder, quiet output); the full ``repscope demo --quick`` runs once in the slow suite, which checks
the page as ``tests/test_report.py`` does, section by section, with a real browser.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from repscope.cli import main
from repscope.report import demo as demo_module
from repscope.report.demo import Stage, available_commands, stages
from test_report import check_in_browser, check_page

TINY = [
    Stage("invert", ("invert", "sample:chelsea", "--layer", "blocks.0", "--iters", "2"), 1),
    Stage("hog", ("invert", "sample:coffee", "--model", "hog", "--iters", "2"), 1),
]


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(demo_module, "stages", lambda quick=False: list(TINY))
    calls = []
    real = demo_module.run_command

    def counting(argv, *, show_bars):
        calls.append(argv)
        return real(argv, show_bars=show_bars)

    monkeypatch.setattr(demo_module, "run_command", counting)
    return calls


def test_demo_prints_only_the_report_path_when_not_a_terminal(tiny, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out / 'report.html'}\n" and captured.err == ""
    state = json.loads((out / "demo.json").read_text())
    assert state["complete"] and [s["folder"] for s in state["stages"]] == ["01-invert", "02-hog"]
    assert all(s["seconds"] > 0 for s in state["stages"]) and state["total_seconds"] >= sum(
        s["seconds"] for s in state["stages"]) - 1e-6
    page, images = check_page(out / "report.html")
    text = " ".join(page.text)
    # each stage's exact command line, its numbers, and the demo's own timing table
    for stage in TINY:
        assert "repscope " + " ".join(stage.argv) in text
    error = json.loads((out / "01-invert" / "result.json").read_text())["items"]["blocks.0"]["error"]
    assert f"{error:.3f}" in text and "How this page was made" in text and len(images) >= 4


def test_demo_resume_skips_finished_stages(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    real = demo_module.run_command

    def interrupted(argv, *, show_bars):
        if "hog" in argv:
            raise KeyboardInterrupt
        return real(argv, show_bars=show_bars)

    monkeypatch.setattr(demo_module, "run_command", interrupted)
    assert main(["demo", "--out", str(out)]) == 130
    assert not (out / "report.html").exists()
    first = (out / "01-invert" / "config.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(out)]) == 2  # not empty: refused without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--quick", "--resume"]) == 2  # started without --quick
    assert "without --quick" in capsys.readouterr().err

    calls = []
    monkeypatch.setattr(demo_module, "run_command", lambda argv, *, show_bars: (calls.append(argv),
                                                                                 real(argv, show_bars=show_bars)))
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    assert len(calls) == 1 and "hog" in calls[0]  # only the unfinished stage ran
    assert (out / "01-invert" / "config.json").stat().st_mtime_ns == first
    state = json.loads((out / "demo.json").read_text())
    assert [s["name"] for s in state["stages"]] == ["invert", "hog"] and (out / "report.html").is_file()


def test_demo_stages_follow_the_talk_and_use_existing_commands():
    have = available_commands()
    for quick in (False, True):
        plan = stages(quick)
        commands = [s.argv[0] for s in plan]
        assert set(commands) <= have
        order = ["invert", "maximize", "caricature", "saliency", "equivariance"]
        assert [c for c in dict.fromkeys(commands) if c in order] == order
        assert any("--random-init" in s.argv and "torchvision:vgg" in " ".join(s.argv) for s in plan)
        assert {m for s in plan for m in s.argv if m.startswith("efficientnet_lite")} >= {
            "efficientnet_lite1", "efficientnet_lite2"}
        assert any(w.startswith("hog") for s in plan for w in s.argv)
        assert len({s.name for s in plan}) == len(plan)
    assert len(stages(True)) <= len(stages(False))


@pytest.mark.slow
def test_demo_quick_makes_the_whole_report(tmp_path, capsys):
    out = tmp_path / "demo"
    began = time.perf_counter()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    seconds = time.perf_counter() - began
    path = Path(capsys.readouterr().out.strip())
    assert path == out / "report.html"
    assert path.stat().st_size <= 15e6
    page, images = check_page(path)
    text = " ".join(page.text)
    state = json.loads((out / "demo.json").read_text())
    assert len(state["stages"]) == len(stages(True))
    for stage in state["stages"]:  # every stage's section is there with its command
        assert " ".join(stage["command"][:3]) in text, stage["name"]
    for title in ("Inversion: what", "The image prior", "Activation maximisation", "Caricatures",
                  "Backpropagation:", "HOG: a hand", "Equivariance:", "How this page was made"):
        assert title in text
    assert "same stripe pattern for every photo" in text and "random" in text and "66.20%" in text
    assert len(images) >= 30
    check_in_browser(path, tmp_path / "wide.png", 1280)
    check_in_browser(path, tmp_path / "phone.png", 390)
    print(f"repscope demo --quick: {seconds:.0f} s on this machine")


def test_demo_resume_reruns_a_stage_whose_command_changed(tiny, tmp_path, monkeypatch):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0 and len(tiny) == 2
    changed = [Stage("invert", ("invert", "sample:chelsea", "--layer", "blocks.0", "--iters", "3"), 1), TINY[1]]
    monkeypatch.setattr(demo_module, "stages", lambda quick=False: list(changed))
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    assert len(tiny) == 3 and "3" in tiny[2] and "--overwrite" in tiny[2]  # only the changed stage, in place
    item = json.loads((out / "01-invert" / "result.json").read_text())["items"]["blocks.0"]
    assert item["iterations"] == 3
