"""Images from untrusted input: bounded sizes, regular files only, EXIF orientation, AVIF, duplicates,
samples without network, and the one image-batch check (`images.check_images`)."""

from __future__ import annotations

import os
import socket
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from repscope import bounds, images, models
from repscope.errors import BudgetError, ImageError, RangeError, ShapeError


def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def test_extreme_aspect_ratio_is_refused_before_allocating(tmp_path):
    path = _png(tmp_path / "line.png", np.zeros((1, 100_000, 3)))
    assert path.stat().st_size < 1000  # a few hundred bytes on disk
    with pytest.raises(BudgetError) as err:
        images.load_images([path], size=224)
    # 224 x 22,400,000 x 3 float32 = 60,211,200,000 bytes = 56.1 GiB
    assert "56.1 GiB" in str(err.value) and "1x3x224x22400000" in str(err.value) and "\n" not in str(err.value)


def test_budget_arithmetic_and_environment_override(monkeypatch):
    assert bounds.tensor_bytes((2, 3, 4, 5)) == 2 * 3 * 4 * 5 * 4
    assert bounds.tensor_bytes((10,), torch.float16) == 20 and bounds.tensor_bytes((0, 7)) == 0
    monkeypatch.setenv(bounds.BUDGET_ENV, "1M")
    assert bounds.memory_budget() == 1 << 20
    bounds.check_tensor_budget((1, 3, 256, 256))  # 786,432 bytes: fits in 1 MiB
    with pytest.raises(BudgetError, match=r"1\.0 MiB budget"):
        bounds.check_tensor_budget((1, 3, 256, 342), what="x")  # 1,050,624 bytes
    with pytest.raises(BudgetError, match="would need"):
        images.load_images(["sample:chelsea", "sample:coffee"], size=300)  # 2x3x300x300x4 = 2.06 MiB
    monkeypatch.setenv(bounds.BUDGET_ENV, "lots")
    with pytest.raises(RangeError, match="not a size"):
        bounds.memory_budget()


def test_budget_follows_the_address_space_limit(monkeypatch):
    import resource
    monkeypatch.delenv(bounds.BUDGET_ENV, raising=False)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (8 << 30, resource.RLIM_INFINITY))
    assert bounds.memory_budget() <= 2 << 30  # a quarter of 8 GiB at most


def test_decoded_size_is_bounded(tmp_path, monkeypatch):
    path = _png(tmp_path / "big.png", np.zeros((600, 600, 3)))
    monkeypatch.setenv(bounds.BUDGET_ENV, "4M")  # decoding needs 3x600x600x4 = 4.1 MiB
    with pytest.raises(BudgetError, match=r"decoding .*big\.png' \(600x600\) would need 4\.1 MiB"):
        images.load_image(path)


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "224"])
def test_bad_sizes_are_shape_errors(size):
    with pytest.raises(ShapeError, match="positive integer"):
        images.resize_center_crop(torch.rand(3, 8, 8), size)


def test_fifo_device_and_folder_named_like_an_image(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            images.load_image(fifo)
        except ImageError as err:
            result["err"] = str(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO must not block"
    assert "is a FIFO" in result["err"]
    with pytest.raises(ImageError, match="is a device"):
        images.load_image("/dev/zero")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="is a folder"):
        images.load_image(tmp_path / "dir.png")
    _png(tmp_path / "real.png", np.zeros((4, 4, 3)))
    assert [p.name for p in images.list_image_files(tmp_path)] == ["real.png"]  # FIFO and folder skipped


def test_endless_file_is_cut_at_the_limit(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG" + b"\0" * 5000)
    with pytest.raises(ImageError, match="larger than 4.0 KiB"):
        images.read_regular_file(path, limit=4096)
    assert images.read_regular_file(path, limit=5004) == path.read_bytes()


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :10] = (255, 0, 0)  # the left quarter is red
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = images.load_image(tmp_path / "phone.jpg")
    assert out.shape == (3, 40, 20)  # portrait, as a viewer shows it
    assert out[0, :10].mean() > 0.9 and out[1, :10].mean() < 0.1  # the red strip is now at the top
    assert out[0, 20:].mean() < 0.1


def test_avif_is_read_as_a_file_and_from_a_folder(tmp_path):
    from PIL import features
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "a.avif", quality=100)
    Image.new("RGB", (16, 16), (30, 200, 30)).save(tmp_path / "b.png")
    batch, names = images.load_images(tmp_path)
    assert [os.path.basename(n) for n in names] == ["a.avif", "b.png"]
    single = images.load_image(tmp_path / "a.avif")
    assert torch.equal(batch[0], single)
    assert abs(single[0].mean().item() - 200 / 255) < 0.03 and abs(single[1].mean().item() - 30 / 255) < 0.03


def test_same_photo_twice_is_one_content(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    _png(tmp_path / "a.png", array)
    Image.fromarray(array).save(tmp_path / "copy.bmp")  # same pixels, another format and name
    _png(tmp_path / "other.png", 255 - array)
    specs = [tmp_path / "a.png", tmp_path / "other.png", tmp_path / "copy.bmp", "sample:chelsea", "sample:cat"]
    loaded = [images.load_image(s) for s in specs]
    assert images.content_hash(loaded[0]) == images.content_hash(loaded[2])
    assert images.content_hash(loaded[0]) != images.content_hash(loaded[1])
    assert images.unique_indices(loaded) == [0, 1, 3]  # sample:cat is sample:chelsea
    batch, names = images.load_images(specs, size=8, unique=True)
    assert batch.shape == (3, 3, 8, 8) and [os.path.basename(n) for n in names] == ["a.png", "other.png", "sample:chelsea"]


def test_samples_load_with_the_network_blocked(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for name in images.sample_names():
        img = images.load_image(f"sample:{name}")
        assert img.shape[0] == 3 and img.shape[1] >= 64 and 0 <= img.min() <= img.max() <= 1


def test_a_sample_missing_from_the_package_names_the_fix(monkeypatch):
    monkeypatch.setitem(images._SKIMAGE_FILES, "chelsea", "moved_to_download.png")
    with pytest.raises(ImageError, match="never does") as err:
        images.load_image("sample:chelsea")
    assert "scikit-image" in str(err.value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_model_refuses_other_float_dtypes_in_one_line(lite0, dtype):
    with pytest.raises(ShapeError, match=f"are {str(dtype)[6:]} but the model computes in float32"):
        lite0(torch.rand(1, 3, 32, 32, dtype=dtype))


def test_float64_model_takes_float64_images():
    model = models.wrap(torch.nn.Conv2d(3, 2, 1).double())
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    assert model(x).dtype == torch.float64 and model(x).shape == (2, 2, 5, 5)


@pytest.mark.parametrize("batch, fragment", [
    (torch.rand(0, 3, 8, 8), "is empty"),
    (torch.rand(2, 3, 0, 8), "is empty"),
    (torch.rand(1, 3, 8, 8, device="meta"), "meta device"),
    (torch.rand(1, 3, 8, 8).to_sparse(), "sparse_coo"),
    (torch.rand(1, 1, 8, 8), "(N, 3, H, W)"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "Divide uint8"),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    (np.zeros((1, 3, 8, 8), dtype=np.float32), "torch.Tensor"),
])
def test_bad_batches_are_shape_errors(batch, fragment):
    with pytest.raises(ShapeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        images.check_images(batch)
    model = models.wrap(torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(ShapeError):
        model(batch)


def test_preprocessing_refuses_one_channel_batches_instead_of_broadcasting():
    pre = models.Preprocessing(8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        pre.normalize(torch.rand(1, 1, 8, 8))
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(pre.normalize(x), (x - 0.5) / 0.25)
