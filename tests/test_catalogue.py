"""The bad-input catalogue (issue 9): each case exits non-zero with one line naming the fix, or is handled.

Cases are table-driven: ``make(tmp_path)`` builds the input and returns the command line; the
expected fragment must appear in the single ``repscope: error:`` line on stderr. The README's
reliability table lists the same cases.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pathlib
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from repscope.cli import main


def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def _jpeg_bytes(size=(64, 64)):
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format="JPEG")
    return buffer.getvalue()


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def _bomb(tmp):
    Image.new("L", (10000, 10000)).save(tmp / "bomb.png")  # 100 Mpx of one value: a few KB on disk
    return str(tmp / "bomb.png")


def _evil_checkpoint(tmp):
    class Exploit:
        def __reduce__(self):
            return (print, ("code ran",))
    return _write(tmp / "evil.pth", pickle.dumps({"w": Exploit()}))


def _partial_checkpoint(tmp):
    state = torchvision.models.alexnet().state_dict()
    state.pop("classifier.6.weight")
    state["unexpected.bias"] = torch.zeros(3)
    torch.save(state, tmp / "partial.pth")
    return str(tmp / "partial.pth")


def _tensor_checkpoint(tmp):
    torch.save(torch.zeros(3), tmp / "tensor.pth")
    return str(tmp / "tensor.pth")


def _empty_folder(tmp):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "readme.txt").write_text("no images here")
    return str(tmp / "empty")


def _nan_tiff(tmp):
    Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)).save(tmp / "nan.tif")
    return str(tmp / "nan.tif")


def _line_png(tmp):
    Image.new("RGB", (100_000, 1), "red").save(tmp / "line.png")  # a few hundred bytes; 56 GiB at 224
    return str(tmp / "line.png")


def _fifo(tmp):
    os.mkfifo(tmp / "pipe.png")
    return str(tmp / "pipe.png")


def _folder_named_png(tmp):
    (tmp / "photo.png").mkdir()
    return str(tmp / "photo.png")


def _small_checkpoint(tmp, name, change=None, save=torch.save):
    """A SqueezeNet 1.1 checkpoint (1.2M values), changed by ``change(state)``; the command that loads it."""
    state = torchvision.models.squeezenet1_1().state_dict()
    if change:
        change(state)
    save(state, str(tmp / name))
    return ["layers", "torchvision:squeezenet1_1", "--weights", str(tmp / name)]


def _poison(state):
    state["features.3.squeeze.weight"][0, 0, 0, 0] = float("nan")
    state["classifier.1.bias"][0] = float("inf")


def _no_space(monkeypatch, tmp):
    """The disk fills up at the first byte written (ENOSPC from the write itself)."""
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pathlib.Path, "write_bytes", full)


def _output_is_a_folder(tmp):
    (tmp / "o" / "invert_conv_stem.png").mkdir(parents=True)  # where the pre-image would be written
    return str(tmp / "o")


def _safetensors_named_pth(tmp):
    from safetensors.torch import save_file
    save_file(torchvision.models.squeezenet1_1().state_dict(), str(tmp / "weights.pth"))
    return str(tmp / "weights.pth")


def _old_record(tmp, text):
    """An output folder whose result.json holds ``text`` (a damaged or hand-edited record)."""
    (tmp / "o").mkdir()
    (tmp / "o" / "result.json").write_text(text)
    return str(tmp / "o")


def _record_naming(name):
    return json.dumps({"settings": {}, "complete": False, "items": {"conv_stem": {"key": "conv_stem", "file": name}}})


def _replaced_photo(tmp):
    """A finished run on photo.png, then another photo saved under the same name."""
    rng = np.random.default_rng(0)
    _png(tmp / "photo.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert main(["invert", str(tmp / "photo.png"), *_CONV_STEM, "--quiet", "--out", str(tmp / "o")]) == 0
    _png(tmp / "photo.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return str(tmp / "photo.png")


_HELD_LOCKS = []  # descriptors standing for another process's lock (flock is per open file)


def _locked_by_another_run(tmp):
    import fcntl

    (tmp / "o").mkdir()
    fd = os.open(tmp / "o" / ".repscope.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    _HELD_LOCKS.append(fd)
    return str(tmp / "o")


def _stdout_is_full(monkeypatch, tmp):
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("sys.stdout", Full())


_CONV_STEM = ["--layer", "conv_stem", "--iters", "1"]
ALEX = ["--model", "torchvision:alexnet"]

#: (case id, builder of the command line, fragment expected in the one-line error)
ERROR_CASES = [
    ("missing-image", lambda t: ["classify", str(t / "nope.png")], "does not exist"),
    ("empty-image", lambda t: ["classify", _write(t / "empty.png", b"")], "empty"),
    ("corrupt-image", lambda t: ["classify", _write(t / "bad.png", b"\x89PNG\r\n\x1a\nxx")], "not an image"),
    ("truncated-jpeg", lambda t: ["classify", _write(t / "cut.jpg", _jpeg_bytes()[:300])], "truncated"),
    ("text-with-image-extension", lambda t: ["classify", _write(t / "notes.jpg", b"hello world")], "not an image"),
    ("decompression-bomb", lambda t: ["classify", _bomb(t)], "too large"),
    ("nan-float-tiff", lambda t: ["classify", _nan_tiff(t)], "NaN"),
    ("folder-without-images", lambda t: ["classify", _empty_folder(t)], "no image files"),
    ("unknown-sample", lambda t: ["classify", "sample:chelsey"], "closest: chelsea"),
    ("unknown-model", lambda t: ["classify", "sample:chelsea", "--model", "efficientnet_lite3"],
     "did you mean timm:efficientnet_lite3"),
    ("unknown-torchvision-model", lambda t: ["layers", "torchvision:resnet51"], "closest: resnet"),
    ("unknown-timm-model", lambda t: ["layers", "timm:efficientnet_b99"], "unknown timm model"),
    ("no-offline-weights", lambda t: ["layers", "torchvision:resnet18"], "--weights"),
    ("missing-weights-file", lambda t: ["layers", "torchvision:alexnet", "--weights", str(t / "w.pth")],
     "does not exist"),
    ("pickle-with-code", lambda t: ["layers", "torchvision:alexnet", "--weights", _evil_checkpoint(t)], "refused"),
    ("state-dict-missing-extra-keys", lambda t: ["layers", "torchvision:alexnet", "--weights",
                                                 _partial_checkpoint(t)], "classifier.6.weight"),
    ("checkpoint-not-a-state-dict", lambda t: ["layers", "torchvision:alexnet", "--weights",
                                               _tensor_checkpoint(t)], "no state dict"),
    ("truncated-checkpoint", lambda t: ["layers", "torchvision:alexnet", "--weights",
                                        _write(t / "cut.pth", b"PK\x03\x04broken")], "cannot read checkpoint"),
    ("classify-model-without-classes", lambda t: ["classify", "sample:chelsea", "--model", "hog"], "no class names"),
    ("top-k-out-of-range", lambda t: ["classify", "sample:chelsea", "--top", "1001"], "out of range"),
    ("cuda-without-cuda", lambda t: ["classify", "sample:chelsea", "--device", "cuda"], "--device cpu"),
    ("unknown-device", lambda t: ["classify", "sample:chelsea", "--device", "tpu"], "unknown device"),
    ("mps-without-mps", lambda t: ["classify", "sample:chelsea", "--device", "mps"], "Apple MPS"),
    ("meta-device", lambda t: ["classify", "sample:chelsea", "--device", "meta"], "unsupported device"),
    # engines
    ("unknown-layer", lambda t: ["invert", "sample:chelsea", "--layer", "blocks.33", "--out", str(t / "o")],
     "closest: blocks.3"),
    ("layer-that-never-runs", lambda t: ["saliency", "sample:chelsea", "--layer", "blocks.0.0.drop_path",
                                         "--out", str(t / "o")], "never ran"),
    ("unit-out-of-range", lambda t: ["maximize", "--layer", "blocks.0", "--unit", "99", "--iters", "2",
                                     "--out", str(t / "o")], "99"),
    ("neuron-out-of-range", lambda t: ["maximize", "--layer", "blocks.0", "--unit", "1,500,3", "--iters", "2",
                                       "--out", str(t / "o")], "500"),
    ("bad-unit-syntax", lambda t: ["maximize", "--layer", "blocks.0", "--unit", "nan", "--out", str(t / "o")],
     "bad unit"),
    ("class-out-of-range", lambda t: ["saliency", "sample:chelsea", "--class", "5000", "--out", str(t / "o")],
     "5000"),
    ("unknown-class-name", lambda t: ["saliency", "sample:chelsea", "--class", "egyptian kat", "--out",
                                      str(t / "o")], "Egyptian cat"),
    ("unknown-method", lambda t: ["saliency", "sample:chelsea", "--method", "lrp"], "invalid choice"),
    ("unknown-transform", lambda t: ["equivariance", "--transform", "spin", "--out", str(t / "o")], "transform"),
    ("bad-hog-parameter", lambda t: ["invert", "sample:chelsea", "--model", "hog:uoctti,cells=4",
                                     "--out", str(t / "o")], "cell"),
    ("unknown-hog-variant", lambda t: ["layers", "hog:dalal"], "dalal-triggs"),
    ("zero-iterations", lambda t: ["invert", "sample:chelsea", "--layer", "blocks.0", "--iters", "0",
                                   "--out", str(t / "o")], "--iters"),
    ("nan-learning-rate", lambda t: ["invert", "sample:chelsea", "--layer", "blocks.0", "--lr", "nan",
                                     "--out", str(t / "o")], "--lr"),
    ("maximize-two-layers", lambda t: ["maximize", "--layer", "blocks.0", "--layer", "blocks.1", "--unit", "1",
                                       "--out", str(t / "o")], "--layer given twice"),
    ("negative-pyramid", lambda t: ["invert", "sample:chelsea", "--layer", "blocks.0", "--pyramid", "-1",
                                    "--out", str(t / "o")], "--pyramid"),
    ("output-under-a-file", lambda t: ["invert", "sample:chelsea", "--layer", "blocks.0",
                                       "--out", _write(t / "file.txt", b"x") + "/sub"], "--out"),
    ("output-is-a-file", lambda t: ["invert", "sample:chelsea", "--layer", "blocks.0",
                                    "--out", _write(t / "taken.txt", b"x")], "not a folder"),
    ("missing-layer-for-cnn", lambda t: ["invert", "sample:chelsea", "--out", str(t / "o")], "--layer"),
    # issue 24, bounded inputs: sizes derived from memory, regular files only
    ("extreme-aspect-ratio", lambda t: ["classify", _line_png(t)], "would need 56.1 GiB"),
    ("extreme-aspect-ratio-engine", lambda t: ["saliency", _line_png(t), "--out", str(t / "o")], "would need"),
    ("image-is-a-fifo", lambda t: ["classify", _fifo(t)], "is a FIFO"),
    ("image-is-dev-zero", lambda t: ["classify", "/dev/zero"], "is a device"),
    ("image-is-dev-null", lambda t: ["classify", "/dev/null"], "is a device"),
    ("folder-named-like-an-image", lambda t: ["classify", _folder_named_png(t)], "no image files"),
    ("image-over-the-memory-budget", lambda t: ["classify", "sample:astronaut"], "decoding 'sample:astronaut' "
     "(512x512) would need 3.0 MiB", lambda mp, t: mp.setenv("REPSCOPE_MEMORY_BUDGET", "2M")),
    ("batch-over-the-memory-budget", lambda t: ["classify"] + [f"sample:{n}" for n in ("chelsea", "coffee", "rocket")],
     "a batch of 3 images at 224² would need 1.7 MiB", lambda mp, t: mp.setenv("REPSCOPE_MEMORY_BUDGET", "1M")),
    ("memory-budget-not-a-size", lambda t: ["classify", "sample:chelsea"], "REPSCOPE_MEMORY_BUDGET='lots'",
     lambda mp, t: mp.setenv("REPSCOPE_MEMORY_BUDGET", "lots")),
    ("sample-photo-not-shipped", lambda t: ["classify", "sample:coffee"], "never does",
     lambda mp, t: mp.setitem(__import__("repscope.images").images._SKIMAGE_FILES, "coffee", "gone.png")),
    # issue 24, output errors: one line naming the path and the fix
    ("out-on-a-pseudo-file-system", lambda t: ["invert", "sample:chelsea", "--layer", "conv_stem", "--iters", "1",
                                               "--out", "/proc/repscope-out"], "cannot write '/proc/repscope-out/"),
    ("full-disk", lambda t: ["invert", "sample:chelsea", "--layer", "conv_stem", "--iters", "1",
                             "--out", str(t / "o")], "No space left on device. Free disk space", _no_space),
    ("output-file-is-a-folder", lambda t: ["invert", "sample:chelsea", "--layer", "conv_stem", "--iters", "1",
                                           "--overwrite", "--out", _output_is_a_folder(t)], "is a folder"),
    # issue 24, checkpoints checked by content
    ("nan-inf-weights", lambda t: _small_checkpoint(t, "nan.pth", _poison),
     "NaN or Inf in 2 tensors (features.3.squeeze.weight, classifier.1.bias)"),
    ("meta-weights", lambda t: _small_checkpoint(t, "meta.pth", lambda s: s.update(
        {"features.0.bias": torch.empty(64, device="meta")})), "meta tensors"),
    ("sparse-weights", lambda t: _small_checkpoint(t, "sparse.pth", lambda s: s.update(
        {"classifier.1.weight": s["classifier.1.weight"].to_sparse()})), "sparse tensors (classifier.1.weight)"),
    ("pickle-named-safetensors", lambda t: _small_checkpoint(t, "w.safetensors"),
     "is named .safetensors but is not a safetensors file"),
    ("legacy-pickle-named-safetensors", lambda t: _small_checkpoint(
        t, "old.safetensors", save=lambda s, f: torch.save(s, f, _use_new_zipfile_serialization=False)),
     "legacy torch pickle"),
    ("weights-is-a-folder", lambda t: ["layers", "torchvision:squeezenet1_1", "--weights", str(t)],
     "not a regular file"),
    ("weights-is-a-device", lambda t: ["layers", "torchvision:squeezenet1_1", "--weights", "/dev/zero"],
     "not a regular file"),
    # issue 24, models by name never download
    ("timm-hf-hub", lambda t: ["layers", "timm:hf-hub:timm/resnet18.a1_in1k"], "needs the network"),
    ("detection-model-random-init", lambda t: ["layers", "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
                                               "--random-init"], "not a tensor"),
    ("segmentation-model-random-init", lambda t: ["layers", "torchvision:lraspp_mobilenet_v3_large",
                                                  "--random-init"], "not a tensor"),
    # issue 24, result.json is not trusted on --resume; one writer per folder
    ("resume-record-not-json", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--resume", "--out",
                                          _old_record(t, '{"settings": {')], "result.json' is unreadable"),
    ("resume-record-not-an-object", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--resume", "--out",
                                               _old_record(t, "[1, 2]")], "not a valid sweep record (a JSON list"),
    ("resume-record-wrong-type", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--resume", "--out", _old_record(
        t, '{"settings": {}, "complete": false, "items": {"a": {"loss_curve": "x"}}}')], "'loss_curve' is \"x\""),
    ("resume-record-absolute-path", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--resume", "--out",
                                               _old_record(t, _record_naming("/etc/hostname"))],
     "names the file '/etc/hostname', outside the output folder"),
    ("resume-record-path-escapes", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--resume", "--out",
                                              _old_record(t, _record_naming("../../secret.png"))],
     "names the file '../../secret.png', outside the output folder"),
    ("resume-input-replaced", lambda t: ["invert", _replaced_photo(t), *_CONV_STEM, "--quiet", "--resume", "--out",
                                         str(t / "o")], "photo.png' is not the image the interrupted run used"),
    ("output-folder-locked", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--out", _locked_by_another_run(t)],
     "in use by another repscope run (pid 4242)"),
    ("out-name-too-long", lambda t: ["invert", "sample:chelsea", *_CONV_STEM, "--out", str(t / ("x" * 300))],
     "File name too long. Use a shorter --out path"),
    ("stdout-is-full", lambda t: ["models"], "cannot write to standard output: No space left on device",
     _stdout_is_full),
]


@pytest.mark.parametrize("case, make, fragment, setup", [(*c, None)[:4] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_error_case(case, make, fragment, setup, tmp_path, capsys, monkeypatch):
    """``setup(monkeypatch, tmp_path)``, when a row has one, changes the environment (e.g. a full disk)."""
    if case == "cuda-without-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case == "mps-without-mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    monkeypatch.chdir(tmp_path)
    argv = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    if setup is not None:
        setup(monkeypatch, tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repscope: error:"), err
    assert fragment in lines[0], lines[0]
    assert "code ran" not in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no partial file


def _loads(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_handled_safetensors_named_pth(tmp_path, capsys):
    out, err = _loads(["layers", "torchvision:squeezenet1_1", "--weights", _safetensors_named_pth(tmp_path)], capsys)
    assert "features.0" in out and "classifier.1" in out and err == ""


def test_handled_float16_checkpoint_says_it_casts(tmp_path, capsys, caplog):
    """One ``repscope: note:`` line (logging's last-resort handler prints it alone on stderr; pytest captures it)."""
    argv = _small_checkpoint(tmp_path, "half.pth", lambda s: s.update({k: v.half() for k, v in s.items()}))
    with caplog.at_level("WARNING", logger="repscope.checkpoints"):
        out, _ = _loads(argv, capsys)
    assert "classifier.1" in out
    (record,) = caplog.records
    assert record.message.startswith("repscope: note:") and "52 float16 -> float32" in record.message


def test_existing_output_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.json").write_text("{}")
    code = main(["invert", "sample:chelsea", "--layer", "blocks.0", "--iters", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["precious.json"]


def test_nan_during_optimisation_keeps_finished_items_and_last_good_image(tmp_path, capsys, monkeypatch):
    from repscope.layers import Representation

    calls = {"n": 0}
    real_forward = Representation.forward

    def flaky_forward(self, images01):  # Φ turns NaN after the target and 5 iterations of the 2nd layer
        out = real_forward(self, images01)
        if self.layer == "blocks.0":
            calls["n"] += 1
            if calls["n"] > 6:
                return out * float("nan")
        return out

    monkeypatch.setattr(Representation, "forward", flaky_forward)
    out = tmp_path / "out"
    code = main(["invert", "sample:chelsea", "--layer", "conv_stem", "--layer", "blocks.0", "--iters", "12",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and re.search(r"NaN/Inf at iteration \d+", err) and "last good" in err
    record = json.loads((out / "result.json").read_text())
    assert list(record["items"]) == ["conv_stem"] and record["complete"] is False
    assert (out / "invert_conv_stem.png").is_file() and (out / "invert_blocks.0.last-good.png").is_file()
    assert not (out / "invert_blocks.0.png").exists()


HANDLED_CASES = [
    ("one-pixel-image", lambda t: _png(t / "one.png", np.array([[[200, 10, 10]]], dtype=np.uint8))),
    ("16-bit-png", lambda t: _png(t / "deep.png", (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))),
    ("palette-png", lambda t: (Image.new("RGB", (32, 32), "red").convert("P").save(t / "p.png"), str(t / "p.png"))[1]),
    ("alpha-png", lambda t: (Image.new("RGBA", (32, 32), (255, 0, 0, 128)).save(t / "a.png"), str(t / "a.png"))[1]),
    ("cmyk-jpeg", lambda t: (Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(t / "c.jpg"), str(t / "c.jpg"))[1]),
    ("png-named-jpg", lambda t: (Image.new("RGB", (32, 32), "green").save(t / "g.jpg", format="PNG"),
                                 str(t / "g.jpg"))[1]),
]


@pytest.mark.parametrize("case, make", HANDLED_CASES, ids=[c[0] for c in HANDLED_CASES])
def test_handled_case_classifies(case, make, tmp_path, capsys):
    code = main(["classify", make(tmp_path), "--top", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (item,) = json.loads(out)
    assert 0 <= item["top"][0]["index"] < 1000 and 0 < item["top"][0]["prob"] <= 1


# ---------------------------------------------------------------- the Python API: the same errors as the CLI
def _tiny():
    from repscope.models import wrap

    torch.manual_seed(0)
    return wrap(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()), input_size=8, name="tiny")


def _api_cases():
    from repscope import preimage
    from repscope.layers import Representation, features
    from repscope.preimage import PreimageConfig

    phi = lambda: Representation(_tiny(), "1")  # noqa: E731
    x = torch.rand(1, 3, 8, 8)
    return [
        ("features-float64", lambda: features(_tiny(), x.double(), "1"), "are float64 but the model computes in float32"),
        ("features-meta", lambda: features(_tiny(), x.to("meta"), "1"), "on the meta device"),
        ("features-empty-batch", lambda: features(_tiny(), x[:0], "1"), "is empty"),
        ("invert-float64", lambda: preimage.invert(phi(), x.double(), iters=1), "float64 but the model"),
        ("maximize-no-units", lambda: preimage.maximize(phi(), [], size=(8, 8), iters=1), "no unit to maximise"),
        ("invert-zero-lr", lambda: preimage.invert(phi(), x, config=PreimageConfig(lr=0.0, iters=1)), "lr=0.0"),
        ("maximize-negative-lr", lambda: preimage.maximize(phi(), 0, size=(8, 8), config=PreimageConfig(lr=-1.0),
                                                           iters=1), "finite number > 0"),
        ("caricature-nan-lr", lambda: preimage.caricature(phi(), x, config=PreimageConfig(lr=float("nan")), iters=1),
         "lr=nan"),
        ("invert-zero-iters", lambda: preimage.invert(phi(), x, iters=0), "at least 1 iteration"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _api_cases()])
def test_python_api_error_case(case):
    from repscope.errors import RepscopeError

    _, call, fragment = next(c for c in _api_cases() if c[0] == case)
    with pytest.raises(RepscopeError) as info:
        call()
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_saliency_before_any_rectifier_runs_without_warnings(tmp_path, capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the run
        code = main(["saliency", "sample:chelsea", "--layer", "conv_stem", "--top-k", "2", "--quiet",
                     "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert code == 0 and err == "", err
    record = json.loads((tmp_path / "o" / "result.json").read_text())
    assert record["rectifiers"] == 0 and set(record["items"]) == {"gradient", "deconvnet", "guided"}
    guided = np.asarray(Image.open(tmp_path / "o" / "saliency_guided.png"))  # no rectifier: rules change nothing
    assert np.array_equal(guided, np.asarray(Image.open(tmp_path / "o" / "saliency_gradient.png")))
