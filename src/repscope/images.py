"""Images in and out: files, folders and shipped sample photos -> ``(N, 3, H, W)`` tensors in [0, 1].

Any file Pillow reads is accepted (grayscale, palette, RGBA, CMYK, 16-bit are converted to RGB;
alpha is composited on white). ``sample:NAME`` names a photo shipped with scikit-image
(``astronaut``, ``chelsea``, ``coffee``, ``rocket``, ``motorcycle_left``, ...) or scikit-learn
(``china``, ``flower``). Saving is atomic (temporary name, then rename).

Example:
    >>> batch, names = load_images(["sample:chelsea", "sample:coffee"], size=224)
    >>> tuple(batch.shape)
    (2, 3, 224, 224)
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, ShapeError, unknown
from .io import write_bytes

SAMPLE_PREFIX = "sample:"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
#: The natural colour photos used as default data by the engines (fit/held-out splits, reference activations).
NATURAL_SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right",
                   "hubble_deep_field", "immunohistochemistry", "retina", "china", "flower")
_SKIMAGE_FILES = {"astronaut": "astronaut.png", "chelsea": "chelsea.png", "cat": "chelsea.png",
                  "coffee": "coffee.png", "rocket": "rocket.jpg", "motorcycle_left": "motorcycle_left.png",
                  "motorcycle_right": "motorcycle_right.png", "hubble_deep_field": "hubble_deep_field.jpg",
                  "immunohistochemistry": "ihc.png", "retina": "retina.jpg", "camera": "camera.png",
                  "moon": "moon.png", "coins": "coins.png", "brick": "brick.png", "grass": "grass.png",
                  "gravel": "gravel.png", "page": "page.png", "text": "text.png", "logo": "logo.png",
                  "color": "color.png", "horse": "horse.png"}
_SKLEARN_FILES = {"china": "china.jpg", "flower": "flower.jpg"}


def sample_names() -> list[str]:
    """Names accepted after ``sample:``."""
    return sorted({**_SKIMAGE_FILES, **_SKLEARN_FILES})


def sample_path(name: str) -> Path:
    """The file of a shipped sample photo; :class:`ImageError` with the closest names if unknown."""
    if name in _SKIMAGE_FILES:
        import skimage.data
        return Path(skimage.data.__file__).parent / _SKIMAGE_FILES[name]
    if name in _SKLEARN_FILES:
        import sklearn.datasets
        return Path(sklearn.datasets.__file__).parent / "images" / _SKLEARN_FILES[name]
    raise ImageError(unknown("sample image", name, sample_names(), "Use sample:NAME with one of these."))


def load_image(spec: str | os.PathLike) -> torch.Tensor:
    """Read one image (a file path or ``sample:NAME``) as a float tensor ``(3, H, W)`` in [0, 1]."""
    spec_str = os.fspath(spec)
    path = sample_path(spec_str[len(SAMPLE_PREFIX):]) if spec_str.startswith(SAMPLE_PREFIX) else Path(spec_str)
    if not path.exists():
        raise ImageError(f"image '{spec_str}' does not exist. Check the path (or use sample:NAME, e.g. sample:chelsea).")
    if path.is_dir():
        raise ImageError(f"'{spec_str}' is a folder; pass it where several images are accepted, or name one file.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read '{spec_str}': {err.strerror}. Check its permissions.") from None
    return decode_image(data, spec_str)


def decode_image(data: bytes, label: str = "image") -> torch.Tensor:
    """Decode image bytes to ``(3, H, W)`` float32 in [0, 1]; any Pillow mode is converted to RGB."""
    if not data:
        raise ImageError(f"'{label}' is empty (0 bytes). Use a valid image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                array = _to_rgb_array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"'{label}' is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels). "
                         "Downscale it first.") from None
    except UnidentifiedImageError:
        raise ImageError(f"'{label}' is not an image Pillow can read (corrupt or wrong format). "
                         "Use a PNG or JPEG file.") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"'{label}' is corrupt or truncated ({err}). Re-export the image.") from None
    if not np.isfinite(array).all():
        raise ImageError(f"'{label}' holds NaN or infinite pixel values. Re-export it as 8- or 16-bit.")
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """A Pillow image of any mode as ``(H, W, 3)`` float32 in [0, 1] (alpha composited on white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        raw = np.asarray(img, dtype=np.float64)
        top = 65535.0 if raw.max() > 255 or img.mode.startswith("I;16") else 255.0
        gray = np.clip(raw / top, 0, 1).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        gray = np.clip(gray / 255.0 if gray.max() > 1 else gray, 0, 1)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (by suffix) directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"folder '{folder}' holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}). "
                         "Point to a folder of images.")
    return files


def expand_specs(specs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Expand folders into their image files; keep files and ``sample:NAME`` as they are."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    expanded: list[str] = []
    for spec in specs:
        spec = os.fspath(spec)
        if not spec.startswith(SAMPLE_PREFIX) and Path(spec).is_dir():
            expanded.extend(str(p) for p in list_image_files(spec))
        else:
            expanded.append(spec)
    if not expanded:
        raise ImageError("no images given. Name image files, folders, or sample:NAME.")
    return expanded


def load_images(specs: str | os.PathLike | Sequence[str | os.PathLike], size: int | None = None
                ) -> tuple[torch.Tensor, list[str]]:
    """Load files, folders and samples as one batch ``(N, 3, size, size)`` in [0, 1], and their names.

    Each image is resized (shorter side to ``size``) and centre-cropped; with ``size=None`` all
    images must already share one shape.
    """
    names = expand_specs(specs)
    images = [load_image(name) for name in names]
    if size is not None:
        images = [resize_center_crop(img, size) for img in images]
    elif len({tuple(img.shape) for img in images}) > 1:
        raise ShapeError("images have different sizes; pass size=... to resize and centre-crop them.")
    return torch.stack(images), names


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (antialiased bilinear), then centre-crop to ``size``².

    Accepts ``(3, H, W)`` or ``(N, 3, H, W)`` and returns the same rank.
    """
    single = images.dim() == 3
    batch = images[None] if single else images
    h, w = batch.shape[-2:]
    if min(h, w) < 1:
        raise ShapeError(f"image of size {h}x{w} has no pixels. Use a real image.")
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        batch = F.interpolate(batch, size=(new_h, new_w), mode="bilinear", align_corners=False,
                              antialias=scale < 1).clamp(0, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    batch = batch[..., top:top + size, left:left + size]
    return batch[0] if single else batch


def to_uint8(image01: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` (or ``(H, W)``) in [0, 1] -> ``(H, W, 3)`` (or ``(H, W)``) uint8, clamped and rounded."""
    array = image01.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return (array.permute(1, 2, 0) if array.dim() == 3 else array).numpy()


def save_image(image01: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1] as a PNG, atomically."""
    if image01.dim() == 4 and image01.shape[0] == 1:
        image01 = image01[0]
    if image01.dim() != 3 or image01.shape[0] not in (1, 3):
        raise ShapeError(f"save_image expects (3, H, W), got {tuple(image01.shape)}.")
    if not torch.isfinite(image01).all():
        raise ShapeError("image contains NaN/Inf values; nothing was saved.")
    if image01.shape[0] == 1:
        image01 = image01.expand(3, -1, -1)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image01)).save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())


def make_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile ``(N, 3, H, W)`` into one ``(3, H', W')`` image on white, ``ncols`` per row."""
    from torchvision.utils import make_grid as tv_make_grid
    n = images.shape[0]
    ncols = ncols or min(n, 8)
    return tv_make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=ncols, padding=pad, pad_value=1.0)


def save_grid(images: torch.Tensor, path: str | os.PathLike, labels: Sequence[str] | None = None,
              ncols: int | None = None) -> Path:
    """Save ``(N, 3, H, W)`` in [0, 1] as a labelled grid PNG (labels drawn under each tile), atomically."""
    if labels is None:
        return save_image(make_grid(images, ncols), path)
    if len(labels) != images.shape[0]:
        raise ShapeError(f"{images.shape[0]} images but {len(labels)} labels.")
    from PIL import ImageDraw
    n, _, h, w = images.shape
    ncols = ncols or min(n, 8)
    nrows = (n + ncols - 1) // ncols
    label_h, pad = 14, 2
    canvas = Image.new("RGB", (ncols * (w + pad) + pad, nrows * (h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        x = pad + (i % ncols) * (w + pad)
        y = pad + (i // ncols) * (h + label_h + pad)
        canvas.paste(Image.fromarray(to_uint8(images[i])), (x, y))
        draw.text((x + 2, y + h + 1), str(labels[i])[: max(4, w // 6)], fill="black")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())
