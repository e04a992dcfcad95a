"""Image loading in every Pillow mode, folders, samples, resizing and atomic saving."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from repscope import images
from repscope.errors import ImageError


def _save(img: Image.Image, path, fmt=None):
    img.save(path, format=fmt)
    return path


def test_sample_photos_load_in_unit_range():
    img = images.load_image("sample:chelsea")
    assert img.shape == (3, 300, 451) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    from skimage import data
    assert torch.allclose(img, torch.from_numpy(data.chelsea()).permute(2, 0, 1).float() / 255)
    for name in images.NATURAL_SAMPLES:
        assert images.load_image(f"sample:{name}").shape[0] == 3


def test_unknown_sample_suggests_names():
    with pytest.raises(ImageError, match="closest: chelsea"):
        images.load_image("sample:chelsee")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (9, 7), dtype=np.uint16))
    else:
        img = rgb.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    path = _save(img, tmp_path / f"x.{fmt.lower()}", fmt)
    out = images.load_image(path)
    assert out.shape == (3, 9, 7) and 0 <= out.min() and out.max() <= 1
    if mode == "I;16":
        expected = torch.from_numpy(np.asarray(img, dtype=np.float32) / 65535)
        assert torch.allclose(out[0], expected, atol=1e-6)
    if mode == "L":
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_alpha_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = images.load_image(_save(img, tmp_path / "clear.png"))
    assert torch.allclose(out, torch.ones_like(out))


def test_corrupt_truncated_empty_missing(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(good, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(good.getvalue()[:200])
    (tmp_path / "noise.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    for name, pattern in (("cut.jpg", "corrupt or truncated"), ("noise.png", "not an image"),
                          ("empty.png", "empty"), ("missing.png", "does not exist")):
        with pytest.raises(ImageError, match=pattern):
            images.load_image(tmp_path / name)


def test_folders_load_sorted_and_empty_folder_refused(tmp_path):
    for i, colour in enumerate(["red", "green"]):
        Image.new("RGB", (10, 20), colour).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    batch, names = images.load_images(tmp_path, size=8)
    assert batch.shape == (2, 3, 8, 8) and names[0].endswith("0.png")
    assert torch.allclose(batch[0, 0], torch.ones(8, 8)) and torch.allclose(batch[1, 1], torch.full((8, 8), 128 / 255), atol=0.01)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="no image files"):
        images.load_images(empty)


def test_resize_center_crop_keeps_the_centre():
    img = torch.zeros(3, 100, 200)
    img[:, :, 50:150] = 1.0  # the central square is white
    out = images.resize_center_crop(img, 50)
    assert out.shape == (3, 50, 50) and torch.allclose(out[..., 1:-1], torch.ones(3, 50, 48))
    assert out.min() > 0.8  # only antialiasing at the crop edge


def test_save_image_round_trip_and_is_atomic(tmp_path):
    img = torch.rand(3, 16, 24)
    path = images.save_image(img, tmp_path / "a" / "img.png")
    back = images.load_image(path)
    assert torch.allclose(back, img, atol=0.5 / 255 + 1e-6)
    assert sorted(p.name for p in path.parent.iterdir()) == ["img.png"]
    with pytest.raises(Exception):
        images.save_image(torch.full((3, 4, 4), float("nan")), tmp_path / "a" / "img.png")
    assert torch.allclose(images.load_image(path), back)  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["img.png"]


def test_save_grid_with_labels(tmp_path):
    path = images.save_grid(torch.rand(5, 3, 20, 20), tmp_path / "grid.png", labels=list("abcde"), ncols=3)
    out = images.load_image(path)
    assert out.shape[1] > 2 * 20 and out.shape[2] > 3 * 20
