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


# ---------------------------------------------------------------- the item runner
def _square(shared, specs):
    """Work of the toy sweeps: module-level, so a process pool can run it too."""
    if "boom" in specs:
        raise RuntimeError("boom\nwith a second line")
    if "bad" in specs:
        raise OutputError("a mistake in the request; fix the options.")
    return [{"value": shared * s * s} for s in specs]


def _write(key, output):
    return dict(output, key=key)


def _items(*specs):
    from repscope.sweep import Item

    return [Item(str(s), s) for s in specs]


def test_run_sweep_resumes_only_the_missing_chunks(tmp_path):
    from repscope.sweep import run_sweep

    calls, interrupt = [], [True]

    def work(shared, specs):
        calls.append(list(specs))
        if specs == [5] and interrupt[0]:
            raise KeyboardInterrupt
        return _square(shared, specs)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path / "cut", {"k": 1}, _items(1, 2, 3, 4, 5), work, 10, write=_write, chunk_size=2)
    partial = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert list(partial["items"]) == ["1", "2", "3", "4"] and partial["complete"] is False
    calls.clear()
    interrupt[0] = False
    record = run_sweep(tmp_path / "cut", {"k": 1}, _items(1, 2, 3, 4, 5), work, 10, write=_write, chunk_size=2,
                       resume=True)
    assert calls == [[5]]  # chunks [1, 2] and [3, 4] were kept
    full = run_sweep(tmp_path / "full", {"k": 1}, _items(1, 2, 3, 4, 5), _square, 10, write=_write, chunk_size=2)
    assert record.finish() == full.finish()
    assert [v["value"] for v in full.items.values()] == [10, 40, 90, 160, 250]


def test_a_failed_chunk_is_recorded_the_others_go_on_and_resume_retries_it(tmp_path):
    from repscope.sweep import ItemsFailed, run_sweep

    with pytest.raises(ItemsFailed, match=r"RuntimeError: boom with a second line \(1 of 3 items failed") as info:
        run_sweep(tmp_path, {}, _items(1, "boom", 3), _square, 2, write=_write)
    assert isinstance(info.value.__cause__, RuntimeError)
    record = json.loads((tmp_path / "result.json").read_text())
    assert list(record["items"]) == ["1", "3"] and record["complete"] is False
    assert record["failed"] == {"boom": "RuntimeError: boom with a second line"}

    def fixed(shared, specs):
        return [{"value": -1} if s == "boom" else {"value": 0} for s in specs]

    done = run_sweep(tmp_path, {}, _items(1, "boom", 3), fixed, 2, write=_write, resume=True)
    assert list(done.items) == ["1", "boom", "3"] and done.failed == {}  # in key order; only "boom" recomputed
    assert [v["value"] for v in done.items.values()] == [2, -1, 18]
    assert "failed" not in done.finish()


def test_a_mistake_in_the_request_stops_the_sweep_before_any_file(tmp_path):
    from repscope.sweep import run_sweep

    with pytest.raises(OutputError, match="mistake in the request"):
        run_sweep(tmp_path / "out", {}, _items("bad", 1), _square, 2, write=_write)
    assert not (tmp_path / "out").exists()


class _Reversed:
    """An executor that finishes the chunks in reverse order (as a cluster may)."""

    def run(self, work, shared, chunks):
        from repscope.executors import LocalExecutor

        yield from reversed(list(LocalExecutor().run(work, shared, chunks)))


class _ProcessPool:
    """An executor computing every chunk in another process from (work, shared, specs) alone."""

    def run(self, work, shared, chunks):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(work, shared, chunk): i for i, chunk in enumerate(chunks)}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], error if error is not None else future.result()


def test_an_out_of_order_executor_gives_the_same_record(tmp_path):
    from repscope.sweep import run_sweep

    local = run_sweep(tmp_path / "a", {}, _items(1, 2, 3), _square, 3, write=_write).finish()
    other = run_sweep(tmp_path / "b", {}, _items(1, 2, 3), _square, 3, write=_write, executor=_Reversed()).finish()
    assert (tmp_path / "a" / "result.json").read_bytes() == (tmp_path / "b" / "result.json").read_bytes()
    assert list(other["items"]) == ["1", "2", "3"] and other == local


@pytest.mark.slow  # a spawned process imports torch: ~60 s on the shared 2-core machine
def test_maximize_sweep_in_another_process_writes_the_same_files(tmp_path):
    """The seam a Ray executor needs: items computed from (spec, shared model) elsewhere, files by the driver."""
    import torch

    from repscope.models import wrap
    from repscope.preimage import PreimageConfig, maximize_units

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3))
    model = wrap(net, input_size=24, name="tiny")
    config = PreimageConfig(iters=6)
    runs = {}
    for name, executor in (("local", None), ("pool", _ProcessPool())):
        runs[name] = maximize_units(model, "2", [0, 3, (4, 5, 5)], tmp_path / name, batch_size=2, config=config,
                                    seed=4, executor=executor)
    for file in ["maximize_2_0.png", "maximize_2_3.png", "maximize_2_4_5_5.png", "grid.png"]:
        assert (tmp_path / "local" / file).read_bytes() == (tmp_path / "pool" / file).read_bytes(), file
    strip = ("seconds",)
    for a, b in zip(runs["local"]["items"].values(), runs["pool"]["items"].values()):
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    assert list(runs["local"]["summary"]) == ["0", "3", "(4, 5, 5)"]
    assert runs["local"]["items"]["3"]["hyperparameters"]["seed"] == 5  # unit i has seed + i, batch or not


def test_progress_prints_one_line_per_finished_item_without_a_terminal(tmp_path, capsys):
    from repscope.sweep import run_sweep

    run_sweep(tmp_path, {}, _items(1, 2), _square, 1, write=_write, progress=True, desc="toy")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["repscope: toy 1 done", "repscope: toy 2 done"]
    assert lines[1].split(" (")[1].startswith("2/2, ")
    run_sweep(tmp_path / "quiet", {}, _items(1, 2), _square, 1, write=_write)
    assert capsys.readouterr().err == ""


def test_saliency_methods_one_item_each_equal_the_methods_together(tmp_path):
    import torch

    from repscope import backprop as bp
    from repscope.backprop.sweep import saliency_methods
    from repscope.images import load_image
    from repscope.models import wrap

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 6, 3, padding=1), torch.nn.ReLU())
    model = wrap(net, input_size=16, name="tiny")
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = saliency_methods(model, x, tmp_path, layer="3", at="max", top_k=3, trials=2, seed=5)
    together_sel = bp.selectivity(model, x, "3", k=3, at="max")
    unit = int(bp.backward_map(model, x, bp.Target("3", None, "max"), "guided").units[0])
    together_bott = bp.bottleneck(model, x, "3", unit=unit, at="max", trials=2, seed=5)
    assert result["unit"] == unit and list(result["items"]) == list(bp.METHODS)
    assert result["selectivity_units"] == together_sel.channels
    for m in bp.METHODS:
        assert result["selectivity"][m] == round(together_sel.selectivity[m], 4)
        assert result["bottleneck"][m] == {s: round(v, 4) for s, v in together_bott.correlation[m].items()}
        signed = load_image(tmp_path / f"saliency_{m}.png")
        expected = bp.signed_rgb(bp.backward_map(model, x, bp.Target("3", unit, "max"), m).maps)[0]
        assert (signed - expected).abs().max() <= 0.5 / 255 + 1e-6  # the PNG holds the map, rounded to 8 bits
    assert load_image(tmp_path / "grid.png").shape[0] == 3
    again = saliency_methods(model, x, tmp_path, layer="3", at="max", top_k=3, trials=2, seed=5, resume=True)
    assert {k: v for k, v in again.items()} == {k: v for k, v in result.items()}  # nothing left to compute
