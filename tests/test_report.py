"""``repscope report``: one self-contained page from the folders each command writes.

The folders are made once per module by the real commands at tiny settings (a few iterations),
through ``repscope.report.demo.run_command`` so that they record their command line as a user's
run does. The page is checked as a browser would see it: parsed HTML, every image a decodable
``data:`` PNG, no network asset, and (where Chromium is installed; always in CI) rendered by
headless Chromium through Playwright with no console error.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repscope.cli import main
from repscope.report import ReportError, build_report, find_result_folders, renderer
from repscope.report.analysis import map_cosines
from repscope.report.demo import run_command
from repscope.report.folders import command_line, load_folder
from repscope.report.html import fmt, png_data_uri
from repscope.report.sections import RENDERERS

CHROMIUM = "/usr/bin/chromium"

#: one small run per command: (folder name, argv after 'repscope')
RUNS = {
    "invert": ["invert", "sample:chelsea", "--layer", "blocks.0", "--layer", "blocks.1", "--iters", "3"],
    "maximize": ["maximize", "--layer", "blocks.0", "--unit", "3", "--iters", "3"],
    "caricature": ["caricature", "sample:coffee", "--layer", "blocks.0", "--iters", "3"],
    "saliency": ["saliency", "sample:chelsea", "--top-k", "2"],
    "hog": ["invert", "sample:chelsea", "--model", "hog", "--iters", "3"],
    "equivariance": ["equivariance", "--transform", "vflip", "--layer", "blocks.0", "--fit-crops", "8", "--test", "4",
                     "--no-agreement"],
    "stitch": ["stitch", "--from", "efficientnet_lite0:blocks.1", "--to", "efficientnet_lite1:blocks.1", "--fit", "both",
               "--steps", "2", "--fit-crops", "8", "--test-crops", "4"],
    "similarity": ["similarity", "--model", "efficientnet_lite0", "--layer-a", "blocks.0", "--layer-a", "blocks.2",
                   "--layer-b", "blocks.0", "--layer-b", "blocks.2", "--crops", "8", "--batch-size", "4"],
}


class PageParser(HTMLParser):
    """Collects every tag's attributes, the text, and the ids of sections."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def check_page(path: Path) -> tuple[PageParser, list[Image.Image]]:
    """Parse the page; every <img> is a decodable data: PNG; nothing refers to http(s)."""
    page = parse(path)
    images = []
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.lower().startswith(("http://", "https://", "//")), (tag, value[:80])
        if tag == "img":
            src = attrs["src"]
            assert src.startswith("data:image/png;base64,")
            im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
            assert im.format == "PNG"
            im.load()
            assert (im.width, im.height) == (int(attrs["width"]), int(attrs["height"]))
            images.append(im)
    assert "http://" not in path.read_text() and "https://" not in path.read_text()
    return page, images


def check_in_browser(path: Path, screenshot: Path, width: int = 1280) -> None:
    """Headless Chromium opens the page from file://: no console error, every image decoded, non-blank."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: apt-get install chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} on this machine (apt-get install chromium); browser check skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]'); browser check skipped")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: errors.append(f"request {r.url}") if not r.url.startswith(("file:", "data:"))
                    else None)
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : 0)")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert widths and min(widths) > 0
    assert overflow <= 1, f"the page is {overflow}px wider than a {width}px window"
    shot = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert shot.shape[1] == width and shot.std() > 10  # not blank: text and pictures


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("results")
    out = {}
    for name, argv in RUNS.items():
        out[name] = root / name
        run_command([*argv, "--out", str(out[name]), "--quiet"], show_bars=False)
    return out


def _numbers(path: Path) -> dict:
    return json.loads((path / "result.json").read_text())


@pytest.mark.parametrize("name", list(RUNS))
def test_report_on_one_folder_of_each_command(folders, name, tmp_path):
    path = build_report([folders[name]], tmp_path / "r.html")
    page, images = check_page(path)
    text = " ".join(page.text)
    assert "repscope " + " ".join(RUNS[name][:1]) in text  # the exact command line is shown
    cmd, exact = command_line(load_folder(folders[name]))
    assert exact and cmd.split()[:2] == ["repscope", RUNS[name][0]] and str(folders[name]) in cmd
    result = _numbers(folders[name])
    if RUNS[name][0] in ("invert", "maximize", "caricature"):  # pre-image commands: every item's metric, as the page formats it
        metric = {"invert": "error", "maximize": "ratio", "caricature": "gain"}[RUNS[name][0]]
        for item in result["items"].values():
            digits = {"ratio": 1, "gain": 2}.get(metric, 3)
            assert fmt(item[metric], digits) in text
        assert len(images) >= len(result["items"]) + (0 if name == "maximize" else 1)  # + the photo
    elif name == "saliency":
        for m in ("gradient", "deconvnet", "guided"):
            assert fmt(result["selectivity"][m]) in text and fmt(result["bottleneck"][m]["random"]) in text
        assert "same stripe pattern for every photo" in text  # the words that explain the DeConvNet picture
    elif name == "equivariance":
        for row in result["layers"]:
            for v in row["error"].values():
                assert fmt(v) in text
    elif name == "stitch":
        pair = result["pairs"][0]
        for fit in ("naive", "ridge", "task"):
            assert fmt(pair[fit]["agreement"]) in text
        assert fmt(pair["cka"]["linear"]) in text and "0.430" in text and "Published" in text
    else:  # similarity: the CKA matrix as an HTML table; a network with itself has CKA 1 on the diagonal
        assert len(result["cka"]) == 2 and result["cka"][0][0] == pytest.approx(1.0, abs=1e-4)
        for row in result["cka"]:
            for v in row:
                assert fmt(v, 2) in text
    if name == "hog":
        assert "66.20%" in text and "published" in text.lower()  # M&V's numbers beside ours, labelled
        assert len(images) == 5  # photo, pre-image, two glyph pictures, loss plot


def test_report_page_in_a_browser_at_desktop_and_phone_width(folders, tmp_path):
    path = build_report(list(folders.values()), tmp_path / "all.html")
    page, images = check_page(path)
    ids = [a["id"] for _, a in page.tags if "id" in a]
    hrefs = [a["href"][1:] for t, a in page.tags if t == "a" and a.get("href", "").startswith("#")]
    assert hrefs and set(hrefs) <= set(ids) and len(ids) == len(set(ids))  # the table of contents resolves
    text = " ".join(page.text)
    order = [text.index(title) for title in ("Inversion: what", "Activation maximisation", "Caricatures",
                                              "Backpropagation:", "HOG: a hand", "Equivariance:", "Equivalence:",
                                              "Similarity: CKA")]
    assert order == sorted(order)  # the talk's order, whatever order the folders were given in
    check_in_browser(path, tmp_path / "wide.png", 1280)
    check_in_browser(path, tmp_path / "phone.png", 390)


def test_folder_of_folders_expands_in_name_order(folders, tmp_path):
    root = tmp_path / "demo"
    for k, name in enumerate(["saliency", "invert"]):
        shutil.copytree(folders[name], root / f"{k:02d}-{name}")
    found = find_result_folders([root])
    assert [f.path.name for f in found] == ["00-saliency", "01-invert"]
    assert [f.command for f in found] == ["saliency", "invert"]


@pytest.mark.parametrize("damage", ["missing", "corrupt", "not-an-object", "config-missing"])
def test_missing_or_corrupt_result_is_one_error_line_and_no_page(folders, tmp_path, capsys, damage):
    bad = tmp_path / "bad-run"
    shutil.copytree(folders["invert"], bad)
    if damage == "missing":
        (bad / "result.json").unlink()
    elif damage == "corrupt":
        (bad / "result.json").write_text('{"items": {"blocks.0": ')
    elif damage == "not-an-object":
        (bad / "result.json").write_text("[1, 2]")
    else:
        (bad / "config.json").unlink()
    out = tmp_path / "page.html"
    with pytest.raises(ReportError, match="bad-run"):
        build_report([folders["saliency"], bad], out)
    assert main(["report", str(folders["saliency"]), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and err[0].startswith("repscope: error:")
    assert not out.exists() and list(tmp_path.glob("*.html")) == [] and list(tmp_path.glob(".page*")) == []


def test_not_a_results_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no result.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _mystery_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"command": "mystery", "model": "m0", "seed": 7}))
    (folder / "result.json").write_text(json.dumps({"score": 0.8125, "nested": {"count": 12, "name": "x"},
                                                    "loss_curve": [9.0] * 50}))
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(folder / "picture.png")
    return folder


def test_unknown_command_gets_a_generic_section(tmp_path):
    path = build_report([_mystery_folder(tmp_path)], tmp_path / "r.html")
    page, images = check_page(path)
    text = " ".join(page.text)
    assert "0.812" in text and "nested.count" in text and "12" in text and "picture.png" in text
    assert "Other results" in text and "repscope mystery" in text and len(images) == 1
    assert "loss_curve" not in text


def test_a_new_command_adds_one_renderer(tmp_path):
    from repscope.report.html import Section

    @renderer("mystery")
    def render_mystery(folder):
        return Section("similarity", "Mystery heat-map", f"<p>score is {folder.result['score']}</p>")

    try:
        text = build_report([_mystery_folder(tmp_path)], tmp_path / "r.html").read_text()
    finally:
        del RENDERERS["mystery"]
    assert "score is 0.8125" in text and "Similarity: CKA" in text and "Other results" not in text


def test_command_rebuilt_from_config_without_argv(folders, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(folders["invert"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("argv")
    (folder / "config.json").write_text(json.dumps(config))
    cmd, exact = command_line(load_folder(folder))
    assert not exact
    assert cmd == (f"repscope invert sample:chelsea --layer blocks.0 --layer blocks.1 --iters 3 "
                   f"--out {folders['invert']} --quiet")


def test_png_data_uri_downscales_and_decodes(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (300, 2000, 3), dtype=np.uint8)
    uri, w, h = png_data_uri(array, max_width=500)
    assert (w, h) == (500, 75)
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert im.size == (500, 75) and im.format == "PNG"
    small = np.zeros((4, 4, 4), np.uint8)  # RGBA, fully transparent: flattened onto white
    uri, w, h = png_data_uri(Image.fromarray(small, "RGBA"))
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    assert (w, h) == (4, 4) and np.asarray(im).min() == 255


def test_map_cosines_hand_computed(tmp_path):
    """cos of centred signed maps: a map with itself 1, with its negation -1, orthogonal maps 0."""
    def folder(name, values):
        f = tmp_path / name
        f.mkdir()
        Image.fromarray(np.asarray(values, np.uint8).reshape(1, 2, 3)).save(f / "saliency_deconvnet.png")
        (f / "result.json").write_text("{}")
        (f / "config.json").write_text('{"command": "saliency"}')
        return load_folder(f)
    # centred values (v/255 - 0.5): a = (+x, 0, 0, 0, 0, 0) style vectors built from 0, 127.5±d
    up = folder("a", [255, 128, 128, 128, 128, 128])
    same = folder("b", [255, 128, 128, 128, 128, 128])
    down = folder("c", [0, 128, 128, 128, 128, 128])
    assert map_cosines([up, same], "deconvnet") == pytest.approx([1.0])
    cos = map_cosines([up, down], "deconvnet")[0]
    # by hand: a = (0.5, 0.00196, ...), b = (-0.5, 0.00196, ...): (−0.25 + 5·0.00196²) / (0.25 + 5·0.00196²)
    e = 128 / 255 - 0.5
    assert cos == pytest.approx((-0.25 + 5 * e * e) / (0.25 + 5 * e * e), rel=1e-12)


def test_fmt():
    assert fmt(0.123456) == "0.123" and fmt(3) == "3" and fmt(None) == "—" and fmt(2.5e-5) == "2.5e-05"
    assert fmt(1234567.0) == "1.23e+06" and fmt(True) == "yes" and fmt(float("nan")) == "nan"


def test_detect_sections(tmp_path):
    """A ``detect eval`` folder (the command's result.json layout) gives the AP / CorLoc table and the
    talk's published numbers; a real ``detect IMAGE`` run is rendered too where the command exists."""
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"command": "detect", "target": ["eval"], "model": "m", "seed": 0}))
    (folder / "result.json").write_text(json.dumps({
        "ap": [1.0, 0.25], "ap_all": [1.0, 0.3125], "map": 0.625, "map_all": 0.65625,
        "corloc": {"corloc": [1.0, 0.5], "mean": 0.75}, "classes": ["cat", "cup"], "method": "fast-rcnn",
        "data": "synthetic/test", "images": 4}))
    paths = [folder]
    from repscope.report.demo import available_commands
    if "detect" in available_commands():
        paths.append(tmp_path / "images")
        run_command(["detect", "sample:chelsea", "--imagenet", "--proposals", "20", "--out", str(paths[-1]), "--quiet"],
                    show_bars=False)
    page, images = check_page(build_report(paths, tmp_path / "r.html"))
    text = " ".join(page.text)
    for value in ("0.250", "0.312", "0.625", "0.656", "0.750", "54.2", "39.3"):
        assert value in text
    assert text.count("Published: Girshick") == 1  # once per chapter, not per section
    if len(paths) == 2:
        top = json.loads((paths[1] / "result.json").read_text())["images"][0]["detections"][0]
        assert fmt(top["score"]) in text and len(images) == 1
