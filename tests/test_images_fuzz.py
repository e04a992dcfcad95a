"""Property tests: any image Pillow can write, of any size and mode, loads as finite RGB in [0, 1]."""

from __future__ import annotations

import io

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from repscope import images
from repscope.errors import ImageError

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "CMYK", "I", "F"]


@st.composite
def pillow_images(draw):
    mode = draw(st.sampled_from(MODES))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(0, 2**20, (h, w), dtype=np.int32))
    elif mode == "F":
        img = Image.fromarray(rng.random((h, w), dtype=np.float32) * 300)
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F", "I;16") else draw(st.sampled_from(["PNG", "TIFF", "BMP"]))
    if fmt == "BMP" and mode in ("LA", "RGBA", "I;16"):
        fmt = "PNG"
    return img, fmt


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pillow_images())
def test_any_image_loads_as_finite_rgb(sample):
    img, fmt = sample
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    out = images.decode_image(buffer.getvalue(), "fuzz")
    assert out.shape == (3, img.height, img.width) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_are_an_image_error_or_an_image(data):
    try:
        out = images.decode_image(data, "bytes")
    except ImageError as err:
        assert "\n" not in str(err)
    else:
        assert out.dim() == 3 and out.shape[0] == 3


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 64))
def test_resize_center_crop_any_size(h, w, size):
    out = images.resize_center_crop(torch.rand(3, h, w), size)
    assert out.shape == (3, size, size) and out.min() >= 0 and out.max() <= 1
