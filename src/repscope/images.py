"""Images in and out: files, folders and shipped sample photos -> ``(N, 3, H, W)`` tensors in [0, 1].

Any file Pillow reads is accepted (grayscale, palette, RGBA, CMYK, 16-bit are converted to RGB;
alpha is composited on white; the EXIF orientation of phone photos is applied). ``sample:NAME``
names a photo shipped with scikit-image (``astronaut``, ``chelsea``, ``coffee``, ``rocket``,
``motorcycle_left``, ...) or scikit-learn (``china``, ``flower``); they are read from the installed
packages, never downloaded. Saving is atomic (temporary name, then rename).

Nothing a user names is trusted: only regular files are read (not FIFOs, devices or endless
files), at most :func:`repscope.bounds.memory_budget` bytes of them; the decoded image and every
resized batch are checked against the same budget before they are allocated
(:func:`repscope.bounds.check_tensor_budget`), so a few-hundred-byte 1x100000 PNG resized to 224
(60 GB) is one line. :func:`check_images` is the one validation of an image batch handed to a model.

Example:
    >>> batch, names = load_images(["sample:chelsea", "sample:coffee"], size=224)
    >>> tuple(batch.shape)
    (2, 3, 224, 224)
    >>> len(unique_indices([batch[0], batch[1], batch[0].clone()]))
    2
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .bounds import check_tensor_budget, format_bytes, memory_budget
from .errors import ImageError, ShapeError, unknown
from .io import write_bytes

SAMPLE_PREFIX = "sample:"
#: Suffixes taken from folders; a file named on its own is read whatever its suffix (by content).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
                  ".avif"}
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
#: The largest image file read (1 GiB): far above any real photo, far below an endless file.
MAX_FILE_BYTES = 1 << 30
#: Float dtypes a model may take; an image batch must match the model's own (see :func:`check_images`).
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def sample_names() -> list[str]:
    """Names accepted after ``sample:``."""
    return sorted({**_SKIMAGE_FILES, **_SKLEARN_FILES})


def sample_path(name: str) -> Path:
    """The installed file of a sample photo (never downloaded); :class:`ImageError` if unknown or not shipped.

    scikit-image keeps these photos inside its package today; a release that fetches them on demand
    would need the network, which repscope never uses: that case is one line naming the fix.
    """
    if name in _SKIMAGE_FILES:
        import skimage
        import skimage.data
        path, package = Path(skimage.data.__file__).parent / _SKIMAGE_FILES[name], f"scikit-image {skimage.__version__}"
    elif name in _SKLEARN_FILES:
        import sklearn
        import sklearn.datasets
        path = Path(sklearn.datasets.__file__).parent / "images" / _SKLEARN_FILES[name]
        package = f"scikit-learn {sklearn.__version__}"
    else:
        raise ImageError(unknown("sample image", name, sample_names(), "Use sample:NAME with one of these."))
    if not path.is_file():
        raise ImageError(f"sample photo '{name}' is not shipped by the installed {package} ({path.name} would have to "
                         "be downloaded, which repscope never does). Install scikit-image 0.22-0.26, or pass a file.")
    return path


def load_image(spec: str | os.PathLike) -> torch.Tensor:
    """Read one image (a file path or ``sample:NAME``) as a float tensor ``(3, H, W)`` in [0, 1]."""
    spec_str = os.fspath(spec)
    path = sample_path(spec_str[len(SAMPLE_PREFIX):]) if spec_str.startswith(SAMPLE_PREFIX) else Path(spec_str)
    if not path.exists():
        raise ImageError(f"image '{spec_str}' does not exist. Check the path (or use sample:NAME, e.g. sample:chelsea).")
    if path.is_dir():
        raise ImageError(f"'{spec_str}' is a folder; pass it where several images are accepted, or name one file.")
    return decode_image(read_regular_file(path, spec_str), spec_str)


def read_regular_file(path: str | os.PathLike, label: str | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``limit`` (default: the memory budget, at most :data:`MAX_FILE_BYTES`).

    A FIFO, socket or device (``/dev/zero``) is refused without opening it for a blocking read (a FIFO
    would wait forever for a writer); a file that grows past ``limit`` while read (or ``/proc``-like
    files whose size is unknown) is refused after ``limit + 1`` bytes.
    """
    label = os.fspath(path) if label is None else label
    limit = min(memory_budget(), MAX_FILE_BYTES) if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ImageError(f"cannot read '{label}': {err.strerror}. Check the path and its permissions.") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
            raise ImageError(f"'{label}' is {kind}, not an image file. Save the image to a regular file and pass that.")
        if os.fstat(fd).st_size > limit:
            raise ImageError(f"'{label}' is larger than {format_bytes(limit)}. Use a smaller image file.")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise ImageError(f"cannot read '{label}': {err.strerror}. Check the file.") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(f"'{label}' is larger than {format_bytes(limit)} (or endless). Use a smaller image file.")
    return data


def decode_image(data: bytes, label: str = "image") -> torch.Tensor:
    """Decode image bytes to ``(3, H, W)`` float32 in [0, 1]; any Pillow mode is converted to RGB."""
    if not data:
        raise ImageError(f"'{label}' is empty (0 bytes). Use a valid image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                check_tensor_budget((3, height, width), torch.float32, f"decoding '{label}' ({width}x{height})")
                img.load()
                array = _to_rgb_array(_upright(img))
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


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned by its EXIF orientation tag (phone photos), as a viewer shows it; unreadable tags are ignored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not make the pixels unreadable
        return img


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
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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


def load_images(specs: str | os.PathLike | Sequence[str | os.PathLike], size: int | None = None, *,
                unique: bool = False) -> tuple[torch.Tensor, list[str]]:
    """Load files, folders and samples as one batch ``(N, 3, size, size)`` in [0, 1], and their names.

    Each image is resized (shorter side to ``size``) and centre-cropped; with ``size=None`` all
    images must already share one shape. The batch is checked against the memory budget before
    any image is read. ``unique=True`` keeps only the first of images with identical pixels
    (:func:`unique_indices`), e.g. the same photo given twice under two names.
    """
    names = expand_specs(specs)
    if size is not None:
        _check_size(size)
        check_tensor_budget((len(names), 3, size, size), torch.float32, f"a batch of {len(names)} images at {size}²")
    images = [load_image(name) for name in names]
    if size is not None:
        images = [resize_center_crop(img, size) for img in images]
    elif len({tuple(img.shape) for img in images}) > 1:
        raise ShapeError("images have different sizes; pass size=... to resize and centre-crop them.")
    else:
        check_tensor_budget((len(images), *images[0].shape), torch.float32, f"a batch of {len(images)} images")
    if unique:
        keep = unique_indices(images)
        images, names = [images[i] for i in keep], [names[i] for i in keep]
    return torch.stack(images), names


def content_hash(image01: torch.Tensor) -> str:
    """SHA-256 (hex) of an image's shape and float32 pixel values: equal for the same pixels under any name.

    The same photo saved as PNG and BMP (lossless) hashes the same; a re-encoded JPEG does not.
    """
    pixels = image01.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(str(tuple(pixels.shape)).encode())
    digest.update(pixels.numpy().tobytes())
    return digest.hexdigest()


def unique_indices(images: torch.Tensor | Sequence[torch.Tensor]) -> list[int]:
    """Indices of the first image of each distinct content (:func:`content_hash`), in order.

    Use it to de-duplicate photos before splitting them into fit and held-out sets.
    """
    seen: set[str] = set()
    keep = []
    for i, image in enumerate(images):
        key = content_hash(image)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def check_images(images01: object, *, dtype: torch.dtype | None = None, device: torch.device | None = None,
                 finite: bool = True, what: str = "images") -> torch.Tensor:
    """The one validation of an image batch for a model: a finite float ``(N, 3, H, W)`` tensor, ``N, H, W >= 1``.

    Args:
        images01: the batch, in [0, 1].
        dtype: the model's float dtype; a different float dtype is refused with the cast to use.
        device: the model's device; images elsewhere (or on the ``meta`` device) are refused.
        finite: also refuse NaN/Inf (one pass over the values; the cheap checks above cost nothing).
        what: the name used in messages.

    Returns:
        ``images01`` unchanged. Raises :class:`ShapeError` naming the fix otherwise.
    """
    if not isinstance(images01, torch.Tensor):
        raise ShapeError(f"{what} must be a torch.Tensor (N, 3, H, W) in [0, 1], got {type(images01).__name__}. "
                         "Use repscope.load_images(...).")
    if images01.layout != torch.strided or images01.is_meta:
        kind = "on the meta device (no values)" if images01.is_meta else f"a {images01.layout} tensor"
        raise ShapeError(f"{what} are {kind}. Pass a dense tensor with values (images.to_dense() / real data).")
    if images01.dim() != 4 or images01.shape[1] != 3:
        raise ShapeError(f"expected {what} of shape (N, 3, H, W), got {tuple(images01.shape)}. "
                         "Add a batch dimension / convert to RGB.")
    if images01.shape[0] == 0 or images01.shape[2] == 0 or images01.shape[3] == 0:
        raise ShapeError(f"the batch of {what} {tuple(images01.shape)} is empty. Pass at least one image of at least 1x1.")
    if images01.dtype not in _FLOAT_DTYPES:
        raise ShapeError(f"expected floating-point {what} in [0, 1], got {images01.dtype}. "
                         "Divide uint8 images by 255 (images.float() / 255).")
    if dtype is not None and images01.dtype != dtype:
        raise ShapeError(f"{what} are {str(images01.dtype).removeprefix('torch.')} but the model computes in "
                         f"{str(dtype).removeprefix('torch.')}. Convert them with images.to({dtype}).")
    if device is not None and images01.device != torch.device(device):
        raise ShapeError(f"{what} are on {images01.device} but the model is on {device}. "
                         f"Move them with images.to('{device}').")
    if finite and not torch.isfinite(images01).all():
        raise ShapeError(f"{what} contain NaN or Inf values. Check how they were produced.")
    return images01


def _check_size(size: object) -> int:
    """``size`` as a positive int, or :class:`ShapeError`."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ShapeError(f"size must be a positive integer (pixels), got {size!r}. Use e.g. size=224.")
    return int(size)


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (antialiased bilinear), then centre-crop to ``size``².

    Accepts ``(3, H, W)`` or ``(N, 3, H, W)`` and returns the same rank.
    """
    size = _check_size(size)
    single = images.dim() == 3
    batch = images[None] if single else images
    h, w = batch.shape[-2:]
    if min(h, w) < 1:
        raise ShapeError(f"image of size {h}x{w} has no pixels. Use a real image.")
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    check_tensor_budget((batch.shape[0], batch.shape[1], new_h, new_w), batch.dtype,
                        f"resizing a {h}x{w} image to {size} (the shorter side)")
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
