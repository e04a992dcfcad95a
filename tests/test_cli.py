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
