"""The command line: results, JSON, and one-line errors with non-zero exit status."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys


from repscope.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_json(capsys):
    code, out, _ = _run(capsys, "classify", "sample:chelsea", "sample:coffee", "--top", "3", "--json")
    assert code == 0
    result = json.loads(out)
    assert [r["image"] for r in result] == ["sample:chelsea", "sample:coffee"]
    assert [r["top"][0]["index"] for r in result] == [285, 967]
    assert result[1]["top"][0]["name"] == "espresso"
    probs = [t["prob"] for t in result[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1


def test_layers_and_check_json(capsys):
    code, out, _ = _run(capsys, "layers", "torchvision:alexnet", "--random-init", "--json")
    assert code == 0
    table = {r["name"]: r for r in json.loads(out)["layers"]}
    assert table["features.0"]["shape"] == [64, 55, 55] and table["features.0"]["receptive_field"] == 11
    code, out, _ = _run(capsys, "check", "torchvision:alexnet", "--random-init", "--json")
    assert code == 0
    assert {f["kind"] for f in json.loads(out)["findings"]} == {"inplace"}


def _one_line_error(capsys, *argv, expect):
    code, out, err = _run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repscope: error:"), err
    assert "Traceback" not in err
    assert expect in lines[0]


def test_bad_inputs_give_one_line_errors(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": print}))
    _one_line_error(capsys, "classify", str(tmp_path / "missing.png"), expect="does not exist")
    _one_line_error(capsys, "classify", str(corrupt), expect="corrupt")
    _one_line_error(capsys, "classify", "sample:chelsea", "--model", "resnet50", expect="unknown model")
    _one_line_error(capsys, "layers", "torchvision:alexnet", "--weights", str(evil), expect="refused")
    _one_line_error(capsys, "classify", "sample:chelsea", "--top", "0", expect="out of range")
    _one_line_error(capsys, "classify", "sample:chelsea", "--device", "cuda:7", expect="--device")


def test_console_entry_point_end_to_end():
    proc = subprocess.run([sys.executable, "-m", "repscope", "classify", "sample:coffee", "--top", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "967" in proc.stdout and "espresso" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "repscope", "classify", "/no/such/file.png"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_subcommands_are_exactly_the_modules_named_after_them(monkeypatch):
    import argparse
    import pkgutil

    import repscope.cli as cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == cli.SUBCOMMANDS  # one command per module, in the listed order
    with_register = {m.name for m in pkgutil.iter_modules(cli.__path__)
                     if hasattr(__import__(f"repscope.cli.{m.name}", fromlist=["_"]), "register")}
    assert with_register == set(cli.SUBCOMMANDS)  # no command module left out of the tuple
    monkeypatch.setattr(cli, "SUBCOMMANDS", cli.SUBCOMMANDS + ("no_such_command",))
    import pytest

    with pytest.raises(ModuleNotFoundError, match="no_such_command"):  # an error, never a silent skip
        cli.build_parser()


def test_random_weights_follow_seed_and_leave_the_global_generator_alone():
    import torch

    from repscope.cli import build_parser, common

    before = torch.random.get_rng_state()
    loads = [common.load_model(build_parser().parse_args(["classify", "x", "--model", "torchvision:alexnet",
                                                          "--random-init", "--seed", s])) for s in ("3", "3", "4")]
    assert torch.equal(torch.random.get_rng_state(), before)
    w = [m.module.features[0].weight for m in loads]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_plots_draw_without_pyplot_or_a_backend_switch(tmp_path):
    import sys
    from types import SimpleNamespace

    import matplotlib

    from repscope import images
    from repscope.plots import equivariance_plot, loss_curves

    backend = matplotlib.get_backend()
    pyplot = "matplotlib.pyplot" in sys.modules
    figures = sys.modules["matplotlib.pyplot"].get_fignums() if pyplot else None
    loss = loss_curves({"a": [1.0, 0.5, 0.25], "b": [2.0, 1.0, 0.9]}, tmp_path / "loss.png", title="t")
    rows = [SimpleNamespace(layer=f"l{i}", error={"v": 0.1 * i, "w": 0.2}, agreement={"v": 0.5, "w": 0.9})
            for i in range(3)]
    eq = equivariance_plot(rows, ["v", "w"], tmp_path / "eq.png")
    assert images.load_image(loss).shape == (3, 400, 600) and images.load_image(eq).shape == (3, 440, 1210)
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == pyplot  # not imported by the plots
    if pyplot:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == figures


def test_thread_count_explicit_then_environment_then_idle_cores(monkeypatch):
    import pytest
    import torch

    from repscope import threads
    from repscope.errors import RepscopeError

    monkeypatch.setenv("REPSCOPE_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.resolve_threads(5) == 5 and threads.resolve_threads() == 3
    monkeypatch.delenv("REPSCOPE_THREADS")
    assert threads.resolve_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = min(threads.physical_cores(), len(__import__("os").sched_getaffinity(0)))
    assert threads.default_threads(load=0.0) == cores and threads.default_threads(load=cores + 7.5) == 1
    assert threads.default_threads(load=cores - 0.5) == 1  # one busy core of others' work leaves the rest
    monkeypatch.setenv("REPSCOPE_THREADS", "zero")
    with pytest.raises(RepscopeError, match="REPSCOPE_THREADS must be a whole number"):
        threads.resolve_threads()
    most = threads.MAX_PER_CORE * __import__("os").cpu_count()
    assert threads.resolve_threads(most) == most
    with pytest.raises(RepscopeError, match=f"Use at most {most}"):
        threads.resolve_threads(most + 1)
    before = torch.get_num_threads()
    with threads.torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_threads_option_on_every_command(capsys):
    import argparse

    import torch

    from repscope.cli import build_parser, main

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name, p in sub.choices.items() if "--threads" not in p._option_string_actions
               and name not in ("report", "demo")]  # these two run other commands, which take the default
    assert missing == []
    before = torch.get_num_threads()
    assert main(["models", "--threads", "1", "--json"]) == 0 and torch.get_num_threads() == before
    capsys.readouterr()
    assert main(["models", "--threads", "0"]) == 2
    assert capsys.readouterr().err.startswith("repscope: error: --threads must be a whole number >= 1")
