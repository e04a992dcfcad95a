"""Property test over command-line combinations: every run ends with status 0 or one clean error line."""

from __future__ import annotations

import contextlib
import io
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repscope.cli import main

IMAGES = ["sample:chelsea", "sample:coffee", "sample:nope", "/no/such.png", "sample:astronaut"]
LAYERS = ["conv_stem", "blocks.0", "blocks.9", "logits", "input", "", "bn1.act"]
NUMBERS = ["0", "1", "3", "-1", "nan", "1e9", "x"]


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(["classify", "invert", "maximize", "caricature", "saliency", "layers"]))
    argv = [command]
    if command in ("classify", "invert", "caricature", "saliency"):
        argv.append(draw(st.sampled_from(IMAGES)))
    if command == "layers":
        argv.append(draw(st.sampled_from(["hog", "hog:dalal-triggs,cell=4", "hog:uoctti,orientations=0",
                                          "torchvision:alexnet", "nope"])))
    if command in ("invert", "maximize", "caricature", "saliency") and draw(st.booleans()):
        argv += ["--layer", draw(st.sampled_from(LAYERS))]
    if command == "maximize":
        argv += ["--layer", draw(st.sampled_from(LAYERS)), "--unit", draw(st.sampled_from(NUMBERS + ["1,2,3"]))]
    if command in ("invert", "maximize", "caricature"):
        argv += ["--iters", draw(st.sampled_from(["1", "2", "0", "-3", "abc"]))]
    if command == "saliency" and draw(st.booleans()):
        argv += ["--class", draw(st.sampled_from(["285", "5000", "espresso", "-2"]))]
    if command == "classify" and draw(st.booleans()):
        argv += ["--top", draw(st.sampled_from(NUMBERS))]
    if draw(st.booleans()):
        argv += ["--device", draw(st.sampled_from(["cpu", "auto", "gpu", "cuda:9"]))]
    if draw(st.booleans()):
        argv += ["--seed", draw(st.sampled_from(["0", "7", "-1", "1.5"]))]
    if draw(st.booleans()):
        argv.append("--json")
    return argv


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_any_command_line_succeeds_or_fails_in_one_line(argv):
    with tempfile.TemporaryDirectory() as tmp:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(argv + (["--out", tmp, "--overwrite"] if argv[0] not in ("classify", "layers") else []))
    err = stderr.getvalue()
    assert code in (0, 2), (argv, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("repscope: error:"), (argv, err)


# --- Numeric option values (issue 24): every numeric option of every command, under a memory limit ---------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from repscope import bounds  # noqa: E402

#: Tiny settings per command (one iteration, a few crops, an early layer); fuzzed options are appended after.
BASE_ARGV = {
    "classify": ["classify", "sample:chelsea"],
    "invert": ["invert", "sample:chelsea", "--layer", "conv_stem", "--iters", "1"],
    "caricature": ["caricature", "sample:chelsea", "--layer", "conv_stem", "--iters", "1"],
    "maximize": ["maximize", "--layer", "conv_stem", "--unit", "1", "--iters", "1"],
    "saliency": ["saliency", "sample:chelsea", "--layer", "blocks.0"],  # after a rectifier: no warning
    "equivariance": ["equivariance", "--transform", "hflip", "--layer", "conv_stem", "--fit-crops", "4", "--test", "2",
                     "--size", "33", "--batch-size", "2", "--no-agreement"],
}
#: Options whose largest allowed value is valid but slow or large (only values near the bottom are run).
COSTLY_AT_TOP = {"--iters", "--fit-crops", "--test", "--size"}
GARBAGE = ["abc", "", "nan", "inf", "-inf", "1e309", "-1e309", "0x10", "1.5", "-1", "9" * 40, "1e3"]

WORKER = r'''
import contextlib, io, json, os, resource, signal, sys, traceback
from repscope import bounds, cli

def wire_bounds():
    """Apply bounds.OPTIONS to numeric options not bounded yet (a no-op once the parsers use them)."""
    build = cli.build_parser
    def build_bounded():
        parser = build()
        for sub in parser._subparsers._group_actions[0].choices.values():
            for action in sub._actions:
                for option in action.option_strings:
                    if option in bounds.OPTIONS and action.type in (int, float):
                        action.type = bounds.OPTIONS[option]
        return parser
    cli.build_parser = build_bounded

class Timeout(BaseException):
    pass

def on_alarm(signum, frame):
    raise Timeout()

if not os.environ.get("FUZZ_NO_WIRE"):  # exploration: FUZZ_NO_WIRE=1 runs the parsers as they are
    wire_bounds()
signal.signal(signal.SIGALRM, on_alarm)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    cli.main(["classify", "sample:chelsea", "--top", "1"])  # warm: imports, weights, photos
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
limit = vm + int(os.environ["FUZZ_EXTRA_BYTES"])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = sys.stdout
print(json.dumps({"ready": True, "limit": limit}), file=out, flush=True)
for line in sys.stdin:
    argv = json.loads(line)
    stdout, stderr = io.StringIO(), io.StringIO()
    reply = {}
    signal.alarm(int(os.environ["FUZZ_SECONDS"]))
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            reply["code"] = cli.main(argv)
    except Timeout:
        reply["crash"] = "timeout"
    except MemoryError:
        reply["crash"] = "MemoryError (over the address-space limit)"
    except BaseException:
        reply["crash"] = traceback.format_exc()[-2000:]
    finally:
        signal.alarm(0)
    reply["stderr"] = stderr.getvalue()[-3000:]
    print(json.dumps(reply), file=out, flush=True)
'''


class _Worker:
    """One child process that runs ``repscope.cli.main`` in-process for each command line, under RLIMIT_AS
    (its size after warm-up + 3 GiB, so no run can allocate several GB) and a 120 s alarm per run. After a
    crash it is restarted, so one run's exhausted memory cannot fail the next (and mislead shrinking)."""

    def __init__(self):
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "FUZZ_EXTRA_BYTES": str(3 << 30), "FUZZ_SECONDS": "120"}
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=self.env)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def __call__(self, argv):
        if self.proc is None:
            self._start()
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        reply = json.loads(line) if line else {"crash": "the worker died", "stderr": ""}
        if "crash" in reply:
            self.close()
        return reply

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


@pytest.fixture(scope="module")
def fuzz_worker():
    worker = _Worker()
    yield worker
    worker.close()


#: Numeric options with their own parser (not a plain int/float): fuzzed, but not expected to use bounds.
OWN_PARSERS = {"maximize": ["--unit"]}


def numeric_options(command):
    """The options of ``command`` parsed as plain numbers (``type=int``/``float``) or by a bound of ``bounds``."""
    from repscope.cli import build_parser
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    bounded = set(map(id, bounds.OPTIONS.values()))
    return [action.option_strings[-1] for action in sub._actions
            if action.option_strings and (action.type in (int, float) or id(action.type) in bounded)]


def _int_range(option):
    bound = bounds.OPTIONS.get(option)
    if bound is None or not bound.__name__.startswith("int["):
        return None
    return tuple(int(v) for v in bound.__name__[4:-1].split(","))


def values_for(option):
    """(valid and cheap, invalid) text values for ``option``."""
    span = _int_range(option)
    if span is not None:
        lo, hi = span
        valid = [str(lo), str(lo + 1), str(lo + 2)] + ([] if option in COSTLY_AT_TOP else [str(hi)])
        return valid, GARBAGE + [str(lo - 1), str(hi + 1), str(2**63)]
    return ["0", "0.5", "1", "1e-3", "2.5"], GARBAGE + ["-0.5", "-1e30"]


@st.composite
def option_values(draw, command):
    options = numeric_options(command) + OWN_PARSERS.get(command, [])
    chosen = draw(st.lists(st.sampled_from(options), min_size=1, max_size=3, unique=True))
    argv = list(BASE_ARGV[command])
    for option in chosen:
        valid, invalid = values_for(option)
        argv += [option, draw(st.sampled_from(valid) if draw(st.booleans()) else st.sampled_from(invalid))]
    return argv


def _check(run, argv, tmp):
    writes = argv[0] not in ("classify",)
    reply = run(argv + ["--quiet"] + (["--out", tmp, "--overwrite"] if writes else []))
    if os.environ.get("FUZZ_VERBOSE"):
        print(argv, reply.get("code"), reply["stderr"][-200:].strip())
    assert "crash" not in reply, (argv, reply["crash"], reply["stderr"])
    assert reply["code"] in (0, 2), (argv, reply)
    lines = [line for line in reply["stderr"].splitlines() if line.strip() and not line.startswith("repscope: note:")]
    if reply["code"] == 2:
        assert len(lines) == 1 and lines[0].startswith("repscope: error:"), (argv, reply["stderr"])
    assert "Traceback" not in reply["stderr"], (argv, reply["stderr"])


@pytest.mark.parametrize("command", sorted(BASE_ARGV))
def test_numeric_options_exit_zero_or_one_line(command, fuzz_worker):
    """Hypothesis over the numeric options of each command: status 0 or one ``repscope: error:`` line."""
    assert numeric_options(command), f"{command} has no numeric options"

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(option_values(command))
    def check(argv):
        with tempfile.TemporaryDirectory() as tmp:
            _check(fuzz_worker, argv, tmp)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(BASE_ARGV))
def test_numeric_options_fuzz_long(command, fuzz_worker):
    """The same property, 30 examples per command (CI)."""
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(option_values(command))
    def check(argv):
        with tempfile.TemporaryDirectory() as tmp:
            _check(fuzz_worker, argv, tmp)

    check()


def test_every_bounded_option_refuses_its_edges_in_one_line(fuzz_worker):
    """Each option in ``bounds.OPTIONS`` that a command has: below, above and non-finite values are refused."""
    seen = set()
    for command in sorted(BASE_ARGV):
        for option in numeric_options(command):
            if option not in bounds.OPTIONS or option in seen:
                continue
            seen.add(option)
            span = _int_range(option)
            bad = [str(span[0] - 1), str(span[1] + 1), "1.5"] if span else ["nan", "inf", "1e309", "-1"]
            if option == "--lr":
                bad.append("0")  # found by the fuzz: the optimiser raised a raw ValueError
            for value in bad:
                reply = fuzz_worker(BASE_ARGV[command] + [option, value, "--quiet"])
                assert reply.get("code") == 2, (command, option, value, reply)
                assert f"argument {option}:" in reply["stderr"] and reply["stderr"].count("\n") == 1, reply
    assert len(seen) >= 15
