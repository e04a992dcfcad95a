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
