"""Nothing in ``result.json`` is trusted (issue 24, class 3): schema, paths inside --out, input hashes,
one writer per folder, --overwrite removes only what repscope wrote."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from repscope.cli import main
from repscope.errors import OutputError
from repscope.sweep import LOCK_FILE, Item, SweepRecord, run_sweep


def _record(out, items, **extra):
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"settings": {"k": 1}, "complete": False, "items": items, **extra}))


@pytest.mark.parametrize("record, problem", [
    ([1, 2], "a JSON list, not an object"),
    ({"settings": {"k": 1}, "complete": False}, "no 'items'"),
    ({"settings": [], "complete": False, "items": {}}, "'settings' is not a dict"),
    ({"settings": {"k": 1}, "complete": "yes", "items": {}}, "'complete' is not a bool"),
    ({"settings": {"k": 1}, "complete": False, "items": {"a": {"file": 3}}}, "item 'a': 'file' is 3"),
    ({"settings": {"k": 1}, "complete": False, "items": {"a": {"error": "big"}}}, "item 'a': 'error' is \"big\""),
    ({"settings": {"k": 1}, "complete": False, "items": {"a": {"loss_curve": [1.0, "x"]}}}, "non-number"),
    ({"settings": {"k": 1}, "complete": False, "items": {"a": {"key": "b"}}}, "says its key is 'b'"),
    ({"settings": {"k": 1}, "complete": False, "items": {}, "failed": {"a": 7}}, "'failed' entry"),
])
def test_malformed_record_is_one_line_naming_the_file(tmp_path, record, problem):
    (tmp_path / "result.json").write_text(json.dumps(record))
    with pytest.raises(OutputError) as info:
        SweepRecord(tmp_path, {"k": 1}, resume=True)
    message = str(info.value)
    assert "\n" not in message and f"'{tmp_path / 'result.json'}'" in message and problem in message, message
    assert "--overwrite" in message


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.png", "sub/../../outside.png", ""])
def test_a_path_outside_out_is_refused(tmp_path, name):
    (tmp_path / "outside.png").write_bytes(b"secret")
    _record(tmp_path / "out", {"a": {"file": name}})
    with pytest.raises(OutputError, match="outside the output folder"):
        SweepRecord(tmp_path / "out", {"k": 1}, resume=True)


def test_a_symlink_leaving_out_is_refused_one_inside_is_followed(tmp_path):
    (tmp_path / "outside.png").write_bytes(b"secret")
    out = tmp_path / "out"
    _record(out, {"a": {"file": "link.png"}, "b": {"files": {"map": "inner.png"}}})
    (out / "real.png").write_bytes(b"x")
    (out / "inner.png").symlink_to(out / "real.png")
    (out / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(OutputError, match="item 'a'.*'link.png', outside"):
        SweepRecord(out, {"k": 1}, resume=True)
    (out / "link.png").unlink()
    (out / "link.png").symlink_to(out / "real.png")
    assert list(SweepRecord(out, {"k": 1}, resume=True).items) == ["a", "b"]


def _save(out):
    def write(key, value):
        (out / f"{key}.txt").write_text(str(value))
        return {"key": key, "value": value, "file": f"{key}.txt"}
    return write


def _double(shared, specs):
    return [2 * s for s in specs]


def test_an_item_whose_file_is_missing_is_computed_again(tmp_path):
    items = [Item(str(s), s) for s in (1, 2, 3)]
    run_sweep(tmp_path, {}, items, _double, None, write=_save(tmp_path)).finish()
    (tmp_path / "2.txt").unlink()
    computed = []

    def work(shared, specs):
        computed.extend(specs)
        return _double(shared, specs)

    record = run_sweep(tmp_path, {}, items, work, None, write=_save(tmp_path), resume=True)
    assert computed == [2] and list(record.items) == ["1", "2", "3"]
    assert (tmp_path / "2.txt").read_text() == "4"


def test_the_lock_is_released_and_its_file_and_empty_folder_removed(tmp_path):
    out = tmp_path / "new" / "out"

    def work(shared, specs):
        assert (out / LOCK_FILE).read_text().strip().isdigit()  # held (with our pid) while computing
        raise OutputError("a request error")

    with pytest.raises(OutputError):
        run_sweep(out, {}, [Item("a", 1)], work, None, write=_save(out))
    assert not (tmp_path / "new").exists()  # the folders the lock created went with it
    run_sweep(out, {}, [Item("a", 1)], _double, None, write=_save(out))
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "result.json"]


_HOLD = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); "
         "time.sleep(60)")


def test_a_second_writer_is_refused_naming_the_first_pid(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["invert", "sample:chelsea", "--layer", "conv_stem", "--iters", "1", "--quiet", "--out", str(out)]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and f"in use by another repscope run (pid {holder.pid})" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written, its lock file kept
        assert main(argv + ["--resume"]) == 2 and f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 0, capsys.readouterr().err  # the kernel released it with the process
    assert not (out / LOCK_FILE).exists() and (out / "invert_conv_stem.png").is_file()


def _photo(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def test_a_replaced_input_refuses_resume_naming_it(tmp_path, capsys):
    photo, out = _photo(tmp_path / "photo.png", 0), tmp_path / "out"
    argv = ["invert", photo, "--layer", "conv_stem", "--iters", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    settings = json.loads((out / "result.json").read_text())["settings"]
    assert list(settings["inputs"]) == [photo] and len(settings["inputs"][photo]) == 64
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    Image.open(photo).save(tmp_path / "same.bmp")  # the same pixels, re-encoded: still the same input
    Image.open(tmp_path / "same.bmp").save(photo)
    assert main(argv + ["--resume"]) == 0, capsys.readouterr().err
    _photo(photo, 1)  # another photo under the same name
    assert main(argv + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the input '{photo}' is not the image the interrupted run used" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()}.keys() == before.keys()


def test_overwrite_removes_only_what_repscope_wrote(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["invert", "sample:chelsea", "--iters", "1", "--quiet", "--out", str(out)]
    assert main(base + ["--layer", "conv_stem", "--layer", "blocks.0"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "photo.png").write_bytes(b"mine too")
    (out / "invert_blocks.0.last-good.png").write_bytes(b"stale")  # a diverged item of an older run
    (tmp_path / "outside.png").write_bytes(b"not in out")
    record = json.loads((out / "result.json").read_text())
    record["items"]["conv_stem"]["files"] = ["../outside.png", "sub/x.png"]  # never followed out of the folder
    (out / "result.json").write_text(json.dumps(record))
    assert main(base + ["--layer", "conv_stem", "--overwrite"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "grid.png", "invert_conv_stem.png", "loss.png",
                                                     "notes.txt", "photo.png", "result.json"]
    assert (out / "notes.txt").read_text() == "mine" and (tmp_path / "outside.png").read_bytes() == b"not in out"
    assert list(json.loads((out / "result.json").read_text())["items"]) == ["conv_stem"]


def test_overwrite_leaves_a_folder_that_is_not_a_repscope_result_alone(tmp_path):
    from repscope.cli.common import remove_previous_run

    (tmp_path / "grid.png").write_bytes(b"the user's own grid")
    assert remove_previous_run(tmp_path) == [] and (tmp_path / "grid.png").exists()
