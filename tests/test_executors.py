"""Sweeps on Ray: the same records and PNG bytes as the local executor, resume across executors,
bounded retries, the shared state unpickled once per worker; one local Ray (2 CPUs) for the module."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from repscope.errors import RepscopeError
from repscope.sweep import Item, ItemsFailed, run_sweep

pytest.importorskip("ray")

CPUS = 2


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs on the loopback interface, no dashboard, usage statistics off."""
    from repscope.ray_executor import ray_session

    with ray_session(num_cpus=CPUS) as ray:
        # the toy work functions below live in this test module, which Ray's workers cannot import
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield ray


def _executor(**options):
    from repscope.ray_executor import RayExecutor

    return RayExecutor(**options)


# ---------------------------------------------------------------- toy work functions (pickled by value)
def _where(shared, specs):
    """Which process computed the chunk, with which torch threads, from which copy of ``shared``."""
    return [{"pid": os.getpid(), "shared": id(shared), "threads": torch.get_num_threads(), "value": shared["k"] * s}
            for s in specs]


def _flaky(shared, specs):
    """Each call appends the specs to ``shared/attempts``; "boom" raises, "crash" kills the worker,
    "wrong" is a mistake in the request."""
    with open(Path(shared) / "attempts", "a") as log:
        log.write(" ".join(map(str, specs)) + "\n")
    if "boom" in specs:
        raise RuntimeError("boom\non two lines")
    if "crash" in specs:
        os._exit(1)
    if "wrong" in specs:
        raise RepscopeError("a mistake in the request; fix the options.")
    return [{"value": len(s)} for s in specs]


def _write(key, output):
    return dict(output, key=key)


def _attempts(folder: Path) -> list[str]:
    return (folder / "attempts").read_text().splitlines()


# ---------------------------------------------------------------- the real sweeps, local vs Ray
def _strip(result: dict) -> list[dict]:
    """The items without their timings (everything else must be equal)."""
    return [{k: v for k, v in item.items() if k != "seconds"} for item in result["items"].values()]


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _maximize(lite0, out, executor=None, resume=False):
    from repscope.preimage import PreimageConfig
    from repscope.preimage.sweeps import maximize_units

    return maximize_units(lite0, "blocks.2", [0, 5, 9, 17], out, size=(48, 48), batch_size=1,
                          config=PreimageConfig(iters=4), seed=3, resume=resume, executor=executor)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The local reference runs with the one torch thread each Ray task gets (``cpus_per_item=1``):
    float sums depend on the thread count, so equal numbers need equal counts."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_maximize(lite0, tmp_path_factory):
    """The 4-unit sweep on the local executor: its result and PNG bytes (the reference of every Ray run)."""
    out = tmp_path_factory.mktemp("local")
    return _maximize(lite0, out), _pngs(out)


def test_maximize_on_ray_gives_the_local_numbers_and_png_bytes(ray_local, lite0, local_maximize, tmp_path):
    local, pngs = local_maximize
    on_ray = _maximize(lite0, tmp_path, _executor())
    assert _strip(on_ray) == _strip(local) and on_ray["summary"] == local["summary"]
    assert list(on_ray["summary"]) == ["0", "5", "9", "17"]
    assert [item["hyperparameters"]["seed"] for item in on_ray["items"].values()] == [3, 4, 5, 6]
    assert len(pngs) == 6 and {"grid.png", "loss.png", "maximize_blocks.2_17.png"} <= set(pngs)
    assert _pngs(tmp_path) == pngs


def test_invert_on_ray_gives_the_local_numbers_and_png_bytes(ray_local, lite0, photos, tmp_path):
    from repscope.images import resize_center_crop
    from repscope.preimage import PreimageConfig
    from repscope.preimage.sweeps import invert_layers

    x = resize_center_crop(photos[:1], 48)
    runs = {name: invert_layers(lite0, x, ["blocks.1", "blocks.3"], tmp_path / name, config=PreimageConfig(iters=4),
                                seed=2, image="chelsea", executor=executor)
            for name, executor in (("local", None), ("ray", _executor()))}
    assert _strip(runs["ray"]) == _strip(runs["local"])
    assert all(0 < e < 2 for e in runs["ray"]["summary"].values())
    assert _pngs(tmp_path / "ray") == _pngs(tmp_path / "local")
    assert set(_pngs(tmp_path / "ray")) == {"invert_blocks.1.png", "invert_blocks.3.png", "grid.png", "loss.png"}


def test_cli_maximize_on_ray_equals_local_resumes_on_local_and_checks_its_options(ray_local, tmp_path, capsys):
    from repscope.cli import main

    argv = ["maximize", "--layer", "blocks.2", "--unit", "3", "--unit", "7", "--iters", "2", "--batch", "1", "--quiet"]
    assert main(argv + ["--executor", "ray", "--cpus-per-item", "1", "--out", str(tmp_path / "ray")]) == 0
    assert main(argv + ["--out", str(tmp_path / "local")]) == 0
    results = {name: json.loads((tmp_path / name / "result.json").read_text()) for name in ("ray", "local")}
    assert _strip(results["ray"]) == _strip(results["local"]) and len(results["ray"]["items"]) == 2
    assert _pngs(tmp_path / "ray") == _pngs(tmp_path / "local")
    unit_png = tmp_path / "ray" / "maximize_blocks.2_3.png"
    before = unit_png.stat().st_mtime_ns
    assert main(argv + ["--executor", "local", "--resume", "--out", str(tmp_path / "ray")]) == 0  # other executor
    assert unit_png.stat().st_mtime_ns == before  # nothing recomputed
    capsys.readouterr()
    assert main(argv + ["--gpus-per-item", "1", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == ("repscope: error: --gpus-per-item: only with --executor ray. "
                                               "Add --executor ray, or drop it.")


def test_cli_without_ray_installed_prints_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    from repscope.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    argv = ["maximize", "--layer", "blocks.2", "--unit", "3", "--iters", "2", "--executor", "ray", "--out",
            str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["repscope: error: --executor ray needs Ray, which is not installed. Run: pip install -e '.[ray]'"]
    assert not (tmp_path / "out").exists()


class _Interrupted:
    """Wraps an executor: Ctrl-C arrives in the driver after ``after`` finished chunks."""

    def __init__(self, inner, after: int):
        from repscope.executors import LocalExecutor

        self.inner, self.after, self.submitted = inner or LocalExecutor(), after, None

    def run(self, work, shared, chunks):
        self.submitted = len(chunks)
        with contextlib.closing(self.inner.run(work, shared, chunks)) as results:
            for n, result in enumerate(results, 1):
                yield result  # the driver records it, then asks for the next one
                if n == self.after:
                    raise KeyboardInterrupt


def test_resume_after_interrupted_runs_computes_only_the_missing_items_on_either_executor(
        ray_local, lite0, local_maximize, tmp_path):
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C on Ray after one unit (the running ones are cancelled)
        _maximize(lite0, tmp_path, _Interrupted(_executor(), after=1))
    first = json.loads((tmp_path / "result.json").read_text())
    assert first["complete"] is False and len(first["items"]) == 1
    local = _Interrupted(None, after=1)
    with pytest.raises(KeyboardInterrupt):  # resumed on the local executor, interrupted again
        _maximize(lite0, tmp_path, local, resume=True)
    second = json.loads((tmp_path / "result.json").read_text())
    assert local.submitted == 3 and len(second["items"]) == 2
    again = _Interrupted(_executor(), after=99)
    resumed = _maximize(lite0, tmp_path, again, resume=True)  # and finished on Ray
    assert again.submitted == 2  # only the two missing units went to Ray
    assert all(resumed["items"][k] == v for k, v in second["items"].items())  # finished items kept as they were
    full, pngs = local_maximize  # local, uninterrupted: the same folder
    assert _strip(resumed) == _strip(full) and _pngs(tmp_path) == pngs


# ---------------------------------------------------------------- failures
def test_a_raising_task_is_retried_then_recorded_failed_and_the_others_go_on(ray_local, tmp_path):
    items = [Item(s, s) for s in ("a", "boom", "ccc")]
    with pytest.raises(ItemsFailed, match=r"RuntimeError: boom on two lines \(1 of 3 items failed") as info:
        run_sweep(tmp_path, {}, items, _flaky, str(tmp_path), write=_write, executor=_executor(max_retries=2))
    assert isinstance(info.value.__cause__, RuntimeError)
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["failed"] == {"boom": "RuntimeError: boom on two lines"}
    assert record["items"] == {"a": {"value": 1, "key": "a"}, "ccc": {"value": 3, "key": "ccc"}}
    assert sorted(_attempts(tmp_path)) == ["a", "boom", "boom", "boom", "ccc"]  # 1 try + 2 retries


def test_a_mistake_in_the_request_is_not_retried_and_stops_the_sweep(ray_local, tmp_path):
    with pytest.raises(RepscopeError, match="mistake in the request"):
        run_sweep(tmp_path, {}, [Item("wrong", "wrong")], _flaky, str(tmp_path), write=_write, executor=_executor())
    assert _attempts(tmp_path) == ["wrong"]


# ---------------------------------------------------------------- resources and shared state
def test_shared_state_is_unpickled_once_per_worker_and_threads_follow_cpus_per_item(ray_local, tmp_path):
    items = [Item(str(s), s) for s in range(6)]
    record = run_sweep(tmp_path / "one", {}, items, _where, {"k": 7}, write=_write, executor=_executor())
    outputs = list(record.items.values())
    assert [o["value"] for o in outputs] == [0, 7, 14, 21, 28, 35]
    assert {o["threads"] for o in outputs} == {1}
    copies = {(o["pid"], o["shared"]) for o in outputs}
    assert len({pid for pid, _ in copies}) == len(copies) <= CPUS  # one copy of `shared` per worker process
    two = run_sweep(tmp_path / "two", {}, items[:2], _where, {"k": 1}, write=_write, executor=_executor(cpus_per_item=2))
    assert {o["threads"] for o in two.items.values()} == {2}


def _timed(shared, specs):
    import time

    start = time.monotonic()
    time.sleep(0.3)
    return [{"start": start, "end": time.monotonic(), "value": s} for s in specs]


def test_max_in_flight_one_runs_the_chunks_one_after_another(ray_local, tmp_path):
    items = [Item(str(s), s) for s in range(3)]
    record = run_sweep(tmp_path, {}, items, _timed, None, write=_write, executor=_executor(max_in_flight=1))
    spans = sorted((o["start"], o["end"]) for o in record.items.values())
    assert [o["value"] for o in record.items.values()] == [0, 1, 2]
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # no overlap: one at a time
    with pytest.raises(RepscopeError, match="max_in_flight"):
        _executor(max_in_flight=0)


def test_requests_no_node_can_meet_are_refused_in_one_line(ray_local, tmp_path):
    with pytest.raises(RepscopeError, match=r"--cpus-per-item 3 asks for more CPUs than the Ray cluster has \(2\)"):
        run_sweep(tmp_path, {}, [Item("a", "a")], _flaky, str(tmp_path), write=_write,
                  executor=_executor(cpus_per_item=3))
    with pytest.raises(RepscopeError, match="--gpus-per-item 1 asks for more GPUs"):
        run_sweep(tmp_path, {}, [Item("a", "a")], _flaky, str(tmp_path), write=_write,
                  executor=_executor(gpus_per_item=1))
    assert not (tmp_path / "attempts").exists()


@pytest.mark.parametrize("options", [{"cpus_per_item": 0}, {"cpus_per_item": float("nan")}, {"gpus_per_item": -1}])
def test_bad_resource_options_are_one_line_errors(options):
    with pytest.raises(RepscopeError, match="must be a finite number"):
        _executor(**options)


def test_an_address_nothing_listens_on_is_refused_at_once():
    import socket
    import time

    with socket.socket() as probe:  # a free loopback port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    from repscope.ray_executor import _check_reachable  # what ray_session does before joining a cluster

    with pytest.raises(RepscopeError, match=rf"no Ray cluster answers at --ray-address 127.0.0.1:{port} .*ray start"):
        _check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 10
    _check_reachable("auto")  # left to Ray


def test_without_ray_installed_the_error_names_the_extra(monkeypatch, tmp_path):
    from repscope.ray_executor import INSTALL_HINT

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RepscopeError, match=r"needs Ray, which is not installed\. Run: pip install -e '\.\[ray\]'"):
        run_sweep(tmp_path, {}, [Item("a", "a")], _flaky, str(tmp_path), write=_write, executor=_executor())
    assert INSTALL_HINT == "pip install -e '.[ray]'" and not tmp_path.joinpath("result.json").exists()


def test_get_executor_names_ray_and_passes_its_options():
    from repscope.executors import get_executor
    from repscope.ray_executor import RayExecutor

    executor = get_executor("ray", address="127.0.0.1:6379", cpus_per_item=2.5, gpus_per_item=1)
    assert isinstance(executor, RayExecutor) and executor.threads == 2 and executor.address == "127.0.0.1:6379"
    with pytest.raises(RepscopeError, match="Use --executor local or --executor ray"):
        get_executor("dask")


# ---------------------------------------------------------------- sharded ridge statistics
def _flip_statistics(shared, seeds):
    """Equivariance-style rows of one shard: blocks.0 features of random crops -> those of their flips,
    flipped back (a forward and a backward accumulator)."""
    from repscope.layers import Representation
    from repscope.regression import StreamingRidge, to_rows

    model, photo = shared
    phi = Representation(model, "blocks.0")
    stats = {"forward": StreamingRidge(16, 16), "backward": StreamingRidge(16, 16, bias=False)}
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        i, j = (int(v) for v in torch.randint(0, photo.shape[-1] - 32, (2,), generator=g))
        x = photo[None, :, i:i + 32, j:j + 32]
        with torch.no_grad():
            fx, fgx = phi(x), phi(x.flip(-1)).flip(-1)
        stats["forward"].update(to_rows(fx), to_rows(fgx))
        stats["backward"].update(to_rows(fgx), to_rows(fx))
    return stats


def test_sharded_ridge_statistics_on_ray_equal_one_pass(ray_local, lite0, photos):
    from repscope.regression import StreamingRidge
    from repscope.sharded import fit_sharded, merge_statistics

    shared = (lite0, photos[0])
    one_pass = _flip_statistics(shared, list(range(8)))
    shards = [[0, 1, 2], [3], [4, 5], [6, 7]]
    merged = fit_sharded(_flip_statistics, shared, shards, executor=_executor())
    local = fit_sharded(_flip_statistics, shared, shards)
    for key in ("forward", "backward"):
        a, b = merged[key], one_pass[key]
        assert a.n == b.n == 8 * 16 * 16 and a.bias == b.bias
        lam = b.lambdas([1e-3])[0]
        (wa, ba), (wb, bb) = a.solve(lam), b.solve(lam)
        assert (wa - wb).abs().max() < 1e-6 and (ba - bb).abs().max() < 1e-6
        assert abs(a.residual(wa, ba) - b.residual(wb, bb)) <= 1e-6 * b.total()
        assert torch.equal(local[key].xx, a.xx)  # same shards, same order: the same bits on either executor
    with pytest.raises(ValueError, match="different keys"):
        merge_statistics([{"a": StreamingRidge(2, 1)}, {"b": StreamingRidge(2, 1)}])
    with pytest.raises(RepscopeError, match="same widths"):
        StreamingRidge(2, 1).merge(StreamingRidge(3, 1))


def _sleepy(shared, specs):
    """Item 0 returns at once; the others would take a minute."""
    import time

    if specs != [0]:
        time.sleep(60)
    return [{"value": s} for s in specs]


def test_ctrl_c_cancels_the_outstanding_tasks_and_keeps_the_finished_item(ray_local, tmp_path):
    import time

    settle = time.monotonic() + 60  # workers of the earlier tests are reaped first (a busy machine is slow at it)
    while ray_local.available_resources().get("CPU", 0) < CPUS and time.monotonic() < settle:
        time.sleep(0.2)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, {}, [Item(str(s), s) for s in range(4)], _sleepy, None, write=_write,
                  executor=_Interrupted(_executor(), after=1))
    assert time.monotonic() - start < 30  # the driver did not wait for the sleeping tasks
    assert json.loads((tmp_path / "result.json").read_text())["items"] == {"0": {"value": 0, "key": "0"}}
    deadline = time.monotonic() + 20
    while ray_local.available_resources().get("CPU", 0) < CPUS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_local.available_resources().get("CPU", 0) == CPUS  # not a minute: the sleeping tasks were cancelled
    assert time.monotonic() < deadline


@pytest.mark.slow  # ~15 s: two fresh worker processes import torch
def test_a_dead_worker_is_retried_then_recorded_failed(ray_local, tmp_path):
    """Last in the module: the two crashed workers are replaced by fresh ones."""
    items = [Item(s, s) for s in ("crash", "bb")]
    with pytest.raises(ItemsFailed, match=r"1 of 2 items failed"):
        run_sweep(tmp_path, {}, items, _flaky, str(tmp_path), write=_write, executor=_executor(max_retries=1))
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["items"] == {"bb": {"value": 2, "key": "bb"}}
    assert record["failed"]["crash"].startswith("RuntimeError: WorkerCrashedError after 1 retries")
    assert _attempts(tmp_path).count("crash") == 2
